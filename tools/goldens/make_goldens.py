#!/usr/bin/env python3
"""Make the golden files that ctstream's reader tests compare against.

Geometry (shape, spacing, origin, direction) comes from SimpleITK; Hounsfield units
come from pydicom's `apply_modality_lut` for DICOM and from SimpleITK for MetaImage.
lidc_polygons.json is matplotlib's point-in-polygon rule, as pylidc fills reader contours
(tools/goldens/lidc_polygons.py).
Values are converted to int16 by ctstream's documented rule (round half away from
zero, then clamp to [-32768, 32767]) and recorded as the SHA-256 of the int16
little-endian bytes in (z, y, x) order, plus min/max/mean/sum and the clamp count,
so a test can check every voxel without committing megabytes of arrays.

Usage:  python3 tools/goldens/make_goldens.py [--data ../shared/data] [--out tests/goldens]
Pinned versions: tools/goldens/requirements.txt. CI regenerates the goldens into a
temporary folder and diffs them against the committed ones.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import sys

import lidc_polygons
import matplotlib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.pixels import apply_modality_lut

# (name, kind, path relative to the data folder)
# kind: "meta" = MetaImage file; "nifti" = NIfTI file; "dicom-file" = one DICOM file read as a one-slice series;
#       "dicom-dir" = the single series in a folder.
CASES = [
    ("elastix_lung_small", "meta", "elastix/3DCT_lung_baseline_small.mha"),
    ("elastix_lung_mask", "meta", "elastix/3DCT_lung_baseline_mask.mha"),
    ("elastix_lung_followup_mask", "meta", "elastix/3DCT_lung_followup_mask.mha"),
    ("elastix_fixed", "meta", "elastix/fixed.mhd"),
    ("elastix_moving", "meta", "elastix/moving.mhd"),
    ("elastix_square_float", "meta", "elastix/2D_2x2_square_object_at_(1,3).mhd"),
    ("itkelastix_head", "meta", "itkelastix/CT_2D_head_fixed.mha"),
    ("wg04_ct1_unc", "dicom-file", "dicom-test-files/WG04/CT1_UNC.dcm"),
    ("wg04_ct1_rle", "dicom-file", "dicom-test-files/WG04/CT1_RLE.dcm"),
    ("wg04_ct1_jpll", "dicom-file", "dicom-test-files/WG04/CT1_JPLL.dcm"),
    ("wg04_ct1_j2kr", "dicom-file", "dicom-test-files/WG04/CT1_J2KR.dcm"),
    ("wg04_ct1_j2ki", "dicom-file", "dicom-test-files/WG04/CT1_J2KI.dcm"),
    ("wg04_ct1_jlsl", "dicom-file", "dicom-test-files/WG04/CT1_JLSL.dcm"),
    ("wg04_ct1_jlsn", "dicom-file", "dicom-test-files/WG04/CT1_JLSN.dcm"),
    ("wg04_ct2_unc", "dicom-file", "dicom-test-files/WG04/CT2_UNC.dcm"),
    ("pydicom_ct_small", "dicom-file", "pydicom/CT_small.dcm"),
    ("dcmqi_ct3slice", "dicom-dir", "dicom-test-files/dcmqi/ct-3slice"),
    ("rtutils_oblique", "dicom-dir", "rt-utils/oriented_data"),
    ("totalseg_j2k", "dicom-dir", "totalsegmentator/example_ct_dicom"),
    ("monai_gap", "dicom-dir", "monai/CT_DICOM"),
    ("totalseg_nifti_ct", "nifti", "totalsegmentator/example_ct.nii.gz"),
    ("totalseg_nifti_lung", "nifti", "totalsegmentator/example_seg_lung.nii.gz"),
]


def to_i16(a):
    """ctstream's rule: round half away from zero, clamp to int16. Returns (array, clamped)."""
    a = np.asarray(a, dtype=np.float64)
    r = np.sign(a) * np.floor(np.abs(a) + 0.5)
    clamped = int(np.count_nonzero((r < -32768) | (r > 32767)))
    return np.clip(r, -32768, 32767).astype("<i2"), clamped


def values(a16, clamped):
    a16 = np.ascontiguousarray(a16, dtype="<i2")
    return {
        "sha256": hashlib.sha256(a16.tobytes()).hexdigest(),
        "min": int(a16.min()),
        "max": int(a16.max()),
        "sum": int(a16.astype(np.int64).sum()),
        "clamped": clamped,
    }


def geometry3(img):
    """SimpleITK geometry, embedded in 3D the way ctstream reads a 2D image (one slice)."""
    size = list(img.GetSize())
    spacing = list(img.GetSpacing())
    origin = list(img.GetOrigin())
    direction = list(img.GetDirection())
    if img.GetDimension() == 2:
        size += [1]
        spacing += [1.0]
        origin += [0.0]
        d = direction
        direction = [d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0]
    return {
        "shape_zyx": [size[2], size[1], size[0]],
        "spacing_xyz": spacing,
        "origin_xyz": origin,
        "direction": direction,
    }


