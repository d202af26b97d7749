"""Every keyword of every public entry point, given a negative, a huge, a NaN and a
wrong-typed value (and, for a sequence keyword, a sequence of them), either works or
raises ``ValueError`` / ``TypeError`` whose message names the keyword (the README's
promise): never an ``OverflowError``, a bare ``TypeError`` from inside a conversion, an
error naming something else, or a dead interpreter (sizes are bounded before anything is
allocated: a ``batch_size`` of 2**62 is refused, not attempted).

The keywords are read from the signatures, so a keyword added later is tried too."""

import inspect
import math

import ctstream
import numpy as np

VALUES = {
    "negative": -1,
    "huge int": 2**70,
    "large int": 2**62,
    "NaN": math.nan,
    "infinity": math.inf,
    "wrong type": object(),
}

# What a value may pass, each with why: everything else must raise.
ACCEPTED = {
    # Seeds and epochs are any u64: 2**62 is one.
    "Loader(seed=large int)": "a u64 seed",
    "Loader.batches(epoch=large int)": "a u64 epoch",
    "synth(seed=large int)": "a u64 seed",
    "evaluate(seed=large int)": "a u64 seed",
    # A count, not a size: batches are built as they are asked for.
    "Loader(batches_per_epoch=large int)": "an epoch that never ends, streamed",
    # A filter: no finding is that large, so none is reported.
    "predict(min_voxels=large int)": "a size filter, nothing allocated",
    # A region outside the scan reads as the fill value (documented), at any position.
    "Store.read_region(start_zyx=(negative,) * 3)": "outside the scan: fill",
    "Store.read_region(start_zyx=(large int,) * 3)": "outside the scan: fill",
    "Store.read_label_region(start_zyx=(negative,) * 3)": "outside the scan: 0",
    "Store.read_label_region(start_zyx=(large int,) * 3)": "outside the scan: 0",
    # Geometry is arithmetic: any position maps, NaN to NaN as in numpy.
    **{
        f"Geometry.{f}({k}=({v},) * 3)": "arithmetic"
        for f, k in [("index_to_world", "index_zyx"), ("world_to_index", "world_xyz")]
        for v in ["negative", "huge int", "large int", "NaN", "infinity"]
    },
}


def entry_points(store, store_path, raw, tmp_path):
    """name -> (call with keywords, the keywords to try)."""
    sid = store.series_ids[0]

    def model(x):
        return np.zeros_like(x)

    findings = tmp_path / "candidates.csv"
    findings.write_text("seriesuid,coordX,coordY,coordZ,probability\n")
    points = {
        "Store": lambda **k: ctstream.Store(store_path, **k),
        "Loader": lambda **k: ctstream.Loader(store, **k),
        "Loader.batches": lambda **k: ctstream.Loader(store, batch_size=2).batches(**k),
        "Store.read_region": lambda **k: store.read_region(sid, **k),
        "Store.read_label_region": lambda **k: store.read_label_region(sid, "lungs", **k),
        "Geometry.index_to_world": lambda **k: store.geometry(sid).index_to_world(**k),
        "Geometry.world_to_index": lambda **k: store.geometry(sid).world_to_index(**k),
        "ingest": lambda **k: ctstream.ingest(
            raw, tmp_path / f"ingest-{len(list(tmp_path.iterdir()))}", progress=False, **k
        ),
        "synth": lambda **k: ctstream.synth(
            tmp_path / f"synth-{len(list(tmp_path.iterdir()))}", scans=1, small=True, **k
        ),
        "predict": lambda **k: ctstream.predict(store, [sid], model, progress=False, **k),
        "evaluate": lambda **k: ctstream.evaluate([], store, series=[sid], bootstrap=0, **k),
        "Viewer": lambda **k: ctstream.Viewer(store, **k).stop(),
    }
    functions = {
        "Store": ctstream.Store.__init__,
        "Loader": ctstream.Loader.__init__,
        "Loader.batches": ctstream.Loader.batches,
        "Store.read_region": ctstream.Store.read_region,
        "Store.read_label_region": ctstream.Store.read_label_region,
        "Geometry.index_to_world": ctstream.Geometry.index_to_world,
        "Geometry.world_to_index": ctstream.Geometry.world_to_index,
        "ingest": ctstream.ingest,
        "synth": ctstream.synth,
        "predict": ctstream.predict,
        "evaluate": ctstream.evaluate,
        "Viewer": ctstream.Viewer.__init__,
    }
    fixed = {
        "Store": {"self", "path"},
        "Loader": {"self", "store"},
        "Loader.batches": {"self"},
        "Store.read_region": {"self", "series_id"},
        "Store.read_label_region": {"self", "series_id", "name"},
        "Geometry.index_to_world": {"self"},
        "Geometry.world_to_index": {"self"},
        "ingest": {"inputs", "progress"},
        "synth": {"progress"},
        "predict": {"store", "series", "model", "progress"},
        "evaluate": {"predictions", "store"},
        "Viewer": {"self", "store"},
    }
    out = {}
    for name, call in points.items():
        sig = inspect.signature(inspect.unwrap(functions[name]))
        params = {
            p.name: str(p.annotation)
            for p in sig.parameters.values()
            if p.name not in fixed[name] and p.kind is not p.VAR_KEYWORD
        }
        out[name] = (call, params)
    return out


