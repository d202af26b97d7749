#!/usr/bin/env python3
"""Resample a label map with SimpleITK's nearest-neighbour interpolator onto an
axis-aligned grid, and write the result's voxels, so ctstream's tests can compare
`labels::nearest::resample_nearest` with it voxel for voxel.

Usage: python3 tools/goldens/sitk_nearest.py LABELS OUT.raw SIZE_XYZ SPACING_XYZ ORIGIN_XYZ
(each triple as JSON, e.g. '[57, 78, 64]'). Writes OUT.raw: uint8, (z, y, x) C order, 0
outside the source (sitk.Resample's default value). Prints JSON {"shape_zyx", "nonzero"}.
"""

import json
import sys

import numpy as np
import SimpleITK as sitk


def main():
    src = sitk.ReadImage(sys.argv[1])
    size, spacing, origin = (json.loads(a) for a in sys.argv[3:6])
    ref = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin([float(v) for v in origin])
    out = sitk.Resample(
        sitk.Cast(src, sitk.sitkUInt8),
        ref,
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    a = np.ascontiguousarray(sitk.GetArrayFromImage(out), dtype=np.uint8)
    with open(sys.argv[2], "wb") as f:
        f.write(a.tobytes())
    print(json.dumps({"shape_zyx": list(a.shape), "nonzero": int((a != 0).sum())}))


if __name__ == "__main__":
    main()
