"""Writes the broken-input corpus under tests/broken/ (run from the project root).

Every file is small and deterministic; the DICOM cases are edits of a 16x16 CT crop from
../shared/data/monai/CT_DICOM (Apache-2.0, see that folder's LICENSE). What each file
should make ctstream say is in tests/broken/README.md, which tests/broken.rs reads.
"""
import os
import shutil
import struct
import sys
import zlib

import pydicom

ROOT = "tests/broken"
MONAI = os.environ.get("CTSTREAM_TEST_DATA", "../shared/data") + "/monai/CT_DICOM"


def write(rel, data):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def mhd(name, lines, data_name=None, data=None):
    write(f"metaimage/{name}.mhd", "ObjectType = Image\n" + "\n".join(lines) + "\n")
    if data is not None:
        write(f"metaimage/{data_name}", data)


def main():
    if os.path.exists(ROOT):
        for entry in os.listdir(ROOT):
            if entry != "README.md":
                p = os.path.join(ROOT, entry)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    base = ["NDims = 3", "DimSize = 4 4 2", "ElementSpacing = 0.7 0.7 1.25", "ElementType = MET_SHORT"]
    shorts = struct.pack("<32h", *range(-16, 16))
    mhd("missing_data", base + ["ElementDataFile = missing_data.raw"])
    mhd("truncated", base + ["ElementDataFile = truncated.raw"], "truncated.raw", shorts[:40])
    # A MET_SHORT file labelled MET_INT: the data is half the size the type needs.
    mhd("wrong_element_type", base[:3] + ["ElementType = MET_INT", "ElementDataFile = wrong_element_type.raw"], "wrong_element_type.raw", shorts)
    mhd("non_numeric", ["NDims = 3", "DimSize = 4 four 2", "ElementType = MET_SHORT", "ElementDataFile = non_numeric.raw"], "non_numeric.raw", shorts)
    mhd("zero_spacing", ["NDims = 3", "DimSize = 4 4 2", "ElementSpacing = 0.7 0 1.25", "ElementType = MET_SHORT", "ElementDataFile = zero_spacing.raw"], "zero_spacing.raw", shorts)
    mhd("huge", ["NDims = 3", "DimSize = 100000 100000 100000", "ElementType = MET_SHORT", "ElementDataFile = huge.raw"], "huge.raw", shorts[:8])
    # 50 MB of zeros in a 49 KB zlib stream, for a header that needs 64 bytes.
    mhd("zlib_bomb", base + ["CompressedData = True", "ElementDataFile = zlib_bomb.zraw"], "zlib_bomb.zraw", zlib.compress(bytes(50_000_000), 9))
    mhd("nan", ["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = nan.raw"], "nan.raw", struct.pack("<3f", 1.0, float("nan"), -1000.0))
    mhd("inf", ["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = inf.raw"], "inf.raw", struct.pack("<3f", float("inf"), -1000.0, float("-inf")))
    write("metaimage/garbage.mha", bytes(range(256)) * 4)

    files = sorted(os.listdir(MONAI))
    a = pydicom.dcmread(os.path.join(MONAI, files[1]))
    b = pydicom.dcmread(os.path.join(MONAI, files[2]))
    os.makedirs(f"{ROOT}/dicom", exist_ok=True)
    no_pixels = pydicom.dcmread(os.path.join(MONAI, files[1]))
    del no_pixels.PixelData
    no_pixels.save_as(f"{ROOT}/dicom/no_pixel_data.dcm")
    raw = open(os.path.join(MONAI, files[1]), "rb").read()
    write("dicom/truncated.dcm", raw[: len(raw) * 6 // 10])
    # Two slices of one series at the same position.
    os.makedirs(f"{ROOT}/dicom/duplicate_positions", exist_ok=True)
    a.save_as(f"{ROOT}/dicom/duplicate_positions/a.dcm")
    dup = pydicom.dcmread(os.path.join(MONAI, files[2]))
    dup.ImagePositionPatient = a.ImagePositionPatient
    dup.save_as(f"{ROOT}/dicom/duplicate_positions/b.dcm")
    # Two series in one folder.
    os.makedirs(f"{ROOT}/dicom/mixed_series", exist_ok=True)
    a.save_as(f"{ROOT}/dicom/mixed_series/a.dcm")
    other = pydicom.dcmread(os.path.join(MONAI, files[2]))
    other.SeriesInstanceUID = a.SeriesInstanceUID + ".2"
    other.save_as(f"{ROOT}/dicom/mixed_series/b.dcm")
    # A series whose id would climb out of the store's folder.
    os.makedirs(f"{ROOT}/dicom/path_uid", exist_ok=True)
    for name, ds in (("a", pydicom.dcmread(os.path.join(MONAI, files[1]))), ("b", pydicom.dcmread(os.path.join(MONAI, files[2])))):
        ds.SeriesInstanceUID = "../../evil"
        ds.save_as(f"{ROOT}/dicom/path_uid/{name}.dcm")

    h = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
    write("csv/missing_column.csv", "seriesuid,coordX,coordY,diameter_mm\n1.2.3,1,2,4\n")
    write("csv/non_numeric.csv", h + "1.2.3,1,2,3,4\n1.2.3,abc,2,3,4\n")
    write("csv/short_row.csv", h + "1.2.3,1,2\n")
    write("csv/empty_field.csv", h + "1.2.3,1,2,,4\n")
    write("csv/nan_diameter.csv", h + "1.2.3,1,2,3,NaN\n")
    write("csv/path_id.csv", h + "../../etc/passwd,1,2,3,4\n")
    write("csv/bad_class.csv", "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,2\n")
    write("csv/bad_probability.csv", "seriesuid,coordX,coordY,coordZ,probability\n1.2.3,1,2,3,high\n")
    write("csv/not_utf8.csv", h.encode() + b"1.2.3,\xff\xfe,2,3,4\n")


if __name__ == "__main__":
    sys.exit(main())