def transforms(img):
    """SimpleITK's index <-> world transforms at a few points (3D images only)."""
    if img.GetDimension() != 3:
        return []
    sx, sy, sz = img.GetSize()
    out = []
    for idx in [
        (0.0, 0.0, 0.0),
        (1.5, 2.25, 0.5),
        (sx - 1.0, sy - 1.0, sz - 1.0),
        (-3.7, sy / 3.0, sz + 2.2),
    ]:
        world = img.TransformContinuousIndexToPhysicalPoint(idx)
        shifted = (world[0] + 3.3, world[1] - 7.1, world[2] + 11.7)
        out.append(
            {
                "index_xyz": list(idx),
                "world_xyz": list(world),
                "shifted_world_xyz": list(shifted),
                "shifted_index_xyz": list(img.TransformPhysicalPointToContinuousIndex(shifted)),
            }
        )
    return out


def annotations_case(data):
    """Row counts and column sums of the real LUNA16 CSVs, read with Python's csv module."""
    out = {}
    for name in ["annotations.csv", "annotations_excluded.csv"]:
        with open(os.path.join(data, "luna16", name), newline="") as f:
            rows = list(csv.DictReader(f))
        out[name] = {
            "rows": len(rows),
            "series": len({r["seriesuid"] for r in rows}),
            "sum_x": math.fsum(float(r["coordX"]) for r in rows),
            "sum_y": math.fsum(float(r["coordY"]) for r in rows),
            "sum_z": math.fsum(float(r["coordZ"]) for r in rows),
            "sum_diameter": math.fsum(float(r["diameter_mm"]) for r in rows),
            "unmeasured": sum(1 for r in rows if float(r["diameter_mm"]) == -1.0),
            "max_z": max(float(r["coordZ"]) for r in rows),
        }
    return out


def meta_case(path):
    img = sitk.ReadImage(path)
    a = sitk.GetArrayFromImage(img)
    if a.ndim == 2:
        a = a[np.newaxis]
    a16, clamped = to_i16(a)
    return {
        **geometry3(img),
        "values": values(a16, clamped),
        "source_dtype": str(a.dtype),
        "transforms": transforms(img),
    }


def dicom_series(files, series_id=None):
    r = sitk.ImageSeriesReader()
    r.SetFileNames(files)
    img = r.Execute()
    g = geometry3(img)
    g["transforms"] = transforms(img)
    # HU from pydicom, slices in the order SimpleITK used (by position along the normal).
    slices = []
    per_slice = []
    for f in files:
        ds = pydicom.dcmread(f)
        hu = apply_modality_lut(ds.pixel_array, ds)
        s16, c = to_i16(hu)
        slices.append((s16, c))
        per_slice.append(hashlib.sha256(np.ascontiguousarray(s16).tobytes()).hexdigest())
    vol = np.stack([s for s, _ in slices])
    clamped = sum(c for _, c in slices)
    out = {
        **g,
        "values": values(vol, clamped),
        "slice_sha256": per_slice,
        "files_in_order": [os.path.basename(f) for f in files],
    }
    # SimpleITK's own voxels, as a cross-check of pydicom (recorded, not required equal).
    s16, _ = to_i16(sitk.GetArrayFromImage(img))
    out["simpleitk_sha256"] = hashlib.sha256(s16.tobytes()).hexdigest()
    return out


def dicom_file_case(path):
    ds = pydicom.dcmread(path)
    out = dicom_series([path])
    out["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
    return out


def dicom_dir_case(path):
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(path)
    assert len(ids) == 1, (path, ids)
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path, ids[0]))
    return dicom_series(files)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    p.add_argument("--out", default=os.path.join(root, "tests", "goldens"))
    args = p.parse_args()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    os.makedirs(args.out, exist_ok=True)
    for name, kind, rel in CASES:
        path = os.path.join(args.data, rel)
        if kind in ("meta", "nifti"):
            g = meta_case(path)
        elif kind == "dicom-file":
            g = dicom_file_case(path)
        else:
            g = dicom_dir_case(path)
        g = {"case": name, "kind": kind, "path": rel, **g}
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(g, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"{name}: shape {g['shape_zyx']} hu [{g['values']['min']}, {g['values']['max']}]")
    with open(os.path.join(args.out, "luna16_annotations.json"), "w") as f:
        json.dump(annotations_case(args.data), f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out, "lidc_polygons.json"), "w") as f:
        json.dump(lidc_polygons.case(), f, sort_keys=True)
        f.write("\n")
    versions = {
        "matplotlib": matplotlib.__version__,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "pydicom": pydicom.__version__,
        "python": sys.version.split()[0],
    }
    with open(os.path.join(args.out, "VERSIONS.json"), "w") as f:
        json.dump({k: v for k, v in versions.items() if k != "python"}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
