"""Writes the broken-input corpus under tests/broken/ (run from the project root).

Usage: python3 tools/broken/make_corpus.py --ctstream target/release/ctstream
(the store cases are made by that binary's `ingest`, then damaged).

Every scan file is small and deterministic; the DICOM cases are edits of a 16x16 CT crop from
../shared/data/monai/CT_DICOM (Apache-2.0, see that folder's LICENSE). What each file
should make ctstream say is in tests/broken/README.md, which tests/integration/broken.rs reads.
"""

import gzip
import os
import shutil
import struct
import subprocess
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


def nii(
    name,
    qform=0,
    sform=1,
    pixdim=(1.0, 0.7, 0.7, 1.25),
    quatern=(0.0, 0.0, 0.0),
    srow=((0.7, 0, 0, -90.0), (0, 0.7, 0, -120.0), (0, 0, 1.25, 40.0)),
    slope=1.0,
    inter=0.0,
    gz=False,
):
    """A 4x4x2 int16 NIfTI-1 file with the given header values (everything else valid)."""
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, 4, 4, 2, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, 4, 16)
    struct.pack_into("<8f", h, 76, *(list(pixdim) + [1.0] * (8 - len(pixdim))))
    struct.pack_into("<fff", h, 108, 352.0, slope, inter)
    struct.pack_into("<hh", h, 252, qform, sform)
    struct.pack_into("<3f", h, 256, *quatern)
    struct.pack_into("<3f", h, 268, -90.0, -120.0, 40.0)
    for r, row in enumerate(srow):
        struct.pack_into("<4f", h, 280 + 16 * r, *row)
    h[344:348] = b"n+1\0"
    data = bytes(h) + bytes(4) + struct.pack("<32h", *range(-16, 16))
    if gz:
        data = gzip.compress(data, mtime=0)
    write(f"nifti/{name}", data)


