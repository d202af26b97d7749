#!/usr/bin/env python3
"""Check a stored volume against SimpleITK: resample the source scan linearly onto the
stored grid and compare voxel values, and map world points onto the stored grid.

Usage: python3 tools/goldens/check_store.py EXPORTED.mhd SOURCE [POINTS_JSON]
  EXPORTED.mhd  the stored volume, exported by ctstream (its grid is the stored grid)
  SOURCE        the scan it was ingested from (.mhd/.mha/.nii[.gz] file, or DICOM folder)
  POINTS_JSON   a JSON list of world points [[x, y, z], ...] (mm)
Prints JSON: {"mad": mean |stored - SimpleITK|, "max": max |...|, "indices_zyx": [[z, y, x], ...]}
with SimpleITK's sitk.Resample(source, stored grid, identity, sitkLinear, -1024) clamped to
the store's HU clip [-1024, 3071], and TransformPhysicalPointToContinuousIndex (reordered
to z, y, x) on the stored grid.
"""

import json
import os
import sys

import numpy as np
import SimpleITK as sitk


def read(path):
    if os.path.isdir(path):
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path))
        return r.Execute()
    return sitk.ReadImage(path)


def main():
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    stored = sitk.ReadImage(sys.argv[1])
    source = read(sys.argv[2])
    points = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
    resampled = sitk.Resample(
        source, stored, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat64
    )
    a = np.clip(sitk.GetArrayFromImage(resampled), -1024, 3071)
    b = sitk.GetArrayFromImage(stored).astype(np.float64)
    d = np.abs(a - b)
    idx = [
        list(reversed(stored.TransformPhysicalPointToContinuousIndex([float(c) for c in p])))
        for p in points
    ]
    print(json.dumps({"mad": float(d.mean()), "max": float(d.max()), "indices_zyx": idx}))


if __name__ == "__main__":
    main()
