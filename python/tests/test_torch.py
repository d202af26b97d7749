"""ctstream.torch.PatchDataset: tensors from the Rust loader through a torch DataLoader,
exact resume from state_dict, ranks from torch.distributed, and a clear error instead of
a hang in DataLoader worker processes."""

import json
import math
import os
import subprocess
import sys
import textwrap

import ctstream
import ctstream.torch as ctt
import pytest
import torch
from test_loader import OPTIONS, summary


def as_numpy(b):
    return {
        **b,
        **{k: b[k].numpy() for k in ("image", "mask", "start_zyx", "positive", "nodule_id")},
    }


def test_tensors_are_the_loader_batches_without_a_copy(store):
    ds = ctt.PatchDataset(store, **OPTIONS)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    got = list(dl)
    assert len(got) == len(ds) == len(ds.loader)
    want = [summary(b) for b in ctstream.Loader(store, **OPTIONS).epoch(0)]
    assert [summary(as_numpy(b)) for b in got] == want
    b = got[0]
    assert b["image"].dtype == torch.float32 and b["image"].shape == (4, 1, 16, 32, 32)
    assert b["mask"].dtype == torch.float32 and b["positive"].dtype == torch.bool
    # The tensor is a view of the NumPy array over the Rust buffer.
    with ds.loader.epoch(0) as batches:
        raw = next(batches)
        t = ctt.to_torch(raw)
        assert (
            t["image"].data_ptr()
            == raw["image"].ctypes.data
            == batches._native._buffer_addresses()[0]
        )
    # The next pass is the next epoch.
    assert ds.epoch == 1 and ds.next_batch == 0
    assert [summary(as_numpy(b)) for b in dl] == [
        summary(b) for b in ctstream.Loader(store, **OPTIONS).epoch(1)
    ]


def test_state_dict_resumes_on_the_exact_next_batch(store, tmp_path):
    n = len(ctstream.Loader(store, **OPTIONS))
    # An uninterrupted run over two epochs.
    ds = ctt.PatchDataset(store, **OPTIONS)
    straight = [summary(as_numpy(b)) for _ in range(2) for b in ds]
    assert len(straight) == 2 * n
    # Stop after every possible step, save, rebuild, load, finish: the same batches.
    for stop in (1, n - 1, n, n + 1):
        ds = ctt.PatchDataset(store, **OPTIONS)
        seen = []
        while len(seen) < stop:
            for b in ds:
                seen.append(summary(as_numpy(b)))
                if len(seen) == stop:
                    break
        state = ds.state_dict()
        assert state["seed"] == OPTIONS["seed"]
        # Through a PyTorch checkpoint file, as a training script keeps it.
        torch.save({"data": state}, tmp_path / "ckpt.pt")
        saved = torch.load(tmp_path / "ckpt.pt")["data"]
        resumed = ctt.PatchDataset(store, **OPTIONS)
        resumed.load_state_dict(saved)
        rest = []
        while len(seen) + len(rest) < 2 * n:
            rest.extend(summary(as_numpy(b)) for b in resumed)
        assert seen + rest == straight, f"stopped after {stop}"
    with pytest.raises(ValueError, match="seed 11, this dataset 12"):
        ctt.PatchDataset(store, **{**OPTIONS, "seed": 12}).load_state_dict(state)


def test_num_workers_gives_a_clear_error_not_a_hang(store):
    ds = ctt.PatchDataset(store, **OPTIONS)
    for context in ("fork", "spawn"):
        dl = torch.utils.data.DataLoader(
            ds, batch_size=None, num_workers=2, multiprocessing_context=context, timeout=120
        )
        with pytest.raises((RuntimeError, TypeError), match="num_workers=0"):
            next(iter(dl))
    # It still works in this process.
    assert len(list(torch.utils.data.DataLoader(ds, batch_size=None))) == len(ds)


RANK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch.distributed as dist
    import ctstream.torch as ctt
    dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    ds = ctt.PatchDataset(sys.argv[1], batch_size=2)
    print(json.dumps({"rank": ds.rank, "world": ds.world, "series": ds.loader.series_ids}))
    # Without a barrier a rank that finished connecting can exit while its peer is still
    # completing Gloo's handshake, and the peer fails "Connection closed by peer".
    dist.barrier()
    dist.destroy_process_group()
