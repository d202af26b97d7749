"""ctstream.predict and ctstream.evaluate with a model of the user's: the probability map
against a naive sliding window written here in numpy (nnU-Net's tile placement, the
Gaussian of the docs), the findings against connected components computed here, and the
FROC against `ctstream evaluate` on the files predict wrote."""

import json

import ctstream
import numpy as np
import pytest
from conftest import run_cli

PATCH = (16, 32, 32)
HU = (-1000.0, 400.0)


def model(x: np.ndarray) -> np.ndarray:
    """Probabilities that depend on the voxel's place in its tile (so blending matters):
    bright tissue scores high, more so towards each tile's last column."""
    ramp = np.linspace(0.6, 1.0, x.shape[-1], dtype=np.float32)
    return 1.0 / (1.0 + np.exp(-(x * ramp - 0.45) * 25.0))


def steps(n: int, p: int, overlap: float) -> list:
    """nnU-Net's compute_steps_for_sliding_window (nnunetv2/inference/sliding_window_prediction.py)."""
    if n <= p:
        return [0]
    target = p * (1 - overlap)
    num = int(np.ceil((n - p) / target)) + 1
    actual = (n - p) / (num - 1)
    return [int(np.round(actual * i)) for i in range(num)]


def gaussian(p) -> np.ndarray:
    axes = [np.exp(-((np.arange(n) - (n - 1) / 2) ** 2) / (2 * (n / 8) ** 2)) for n in p]
    return np.einsum("i,j,k->ijk", *axes).astype(np.float32)


def naive_map(hu: np.ndarray, overlap: float) -> np.ndarray:
    """Every tile, one at a time, windowed, weighted and normalised."""
    acc = np.zeros(hu.shape, np.float64)
    wsum = np.zeros(hu.shape, np.float64)
    w = gaussian(PATCH)
    x = np.clip((hu.astype(np.float32) - HU[0]) / (HU[1] - HU[0]), 0, 1).astype(np.float32)
    for z in steps(hu.shape[0], PATCH[0], overlap):
        for y in steps(hu.shape[1], PATCH[1], overlap):
            for xx in steps(hu.shape[2], PATCH[2], overlap):
                sl = np.s_[z : z + PATCH[0], y : y + PATCH[1], xx : xx + PATCH[2]]
                p = model(x[sl][None, None])[0, 0]
                acc[sl] += w * p
                wsum[sl] += w
    return np.where(wsum > 0, acc / np.maximum(wsum, 1e-30), 0).astype(np.float32)


def components(prob: np.ndarray, threshold: float):
    """6-connected components of prob >= threshold: (voxels, centroid z, y, x, max, mean)."""
    on = prob >= threshold
    seen = np.zeros(prob.shape, bool)
    out = []
    for start in zip(*np.nonzero(on)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], []
        while stack:
            v = stack.pop()
            members.append(v)
            for a in range(3):
                for d in (-1, 1):
                    u = list(v)
                    u[a] += d
                    u = tuple(u)
                    if 0 <= u[a] < prob.shape[a] and on[u] and not seen[u]:
                        seen[u] = True
                        stack.append(u)
        m = np.array(members)
        p = prob[tuple(m.T)].astype(np.float64)
        out.append((len(m), *m.mean(axis=0), float(p.max()), float(p.mean())))
    return sorted(out)


@pytest.fixture(scope="module")
def scan(store):
    return store.series_ids[0]


def test_the_map_equals_a_naive_sliding_window(store, scan):
    pred = ctstream.predict(
        store, scan, model, patch=PATCH, overlap=0.5, batch_size=5, lung_roi=False, progress=False
    )
    (s,) = pred.scans
    assert s["series_id"] == scan and s["looked"] == "everywhere"
    hu = store.volume(scan)
    assert all(n > p for n, p in zip(hu.shape, PATCH)), hu.shape
    want = naive_map(hu, 0.5)
    got = s["probabilities"]
    assert got.shape == hu.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert (
        s["tiles"]
        == s["tiles_computed"]
        == np.prod([len(steps(n, p, 0.5)) for n, p in zip(hu.shape, PATCH)])
    )
    # The findings are the components of that map, measured on the stored grid.
    got_rows = pred.findings.to_pydict()
    mine = components(want, 0.5)
    theirs = sorted(
        (v, z, y, x, p)
        for v, z, y, x, p in zip(
            got_rows["voxels"],
            got_rows["voxel_z"],
            got_rows["voxel_y"],
            got_rows["voxel_x"],
            got_rows["max_probability"],
        )
    )
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs):
        assert a[0] == b[0]
        np.testing.assert_allclose(a[1:5], b[1:], atol=1e-5)
    g = store.geometry(scan)
    for z, y, x, wx in zip(
        got_rows["voxel_z"], got_rows["voxel_y"], got_rows["voxel_x"], got_rows["world_x"]
    ):
        assert abs(g.index_to_world((z, y, x))[0] - wx) < 1e-6


def test_findings_ranked_by_their_mean_probability(store, scan):
    """score="mean": each finding's probability (the detections, as candidates.csv) is
    the mean of the map over its component, computed here from the naive map, and the
    findings come highest mean first."""
    pred = ctstream.predict(
        store, scan, model, patch=PATCH, overlap=0.5, lung_roi=False, score="mean", progress=False
    )
    assert pred.score == "mean"
    mine = components(naive_map(store.volume(scan), 0.5), 0.5)
    dets = pred.detections()
    assert len(dets) == len(mine) > 0
    assert [d[4] for d in dets] == sorted((d[4] for d in dets), reverse=True)
    np.testing.assert_allclose(
        sorted(d[4] for d in dets), sorted(m[5] for m in mine), rtol=0, atol=1e-5
    )


