#!/usr/bin/env python3
"""Write a synthetic DICOM series for an LIDC case folder (tools/lidc/from_pylidc.py's
`slices.json`): 512 x 512 slices at the series' z positions and pixel spacing, with its
series UID and the slices' SOP Instance UIDs, lung-like HU (-850 with Gaussian noise of
sigma 40 HU, seeded, so that the scan costs what a real one costs to compress), and the
case's reader XML beside them, as TCIA lays a series out. LIDC's images are not needed to time or try
an LIDC ingest: `ctstream ingest --input OUT` finds the XML by itself.

Usage: python3 tools/lidc/dicom_series.py CASE_DIR OUT_DIR
Needs pydicom and numpy (tools/python/requirements.txt).
"""

import gzip
import json
import os
import shutil
import sys

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def main():
    case, out = sys.argv[1:3]
    with open(os.path.join(case, "slices.json")) as f:
        s = json.load(f)
    uid = s["series_uid"]
    folder = os.path.join(out, s["patient_id"], "1", uid)
    os.makedirs(folder, exist_ok=True)
    rows, cols = s["rows_columns"]
    ps = s["pixel_spacing"]
    rng = np.random.default_rng(0)
    for k, (z, sop) in enumerate(zip(s["z"], s["uids"])):
        hu = -850 + 40 * rng.standard_normal((rows, cols))
        pixels = (np.round(hu) + 1024).astype(np.int16).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop
        ds.SeriesInstanceUID = uid
        ds.StudyInstanceUID = uid + ".0"
        ds.Modality = "CT"
        ds.PatientID = s["patient_id"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-160.0, -160.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [ps, ps]
        ds.SliceThickness = s["slice_thickness"]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = pixels
        ds.save_as(os.path.join(folder, f"{k + 1:04d}.dcm"), enforce_file_format=True)
    xml = os.path.join(case, "069.xml")
    if os.path.isfile(xml):
        shutil.copy(xml, folder)
    else:
        with gzip.open(xml + ".gz") as src, open(os.path.join(folder, "069.xml"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    print(folder)


if __name__ == "__main__":
    main()
