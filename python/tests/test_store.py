"""ctstream.Store against independent readers: pyarrow on the index files, and the
reference reader written from format/FORMAT.md alone (tools/python/ctstream_reader.py)."""

import json
import shutil
import sys

import ctstream
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools" / "python"))
import ctstream_reader  # noqa: E402


def test_manifest_and_scans_are_the_files(store, store_path):
    assert store.manifest == json.loads((store_path / "manifest.json").read_text())
    assert store.manifest["chunk_shape_zyx"] == [16, 32, 32]
    assert store.series_ids == sorted(p.stem for p in (store_path / "volumes").glob("*.json"))
    sid = store.series_ids[0]
    assert store.record(sid) == json.loads((store_path / "volumes" / f"{sid}.json").read_text())
    assert store.damaged == []


def test_tables_equal_pyarrow_on_the_files(store, store_path):
    assert store.table_names == [
        "annotations",
        "candidates",
        "components",
        "labels",
        "nodules",
        "scans",
    ]
    for name in store.table_names:
        assert store.table(name).equals(pq.read_table(store_path / "index" / f"{name}.parquet")), (
            name
        )
    assert (
        store.nodules.num_rows
        == pq.read_table(store_path / "index" / "nodules.parquet").num_rows
        > 0
    )
    assert sorted(store.scans.column("series_id").to_pylist()) == store.series_ids
    with pytest.raises(KeyError, match="no table `findings`"):
        store.table("findings")
    with pytest.raises(ValueError, match="table `../x`"):
        store.table("../x")


def test_regions_equal_the_reference_reader(store, store_path):
    ref = ctstream_reader.Store(str(store_path))
    for sid in store.series_ids:
        rec = store.record(sid)
        shape = rec["shape_zyx"]
        vol = store.volume(sid)
        assert vol.dtype == np.int16 and list(vol.shape) == shape
        np.testing.assert_array_equal(vol, ref.volume(sid).read_region((0, 0, 0), tuple(shape)))
        # A box that crosses chunk borders and sticks out of the scan on every side.
        start, size = (-5, 20, shape[2] - 17), (40, 50, 30)
        got = store.read_region(sid, start, size)
        want = ref.volume(sid).read_region(start, tuple(s + n for s, n in zip(start, size)))
        assert got.shape == size
        np.testing.assert_array_equal(got, want)
        assert (got[:5] == store.manifest["fill_hu"]).all()
        lungs = store.label(sid, "lungs")
        assert (
            lungs.dtype == np.uint8
            and lungs.shape == vol.shape
            and set(np.unique(lungs)) <= {0, 1, 2}
        )
        np.testing.assert_array_equal(
            lungs, ref.label(sid, "lungs").read_region((0, 0, 0), tuple(shape))
        )
        np.testing.assert_array_equal(
            store.read_label_region(sid, "lungs", start, size),
            ref.label(sid, "lungs").read_region(start, tuple(s + n for s, n in zip(start, size))),
        )
        g = store.geometry(sid)
        assert (list(g.origin), list(g.spacing), list(g.direction)) == (
            rec["origin_xyz"],
            rec["spacing_xyz"],
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        )


def test_index_voxel_coordinates_match_the_geometry(store):
    # Each nodule's world position maps to its stored-grid voxel through the geometry.
    rows = store.nodules.to_pylist()
    assert rows
    for r in rows:
        g = store.geometry(r["series_id"])
        world = g.index_to_world((r["voxel_z"], r["voxel_y"], r["voxel_x"]))
        assert world == pytest.approx((r["world_x"], r["world_y"], r["world_z"]), abs=1e-6)
        back = g.world_to_index((r["world_x"], r["world_y"], r["world_z"]))
        assert back == pytest.approx((r["voxel_z"], r["voxel_y"], r["voxel_x"]), abs=1e-6)


def test_geometry_transforms_match_a_hand_computation():
    # The direction's columns are the array axes in the world: the array's x axis points
    # along world +y, its y axis along world -x. Index (z, y, x) = (1, 2, 3) with spacing
    # (0.5, 2, 3) from origin (10, 20, 30) lies at world x = 10 - 2 * 2 = 6,
    # y = 20 + 3 * 0.5 = 21.5, z = 30 + 1 * 3 = 33.
    g = ctstream.Geometry((10.0, 20.0, 30.0), (0.5, 2.0, 3.0), (0, -1, 0, 1, 0, 0, 0, 0, 1))
    assert g.index_to_world((1, 2, 3)) == pytest.approx((6.0, 21.5, 33.0))
    assert g.world_to_index((6.0, 21.5, 33.0)) == pytest.approx((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="degenerate"):
        ctstream.Geometry((0, 0, 0), (0.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)).world_to_index(
            (1, 2, 3)
        )


def test_arrays_own_their_memory(store):
    sid = store.series_ids[0]
    a = store.read_region(sid, (0, 0, 0), (8, 8, 8))
    # rust-numpy's owner of the Rust buffer: the array is not a copy into NumPy's heap.
    assert (
        type(a.base).__name__ == "PySliceContainer" and a.flags.writeable and a.flags.c_contiguous
    )


def test_errors_name_the_file_and_the_field(store, store_path, tmp_path):
    with pytest.raises(ctstream.StoreError, match=r"nowhere/manifest.json: not a ctstream store"):
        ctstream.Store(tmp_path / "nowhere")
    with pytest.raises(ctstream.StoreError, match="no-such-series"):
        store.read_region("no-such-series", (0, 0, 0), (1, 1, 1))
    with pytest.raises(ctstream.StoreError, match="nodules"):
        store.label(store.series_ids[0], "nodules")
    with pytest.raises(ValueError, match="at most 2147483648 voxels"):
        store.read_region(store.series_ids[0], (0, 0, 0), (100000, 100000, 100000))
    with pytest.raises(ValueError, match="shape_zyx: out of range for this option"):
        store.read_region(store.series_ids[0], (0, 0, 0), (-1, 1, 1))
    # One flipped byte in chunk (0, 0, 0) of a copy: named by file and chunk.
    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    sid = store.series_ids[0]
    path = copy / "volumes" / f"{sid}.ctv"
    off, length, _ = ctstream_reader.Volume(str(path)).table[0]
    data = bytearray(path.read_bytes())
    data[off + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    s = ctstream.Store(copy)
    with pytest.raises(
        ctstream.StoreError,
        match=rf"{sid}\.ctv: corrupt chunk \(z 0, y 0, x 0\): checksum mismatch",
    ):
        s.read_region(sid, (0, 0, 0), (4, 4, 4))
    s.read_region(sid, (0, 0, 40), (4, 4, 4))  # another chunk still reads
    # A damaged index table fails its checksum.
    t = copy / "index" / "nodules.parquet"
    t.write_bytes(t.read_bytes() + b"x")
    with pytest.raises(ctstream.StoreError, match="nodules.parquet.*SHA-256"):
        _ = s.nodules