def test_test_time_mirroring_averages_the_mirrored_predictions(store, scan):
    """mirror="x" predicts each batch as is and mirrored along x (numpy's flip here),
    mirrored back and averaged: the map of a model that does that itself."""

    def averaged(x):
        return (model(x) + model(x[..., ::-1])[..., ::-1]) / 2

    kw = dict(patch=PATCH, overlap=0.5, batch_size=5, lung_roi=False, progress=False)
    (m,) = ctstream.predict(store, scan, model, mirror="x", **kw).scans
    (a,) = ctstream.predict(store, scan, averaged, **kw).scans
    (plain,) = ctstream.predict(store, scan, model, **kw).scans
    np.testing.assert_allclose(m["probabilities"], a["probabilities"], rtol=0, atol=1e-6)
    assert np.abs(plain["probabilities"] - a["probabilities"]).max() > 1e-3
    with pytest.raises(ValueError, match="mirror `w`"):
        ctstream.predict(store, scan, model, mirror="w", progress=False)


def test_a_torch_module_is_called_like_a_function(store, scan):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(model(x.numpy()))

    kw = dict(patch=PATCH, overlap=0.25, lung_roi=False, progress=False)
    a = ctstream.predict(store, [scan], Net(), **kw).scans[0]["probabilities"]
    b = ctstream.predict(store, [scan], model, **kw).scans[0]["probabilities"]
    np.testing.assert_array_equal(a, b)


def test_written_files_and_the_froc_equal_the_clis(store, store_path, raw, scan, tmp_path):
    out = tmp_path / "pred"
    pred = ctstream.predict(
        store, store.series_ids, model, out=out, patch=PATCH, map_format="ctv", progress=False
    )
    assert pred.files == {
        "candidates": str(out / "candidates.csv"),
        "findings": str(out / "findings.parquet"),
        "series": str(out / "series.txt"),
    }
    assert all(s["probabilities"] is None for s in pred.scans)  # written, not kept
    assert all(s["looked"] == "lung_region" for s in pred.scans)
    assert sum(s["tiles_computed"] for s in pred.scans) < sum(s["tiles"] for s in pred.scans)
    assert (out / "series.txt").read_text().split() == store.series_ids
    assert sorted(p.name for p in (out / "volumes").iterdir()) == [
        f"{i}.ctv" for i in store.series_ids
    ]
    # Every finding lies in its scan's lung region: the lungs, dilated by 10 mm.
    for sid, z, y, x in zip(
        *(
            pred.findings.column(c).to_pylist()
            for c in ("series_id", "voxel_z", "voxel_y", "voxel_x")
        )
    ):
        lungs = store.label(sid)
        sp = store.geometry(sid).spacing
        m = [max(1, int(round(10.0 / sp[2 - a]))) for a in range(3)]
        c = [int(np.floor(v + 0.5)) for v in (z, y, x)]
        box = lungs[
            max(0, c[0] - m[0]) : c[0] + m[0] + 1,
            max(0, c[1] - m[1]) : c[1] + m[1] + 1,
            max(0, c[2] - m[2]) : c[2] + m[2] + 1,
        ]
        assert box.any(), (sid, c)
    mine = ctstream.evaluate(pred, store, bootstrap=0)
    from_dir = ctstream.evaluate(out, store_path, bootstrap=0, out=tmp_path / "froc")
    cli = json.loads(
        run_cli(
            "evaluate",
            "--annotations",
            str(raw / "annotations.csv"),
            "--predictions",
            str(out / "candidates.csv"),
            "--series-list",
            str(out / "series.txt"),
            "--bootstrap",
            "0",
            "--json",
        )
    )
    assert mine == from_dir == cli
    assert mine["scans"] == len(store.series_ids) and mine["nodules"] > 0
    assert mine["detected"] > 0, mine
    for f in ("froc.json", "froc.csv", "froc.png"):
        assert (tmp_path / "froc" / f).stat().st_size > 0


def test_bad_settings_and_models_are_named(store, scan):
    with pytest.raises(ValueError, match="overlap 1"):
        ctstream.predict(store, scan, model, overlap=1.0, progress=False)
    with pytest.raises(ValueError, match="batch_size 0"):
        ctstream.predict(store, scan, model, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="patch"):
        ctstream.predict(store, scan, model, patch=(10**5,) * 3, progress=False)
    with pytest.raises(ValueError, match="score: score `median`"):
        ctstream.predict(store, scan, model, score="median", progress=False)
    with pytest.raises(ValueError, match="merge_mm -1"):
        ctstream.predict(store, scan, model, merge_mm=-1.0, progress=False)
    with pytest.raises(ValueError, match="score"):
        ctstream.Predictions([], [], None, None, score="median")
    with pytest.raises(ValueError, match="map_format"):
        ctstream.predict(store, scan, model, map_format="png", progress=False)
    with pytest.raises(ctstream.StoreError, match="no-such-scan"):
        ctstream.predict(store, "no-such-scan", model, progress=False)
    with pytest.raises(ctstream.Error, match="returned 1 values"):
        ctstream.predict(store, scan, lambda x: np.zeros(1, np.float32), progress=False)

    def broken(x):
        raise RuntimeError("the model broke")

    with pytest.raises(ctstream.Error, match="RuntimeError: the model broke"):
        ctstream.predict(store, scan, broken, progress=False)
    with pytest.raises(TypeError, match="neither a torch module nor callable"):
        ctstream.predict(store, scan, 42, progress=False)
    with pytest.raises(ValueError, match="bootstrap"):
        ctstream.evaluate([], store, series=[scan], bootstrap=10**9)