""")


def test_rank_and_world_come_from_torch_distributed(store_path, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    rendezvous = tmp_path / "rendezvous"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(store_path), str(rendezvous)],
            env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    errors = "\n".join(f"rank {r}: {err}" for r, (_, err) in enumerate(results))
    assert [p.returncode for p in procs] == [0, 0], errors
    outs = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert [(o["rank"], o["world"]) for o in outs] == [(0, 2), (1, 2)]
    a, b = (set(o["series"]) for o in outs)
    assert a and b and not a & b
    assert a | b == set(ctstream.Store(store_path).series_ids)


def test_set_epoch_refuses_values_naming_the_epoch(store):
    ds = ctt.PatchDataset(store, **OPTIONS)
    for bad, kind in [
        (-1, ValueError),
        (2**64, ValueError),
        (math.nan, TypeError),
        ("1", TypeError),
    ]:
        with pytest.raises(kind, match="epoch"):
            ds.set_epoch(bad)
    ds.set_epoch(3)
    assert (ds.epoch, ds.next_batch) == (3, 0)


def test_compact_batches_normalise_to_the_float32_batches_bit_for_bit(store):
    # Mirroring, quarter turns and a HU factor and shift, each drawn per patch.
    opts = {**OPTIONS, "augment": "flip,rot90,hu:shift=40:scale=0.1"}
    floats = list(ctstream.Loader(store, **opts).epoch(0))
    compact = list(
        torch.utils.data.DataLoader(ctt.PatchDataset(store, compact=True, **opts), batch_size=None)
    )
    assert len(compact) == len(floats) > 0
    for f, c in zip(floats, compact):
        assert c["image"].dtype == torch.int16 and c["mask"].dtype == torch.uint8
        assert c["image"].shape == f["image"].shape and tuple(c["window"]) == (-1000.0, 400.0)
        image, mask = ctt.normalise(c, "cpu")
        assert image.dtype == mask.dtype == torch.float32
        # Bit for bit: the same float32 patterns, not merely close.
        assert torch.equal(image.view(torch.int32), torch.from_numpy(f["image"]).view(torch.int32))
        assert torch.equal(mask, torch.from_numpy(f["mask"]))
        assert c["series_id"] == f["series_id"]
    # A float32 batch passes through normalise unchanged.
    image, _ = ctt.normalise(floats[0])
    assert torch.equal(image, torch.from_numpy(floats[0]["image"]))


def test_compact_int16_is_the_stored_hu(store):
    loader = ctstream.Loader(store, compact=True, **{**OPTIONS, "augment": "none"})
    b = next(iter(loader.epoch(0)))
    d, h, w = b["image"].shape[2:]
    for i, (sid, start) in enumerate(zip(b["series_id"], b["start_zyx"])):
        want = store.read_region(sid, start_zyx=tuple(int(v) for v in start), shape_zyx=(d, h, w))
        assert (b["image"][i, 0] == want).all()
        assert b["hu_scale"][i] == 1.0 and b["hu_shift"][i] == 0.0


def test_compact_refuses_augmentations_that_need_float32(store):
    with pytest.raises(ValueError, match="compact.*rotation"):
        ctstream.Loader(store, compact=True, augment="nnunet")
    with pytest.raises(TypeError, match="compact"):
        ctstream.Loader(store, compact="yes")


def test_passes_share_one_stream_whose_threads_persist(store):
    from conftest import loader_threads

    opts = {**OPTIONS, "batches_per_epoch": 2, "workers": 3}
    before = loader_threads()
    ds = ctt.PatchDataset(store, **opts)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    reference = ctstream.Loader(store, **opts)
    threads = set()
    for epoch in range(4):
        got = [summary(as_numpy(b)) for b in dl]
        assert got == [summary(b) for b in reference.epoch(epoch)], epoch
        threads.add(loader_threads())
    # The same 3 worker threads through every pass (not started afresh each epoch).
    assert threads == {before + 3}, threads
    # A pass cut short resumes on the same stream, at the next batch.
    it = iter(dl)
    first = next(it)
    assert (first["epoch"], first["index"]) == (4, 0)
    rest = [(b["epoch"], b["index"]) for b in dl]
    assert rest == [(4, 1)] and loader_threads() == before + 3
    # set_epoch moves elsewhere: a new stream; close stops the threads.
    ds.set_epoch(9)
    assert [b["epoch"] for b in dl] == [9, 9]
    ds.close()
    assert loader_threads() == before