def dicom_series(folder, n, edit=None, step=1.25):
    """`n` slices of one series (copies of one 16x16 MONAI slice at `step` mm), named a.dcm,
    b.dcm, ...; `edit(k, ds)` changes slice k before it is saved. Returns the paths."""
    files = sorted(os.listdir(MONAI))
    os.makedirs(f"{ROOT}/dicom/{folder}", exist_ok=True)
    paths = []
    for k in range(n):
        ds = pydicom.dcmread(os.path.join(MONAI, files[1]))
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1], round(pos[2] + k * step, 4)]
        ds.InstanceNumber = 180 + k
        ds.SOPInstanceUID = ds.SOPInstanceUID + f".{k}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if edit:
            edit(k, ds)
        path = f"{ROOT}/dicom/{folder}/{chr(ord('a') + k)}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def store_cases(ctstream):
    """Small stores made by `ctstream ingest` from one 32x64x64 scan, then damaged."""
    src = f"{ROOT}/store/source"
    os.makedirs(src, exist_ok=True)
    values = [
        (-1000 + (z * 7 + y * 3 + x) % 1400)
        for z in range(32)
        for y in range(64)
        for x in range(64)
    ]
    with open(f"{src}/scan.mhd", "w") as f:
        f.write(
            "ObjectType = Image\nNDims = 3\nDimSize = 64 64 32\nElementSpacing = 1 1 1\nOffset = -32 -32 -16\n"
            "ElementType = MET_SHORT\nElementDataFile = scan.raw\n"
        )
    with open(f"{src}/scan.raw", "wb") as f:
        f.write(struct.pack(f"<{len(values)}h", *values))
    with open(f"{src}/annotations.csv", "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\nscan,0,0,0,6\nscan,4,-3,1,5\n")

    def make(case):
        out = f"{ROOT}/store/{case}"
        subprocess.run(
            [
                ctstream,
                "--quiet",
                "ingest",
                "--input",
                src,
                "--annotations",
                f"{src}/annotations.csv",
                "--out",
                out,
                "--jobs",
                "1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.remove(f"{out}/.lock")
        return out

    def reseal(path, edit):
        """Edits a volume file's header or table and recomputes both CRCs."""
        b = bytearray(open(path, "rb").read())
        edit(b)
        struct.pack_into("<I", b, 252, zlib.crc32(bytes(b[0:252])))
        n = struct.unpack_from("<I", b, 168)[0]
        table = bytes(b[256 : 256 + 16 * n])
        struct.pack_into("<I", b, 256 + 16 * n, zlib.crc32(table))
        open(path, "wb").write(bytes(b))

    def overlap(b):
        # Chunk 1 points at chunk 0's payload: two chunks overlap.
        struct.pack_into("<Q", b, 256 + 16, struct.unpack_from("<Q", b, 256)[0])

    out = make("overlapping_chunks")
    reseal(f"{out}/volumes/scan.ctv", overlap)

    def nan_spacing(b):
        struct.pack_into("<d", b, 64, float("nan"))

    out = make("nan_spacing")
    reseal(f"{out}/volumes/scan.ctv", nan_spacing)

    # One byte of the nodules table flipped (checksums.json no longer matches).
    out = make("flipped_index")
    p = f"{out}/index/nodules.parquet"
    b = bytearray(open(p, "rb").read())
    b[len(b) // 2] ^= 0x10
    open(p, "wb").write(bytes(b))

    # A record that is not JSON any more, and a volume truncated to nothing.
    out = make("damaged_record")
    with open(f"{out}/volumes/scan.json", "w") as f:
        f.write('{"series_id": "scan", "origin_xyz": [null')
    out = make("truncated_volume")
    open(f"{out}/volumes/scan.ctv", "wb").close()
    shutil.rmtree(src)


def main():
    if os.path.exists(ROOT):
        for entry in os.listdir(ROOT):
            if entry != "README.md":
                p = os.path.join(ROOT, entry)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    base = [
        "NDims = 3",
        "DimSize = 4 4 2",
        "ElementSpacing = 0.7 0.7 1.25",
        "ElementType = MET_SHORT",
    ]
    shorts = struct.pack("<32h", *range(-16, 16))
    mhd("missing_data", base + ["ElementDataFile = missing_data.raw"])
    # Data files that are no files: a device and a folder (the header's own).
    mhd("dev_zero", base + ["ElementDataFile = /dev/zero"])
    mhd("folder_data", base + ["ElementDataFile = ."])
    mhd("truncated", base + ["ElementDataFile = truncated.raw"], "truncated.raw", shorts[:40])
    # A MET_SHORT file labelled MET_INT: the data is half the size the type needs.
    mhd(
        "wrong_element_type",
        base[:3] + ["ElementType = MET_INT", "ElementDataFile = wrong_element_type.raw"],
        "wrong_element_type.raw",
        shorts,
    )
    mhd(
        "non_numeric",
        [
            "NDims = 3",
            "DimSize = 4 four 2",
            "ElementType = MET_SHORT",
            "ElementDataFile = non_numeric.raw",
        ],
        "non_numeric.raw",
        shorts,
    )
    mhd(
        "zero_spacing",
        [
            "NDims = 3",
            "DimSize = 4 4 2",
            "ElementSpacing = 0.7 0 1.25",
            "ElementType = MET_SHORT",
            "ElementDataFile = zero_spacing.raw",
        ],
        "zero_spacing.raw",
        shorts,
    )
    mhd(
        "huge",
        [
            "NDims = 3",
            "DimSize = 100000 100000 100000",
            "ElementType = MET_SHORT",
            "ElementDataFile = huge.raw",
        ],
        "huge.raw",
        shorts[:8],
    )
    # 50 MB of zeros in a 49 KB zlib stream, for a header that needs 64 bytes.
    mhd(
        "zlib_bomb",
        base + ["CompressedData = True", "ElementDataFile = zlib_bomb.zraw"],
        "zlib_bomb.zraw",
        zlib.compress(bytes(50_000_000), 9),
    )
    mhd(
        "nan",
        ["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = nan.raw"],
        "nan.raw",
        struct.pack("<3f", 1.0, float("nan"), -1000.0),
    )
    mhd(
        "inf",
        ["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = inf.raw"],
        "inf.raw",
        struct.pack("<3f", float("inf"), -1000.0, float("-inf")),
    )
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
    for name, ds in (
        ("a", pydicom.dcmread(os.path.join(MONAI, files[1]))),
        ("b", pydicom.dcmread(os.path.join(MONAI, files[2]))),
    ):
        ds.SeriesInstanceUID = "../../evil"
        ds.save_as(f"{ROOT}/dicom/path_uid/{name}.dcm")

    # A slice of Rows 0 in the middle of a series; a PixelSpacing that is not a number; the
    # last slice cut short; a middle slice missing (a 2.5 mm step in a 1.25 mm series).
    def rows_zero(k, ds):
        if k == 1:
            ds.Rows = 0

    dicom_series("rows_zero", 3, rows_zero)

    # (pydicom refuses to write a DS that is not a number: edit the bytes, same length.)
    middle = dicom_series("bad_pixel_spacing", 3)[1]
    raw = open(middle, "rb").read()
    assert raw.count(b"0.488281\\0.488281") == 1
    open(middle, "wb").write(raw.replace(b"0.488281\\0.488281", b"abcdefgh\\0.488281"))
    last = dicom_series("truncated_end", 4)[-1]
    raw = open(last, "rb").read()
    write("dicom/truncated_end/d.dcm", raw[: len(raw) - 100])
    os.remove(dicom_series("missing_middle", 5)[2])

    # Geometry no scan has, and sizes that only the resampled grid reveals.
    chunk = zlib.compress(struct.pack("<262144h", *([0] * 262144)), 9)
    mhd(
        "spacing_25",
        [
            "NDims = 3",
            "DimSize = 64 64 64",
            "ElementSpacing = 25 25 25",
            "ElementType = MET_SHORT",
            "CompressedData = True",
            "ElementDataFile = spacing_25.zraw",
        ],
        "spacing_25.zraw",
        chunk,
    )
    mhd(
        "spacing_1e300",
        [
            "NDims = 3",
            "DimSize = 4 4 2",
            "ElementSpacing = 1e300 1e300 1e300",
            "ElementType = MET_SHORT",
            "ElementDataFile = spacing_1e300.raw",
        ],
        "spacing_1e300.raw",
        shorts,
    )
    mhd(
        "zero_matrix",
        [
            "NDims = 3",
            "DimSize = 4 4 2",
            "TransformMatrix = 0 0 0 0 0 0 0 0 0",
            "ElementType = MET_SHORT",
            "ElementDataFile = zero_matrix.raw",
        ],
        "zero_matrix.raw",
        shorts,
    )
    # 160 bytes claiming 2^31 doubles (16 GiB) of zlib data.
    write(
        "metaimage/huge_doubles.mha",
        "ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 2048\nElementType = MET_DOUBLE\n"
        "CompressedData = True\nElementDataFile = LOCAL\n" + "x" * 24,
    )
    nan = float("nan")
    nii("nan_origin.nii", srow=((0.7, 0, 0, nan), (0, 0.7, 0, -120.0), (0, 0, 1.25, 40.0)))
    nii("sform_1e6.nii", srow=((1e6, 0, 0, -90.0), (0, 1e6, 0, -120.0), (0, 0, 1e6, 40.0)))
    nii("pixdim_nan.nii", sform=0, pixdim=(1.0, nan, 0.7, 1.25))
    nii("pixdim_zero.nii", sform=0, pixdim=(1.0, 0.7, 0.0, 1.25))
    nii("nan_quaternion.nii", sform=0, qform=1, quatern=(nan, 0.0, 0.0))
    nii("scl_inter_nan.nii", slope=2.0, inter=nan)
    nii("bad_gzip_crc.nii.gz", gz=True)
    b = bytearray(open(f"{ROOT}/nifti/bad_gzip_crc.nii.gz", "rb").read())
    b[-8] ^= 0xFF  # the CRC-32 of the gzip trailer
    write("nifti/bad_gzip_crc.nii.gz", bytes(b))

    if len(sys.argv) > 2 and sys.argv[1] == "--ctstream":
        store_cases(sys.argv[2])
    else:
        print("note: no --ctstream PATH: the store cases are not made", file=sys.stderr)

    h = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
    write("csv/missing_column.csv", "seriesuid,coordX,coordY,diameter_mm\n1.2.3,1,2,4\n")
    write("csv/non_numeric.csv", h + "1.2.3,1,2,3,4\n1.2.3,abc,2,3,4\n")
    write("csv/short_row.csv", h + "1.2.3,1,2\n")
    write("csv/empty_field.csv", h + "1.2.3,1,2,,4\n")
    write("csv/nan_diameter.csv", h + "1.2.3,1,2,3,NaN\n")
    write("csv/path_id.csv", h + "../../etc/passwd,1,2,3,4\n")
    write("csv/quoted_newline.csv", h + '1.2.3,1,2,"3\n",4\n')
    write("csv/bad_class.csv", "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,2\n")
    write(
        "csv/bad_probability.csv", "seriesuid,coordX,coordY,coordZ,probability\n1.2.3,1,2,3,high\n"
    )
    write("csv/not_utf8.csv", h.encode() + b"1.2.3,\xff\xfe,2,3,4\n")


if __name__ == "__main__":
    sys.exit(main())
