#!/usr/bin/env python3
"""Print, as JSON, what SimpleITK reads from each path: geometry and a digest of the voxels.

Used by ctstream's tests to check that files ctstream writes (MetaImage, synthetic DICOM)
read in SimpleITK with the geometry and voxels ctstream's reader reports.

Usage: python3 tools/goldens/sitk_digest.py PATH [PATH ...]
A PATH that is a folder is read as the DICOM series in it (ImageSeriesReader).
Output: {"PATH": {"shape_zyx", "spacing_xyz", "origin_xyz", "direction", "values"}, ...}
"""

import json
import os
import sys

import SimpleITK as sitk

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_goldens import geometry3, to_i16, values  # noqa: E402


def digest(path):
    if os.path.isdir(path):
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path))
        img = r.Execute()
    else:
        img = sitk.ReadImage(path)
    a = sitk.GetArrayFromImage(img)
    if a.ndim == 2:
        a = a[None]
    a16, clamped = to_i16(a)
    return {**geometry3(img), "values": values(a16, clamped)}


if __name__ == "__main__":
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    print(json.dumps({p: digest(p) for p in sys.argv[1:]}))
