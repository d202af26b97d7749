#!/usr/bin/env python3
"""A reference reader for ctstream stores, written from format/FORMAT.md alone.

Needs numpy, zstandard and pyarrow (tools/python/requirements.txt).

    from ctstream_reader import Store
    store = Store("luna-store")
    patch = store.volume(store.series_ids()[0]).read_region((0, 0, 0), (32, 64, 64))  # z, y, x
    nodules = store.table("nodules")   # a pyarrow.Table
    lungs = store.label(series_id, "lungs").read_region((0, 0, 0), (32, 64, 64))  # uint8

Command line (used by ctstream's tests to compare with the Rust reader):

    python3 ctstream_reader.py STORE SERIES '[[z0, y0, x0, z1, y1, x1], ...]' [LABEL]

prints JSON: a list of {"shape": [z, y, x], "sha256": ...} of each region's bytes: int16 LE
for the scan, uint8 for its label volume LABEL when given.
"""

import hashlib
import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import zstandard

MAGIC = b"CTVOLUME"
HEADER_SIZE = 256
ENTRY_SIZE = 16


class CorruptError(Exception):
    """A volume file fails one of FORMAT.md's checks."""


class VersionError(Exception):
    """A volume file of a newer major version."""


class Volume:
    """One volume file (.ctv), checked as FORMAT.md says (steps 1-6) when opened."""

    def __init__(self, path):
        self.path = path
        self.data = (
            np.memmap(path, dtype=np.uint8, mode="r")
            if os.path.getsize(path)
            else np.zeros(0, np.uint8)
        )
        b = self.data
        if len(b) < HEADER_SIZE or bytes(b[0:8]) != MAGIC:
            raise CorruptError(f"{path}: not a volume file or truncated header")
        major, minor, header_size = struct.unpack_from("<HHI", b, 8)
        if major != 1:
            raise VersionError(f"{path}: format version {major}.{minor} is newer than 1.x")
        if zlib.crc32(bytes(b[0:252])) != struct.unpack_from("<I", b, 252)[0]:
            raise CorruptError(f"{path}: header checksum mismatch")
        self.shape = struct.unpack_from("<3I", b, 16)
        self.chunk = struct.unpack_from("<3I", b, 28)
        self.origin_xyz = struct.unpack_from("<3d", b, 40)
        self.spacing_xyz = struct.unpack_from("<3d", b, 64)
        self.direction = struct.unpack_from("<9d", b, 88)
        dtype, codec, checksum = struct.unpack_from("<3B", b, 160)
        # dtype 1: int16 scans; 2: uint8 label volumes (from format 1.2).
        self.dtype = {1: np.dtype("<i2"), 2: np.dtype("u1")}.get(dtype)
        (self.fill,) = struct.unpack_from("<h", b, 164)
        (count,) = struct.unpack_from("<I", b, 168)
        table_offset, file_size = struct.unpack_from("<QQ", b, 176)
        if (
            header_size != HEADER_SIZE
            or table_offset != HEADER_SIZE
            or self.dtype is None
            or (codec, checksum) != (1, 1)
        ):
            raise CorruptError(f"{path}: unexpected header fields")
        if dtype == 2 and not 0 <= self.fill <= 255:
            raise CorruptError(f"{path}: fill value {self.fill} is not a uint8 value")
        if file_size != len(b):
            raise CorruptError(
                f"{path}: file is {len(b)} bytes, header says {file_size} (truncated)"
            )
        chunk_voxels = self.chunk[0] * self.chunk[1] * self.chunk[2]
        if 0 in self.shape or 0 in self.chunk or not (1 << 12 <= chunk_voxels <= 1 << 24):
            raise CorruptError(
                f"{path}: shape {self.shape} or chunk shape {self.chunk} out of range"
            )
        if self.shape[0] * self.shape[1] * self.shape[2] > 1 << 31:
            raise CorruptError(f"{path}: more than 2^31 voxels")
        if not all(math.isfinite(s) and 1e-4 <= s <= 1e4 for s in self.spacing_xyz):
            raise CorruptError(
                f"{path}: spacing {self.spacing_xyz} is not finite and within 1e-4..1e4 mm"
            )
        if not all(math.isfinite(o) and abs(o) <= 1e6 for o in self.origin_xyz):
            raise CorruptError(f"{path}: origin {self.origin_xyz} is not finite and within 1e6 mm")
        if tuple(self.direction) != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
            raise CorruptError(f"{path}: direction is not the identity")
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunk))
        if count != self.grid[0] * self.grid[1] * self.grid[2]:
            raise CorruptError(f"{path}: chunk_count does not match the grid")
        table_end = HEADER_SIZE + ENTRY_SIZE * count
        if table_end + 4 > file_size:
            raise CorruptError(f"{path}: chunk table does not fit")
        if zlib.crc32(bytes(b[HEADER_SIZE:table_end])) != struct.unpack_from("<I", b, table_end)[0]:
            raise CorruptError(f"{path}: chunk table checksum mismatch")
        self.table = [
            struct.unpack_from("<QII", b, HEADER_SIZE + ENTRY_SIZE * k) for k in range(count)
        ]
        # Step 6: the payloads tile the rest of the file in chunk order.
        expect = table_end + 4
        for k, (off, length, _) in enumerate(self.table):
            if off != expect or off + length > file_size:
                raise CorruptError(
                    f"{path}: chunk {k} is not where the payloads in chunk order put it"
                )
            expect = off + length
        if expect != file_size:
            raise CorruptError(f"{path}: bytes after the last chunk")
        self._zstd = zstandard.ZstdDecompressor()

    def chunk_array(self, cz, cy, cx):
        """Decode chunk (cz, cy, cx), checking its CRC-32 and size (steps 7-8)."""
        k = (cz * self.grid[1] + cy) * self.grid[2] + cx
        off, length, crc = self.table[k]
        payload = bytes(self.data[off : off + length])
        if zlib.crc32(payload) != crc:
            raise CorruptError(f"{self.path}: chunk ({cz}, {cy}, {cx}) checksum mismatch")
        n = self.chunk[0] * self.chunk[1] * self.chunk[2] * self.dtype.itemsize
        raw = self._zstd.decompress(payload, max_output_size=n)
        if len(raw) != n:
            raise CorruptError(f"{self.path}: chunk ({cz}, {cy}, {cx}) has the wrong size")
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk)

    def read_region(self, start_zyx, end_zyx):
        """Voxels [z0, z1) x [y0, y1) x [x0, x1); outside the volume: the fill value."""
        shape = tuple(max(0, e - s) for s, e in zip(start_zyx, end_zyx))
        out = np.full(shape, self.fill, dtype=self.dtype)
        lo = [max(s, 0) for s in start_zyx]
        hi = [min(e, n) for e, n in zip(end_zyx, self.shape)]
        if any(l >= h for l, h in zip(lo, hi)):
            return out
        first = [l // c for l, c in zip(lo, self.chunk)]
        last = [(h - 1) // c for h, c in zip(hi, self.chunk)]
        for cz in range(first[0], last[0] + 1):
            for cy in range(first[1], last[1] + 1):
                for cx in range(first[2], last[2] + 1):
                    c = self.chunk_array(cz, cy, cx)
                    o = (cz * self.chunk[0], cy * self.chunk[1], cx * self.chunk[2])
                    a0 = [max(l, oo) for l, oo in zip(lo, o)]
                    a1 = [min(h, oo + cc) for h, oo, cc in zip(hi, o, self.chunk)]
                    src = c[
                        a0[0] - o[0] : a1[0] - o[0],
                        a0[1] - o[1] : a1[1] - o[1],
                        a0[2] - o[2] : a1[2] - o[2],
                    ]
                    d = [a - s for a, s in zip(a0, start_zyx)]
                    out[
                        d[0] : d[0] + src.shape[0],
                        d[1] : d[1] + src.shape[1],
                        d[2] : d[2] + src.shape[2],
                    ] = src
        return out


class Store:
    """A store folder: manifest, complete scans (record + volume), index tables."""

    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "manifest.json")) as f:
            self.manifest = json.load(f)
        if (
            self.manifest.get("format") != "ctstream-store"
            or self.manifest["format_version"][0] != 1
        ):
            raise VersionError(f"{root}: not a version 1 ctstream store")
        self.scans = {}
        vol = os.path.join(root, "volumes")
        for name in sorted(os.listdir(vol)):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            with open(os.path.join(vol, name)) as f:
                rec = json.load(f)
            files = [rec["volume_file"]] + [l["file"] for l in rec.get("labels", [])]
            if all(os.path.isfile(os.path.join(root, f)) for f in files):
                self.scans[rec["series_id"]] = rec

    def series_ids(self):
        return sorted(self.scans)

    def volume(self, series_id):
        return Volume(os.path.join(self.root, self.scans[series_id]["volume_file"]))

    def labels(self, series_id):
        """Names of the scan's label volumes (format 1.2; empty for older stores)."""
        return [l["name"] for l in self.scans[series_id].get("labels", [])]

    def label(self, series_id, name):
        """Label volume NAME of a scan: a uint8 Volume on exactly the scan's grid."""
        rec = self.scans[series_id]
        entry = next((l for l in rec.get("labels", []) if l["name"] == name), None)
        if entry is None:
            raise KeyError(
                f"{series_id} has no label volume {name!r} (it has {self.labels(series_id)})"
            )
        if entry["file"] != f"labels/{series_id}/{name}.ctv":
            raise CorruptError(f"{series_id}: label {name} names the file {entry['file']!r}")
        v = Volume(os.path.join(self.root, entry["file"]))
        scan = self.volume(series_id)
        if v.dtype != np.dtype("u1") or v.fill != 0:
            raise CorruptError(f"{v.path}: a label volume is uint8 with fill value 0")
        for field in ("shape", "chunk", "origin_xyz", "spacing_xyz"):
            if getattr(v, field) != getattr(scan, field):
                raise CorruptError(
                    f"{v.path}: {field} {getattr(v, field)} is not the scan's {getattr(scan, field)}"
                )
        return v

    def lidc(self, series_id):
        """The scan's LIDC reader annotations (format 1.3; None when it has none), checked
        as FORMAT.md "LIDC annotations" says: nodules numbered by place with 1 to 4
        readers, annotations naming a nodule, finite positions, scores in range."""
        rec = self.scans[series_id]
        lidc = rec.get("lidc")
        if lidc is None:
            return None
        maxima = [5, 4, 6, 5, 5, 5, 5, 5, 5]
        where = f"{series_id}: lidc"

        def check_scores(what, scores):
            if len(scores) != 9 or any(
                v is not None and not 1 <= v <= m for v, m in zip(scores, maxima)
            ):
                raise CorruptError(f"{where} {what}: characteristics {scores} out of range")

        for i, n in enumerate(lidc["nodules"]):
            if n["nodule_id"] != i or not 1 <= n["readers"] <= 4:
                raise CorruptError(f"{where} nodules[{i}]: nodule_id or readers")
            if not all(np.isfinite(v) for v in n["world_xyz"]):
                raise CorruptError(f"{where} nodules[{i}]: world_xyz")
            check_scores(f"nodules[{i}]", n["characteristics"])
        for i, a in enumerate(lidc["annotations"]):
            if not 0 <= a["nodule_id"] < len(lidc["nodules"]):
                raise CorruptError(f"{where} annotations[{i}]: nodule_id names no nodule")
            check_scores(f"annotations[{i}]", a["characteristics"])
        for i, p in enumerate(lidc["points"]):
            if p["kind"] not in ("small_nodule", "non_nodule"):
                raise CorruptError(f"{where} points[{i}]: kind {p['kind']!r}")
        return lidc

    def table(self, name):
        """An index table, checked against index/checksums.json (required from format 1.1)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = os.path.join(self.root, "index", name + ".parquet")
        sums_path = os.path.join(self.root, "index", "checksums.json")

        def listed():
            # The sums in `tables` and, while an ingest rewrites the index, in `replacing`.
            try:
                with open(sums_path) as f:
                    sums = json.load(f)
            except (OSError, ValueError):
                return None
            return [
                s
                for s in (
                    sums["tables"].get(name + ".parquet"),
                    sums.get("replacing", {}).get(name + ".parquet"),
                )
                if s
            ]

        before = listed()
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()

        def ok(sums):
            return any(s["sha256"] == digest and s["bytes"] == len(data) for s in sums or [])

        if os.path.exists(sums_path):
            # A table read during a rewrite is listed before it or after it (INDEX.md).
            if not ok(before) and not ok(listed()):
                raise CorruptError(f"{path}: does not match {sums_path}")
        elif self.manifest["format_version"][1] >= 1:
            raise CorruptError(f"{sums_path}: missing (required from format 1.1)")
        return pq.read_table(pa.BufferReader(data))


def main():
    store = Store(sys.argv[1])
    vol = store.label(sys.argv[2], sys.argv[4]) if len(sys.argv) > 4 else store.volume(sys.argv[2])
    out = []
    for z0, y0, x0, z1, y1, x1 in json.loads(sys.argv[3]):
        a = np.ascontiguousarray(vol.read_region((z0, y0, x0), (z1, y1, x1)), dtype=vol.dtype)
        out.append({"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