def needs(name, keyword):
    """Keywords that only make sense with another (the pair is completed with a valid
    partner, so the value tried is the one judged)."""
    return {
        ("Loader", "rank"): {"world": 2},
        ("Loader", "world"): {"rank": 0},
        ("Loader", "val_fraction"): {"split": "train"},
        ("Loader", "hard_negatives"): {"negatives": "lungs=0.5,hard=0.5"},
        ("Store.read_region", "start_zyx"): {"shape_zyx": (1, 1, 1)},
        ("Store.read_region", "shape_zyx"): {"start_zyx": (0, 0, 0)},
        ("Store.read_label_region", "start_zyx"): {"shape_zyx": (1, 1, 1)},
        ("Store.read_label_region", "shape_zyx"): {"start_zyx": (0, 0, 0)},
        ("Loader.batches", "first"): {"epoch": 0},
        ("Loader.batches", "count"): {"epoch": 0},
        ("Geometry.index_to_world", "index_zyx"): {},
    }.get((name, keyword), {"epoch": 0} if name == "Loader.batches" and keyword != "epoch" else {})


def test_every_keyword_refuses_bad_values_with_an_error_naming_it(store, store_path, raw, tmp_path):
    points = entry_points(store, store_path, raw, tmp_path)
    tried, problems, passed = 0, [], []
    for name, (call, params) in points.items():
        for keyword, annotation in params.items():
            values = dict(VALUES)
            if "Sequence" in annotation or "Tuple" in annotation:
                for label, v in VALUES.items():
                    values[f"({label},) * 3"] = (v,) * 3
                    values[f"({label},) * 2"] = (v,) * 2
            for label, value in values.items():
                tried += 1
                kwargs = {**needs(name, keyword), keyword: value}
                try:
                    call(**kwargs)
                except (ValueError, TypeError) as e:
                    if keyword not in str(e):
                        problems.append(
                            f"{name}({keyword}={label}): {type(e).__name__} not naming it: {e}"
                        )
                except Exception as e:  # noqa: BLE001 - every other kind is the finding
                    problems.append(f"{name}({keyword}={label}): {type(e).__name__}: {e}")
                else:
                    passed.append(f"{name}({keyword}={label})")
    assert tried > 500, tried
    assert not problems, "\n".join(problems)
    unexpected = [p for p in passed if p not in ACCEPTED]
    assert not unexpected, "accepted, but not in ACCEPTED:\n" + "\n".join(unexpected)
    assert set(ACCEPTED) <= set(passed), set(ACCEPTED) - set(passed)
