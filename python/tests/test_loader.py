"""ctstream.Loader: the Rust loader's batches, byte for byte, in arrays that own the Rust
buffers; errors as exceptions; threads that stop."""

import gc
import hashlib
import signal
import threading
import time

import ctstream
import numpy as np
import pytest
from conftest import loader_threads, rust_batches

OPTIONS = dict(batch_size=4, patch=(16, 32, 32), seed=11, augment="flip,rot90", negatives="lungs")


def digest(a: np.ndarray) -> str:
    # SHA-256 of the little-endian f32 bytes in C order, computed by NumPy and hashlib.
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def summary(b) -> dict:
    return {
        "epoch": b["epoch"],
        "index": b["index"],
        "shape": list(b["image"].shape),
        "image_sha256": digest(b["image"]),
        "mask_sha256": digest(b["mask"]),
        "patches": [
            {
                "series_id": s,
                "start_zyx": [int(v) for v in z],
                "positive": bool(p),
                "nodule_id": None if n < 0 else int(n),
                "source": src,
            }
            for s, z, p, n, src in zip(
                b["series_id"], b["start_zyx"], b["positive"], b["nodule_id"], b["source"]
            )
        ],
    }


def test_batches_equal_the_rust_loader_byte_for_byte(store, store_path):
    loader = ctstream.Loader(store, workers=3, **OPTIONS)
    assert len(loader) >= 3
    for epoch in (0, 2):
        got = [summary(b) for b in loader.epoch(epoch)]
        want = rust_batches(
            store_path,
            epoch=epoch,
            workers=1,
            batch_size=4,
            patch=(16, 32, 32),
            seed=11,
            augment="flip,rot90",
        )
        assert got == want
    # A mixture of negative sources: the same patches, each naming its source, as the
    # command draws them.
    mixed = dict(OPTIONS, negatives="lungs=0.3,body=0.3,dense=0.4", positive_share=0.5)
    got = [summary(b) for b in ctstream.Loader(store, workers=2, **mixed).epoch(0)]
    want = rust_batches(
        store_path,
        epoch=0,
        workers=1,
        batch_size=4,
        patch=(16, 32, 32),
        seed=11,
        augment="flip,rot90",
        negatives="lungs=0.3,body=0.3,dense=0.4",
        positive_share=0.5,
    )
    assert got == want
    sources = {p["source"] for b in got for p in b["patches"]}
    assert sources <= {"positive", "lungs", "body", "dense"}, sources
    assert {"body", "dense"} <= sources, sources
    # Some patches are positive and their masks are not empty; the images are windowed.
    b = next(iter(loader.epoch(0)))
    assert b["positive"].any() and b["mask"][b["positive"]].sum() > 0
    assert b["image"].min() >= 0.0 and b["image"].max() <= 1.0
    # Another seed gives other batches.
    other = summary(
        next(iter(ctstream.Loader(store, workers=1, **{**OPTIONS, "seed": 12}).epoch(0)))
    )
    assert other["image_sha256"] != summary(b)["image_sha256"]


def test_resume_mid_epoch_gives_the_same_batches(store):
    loader = ctstream.Loader(store, **OPTIONS)
    whole = [summary(b) for b in loader.epoch(1)]
    tail = [summary(b) for b in loader.batches(1, first=2)]
    assert tail == whole[2:]


def test_arrays_are_the_rust_buffers_not_copies(store):
    loader = ctstream.Loader(store, **OPTIONS)
    with loader.epoch(0) as batches:
        for b in batches:
            image_at, mask_at = batches._native._buffer_addresses()
            for a, at in ((b["image"], image_at), (b["mask"], mask_at)):
                assert a.dtype == np.float32 and a.shape == (4, 1, 16, 32, 32)
                # The data pointer is where Rust allocated the batch, and the array's base
                # is the owner of that Vec (which hands it back to the loader when freed):
                # no copy was made.
                assert a.ctypes.data == at
                assert type(a.base).__name__ == "BatchBuffer"
                assert a.flags.c_contiguous and a.flags.writeable and not a.flags.owndata
            assert image_at != mask_at


def test_batches_built_in_freed_buffers_are_the_same(store):
    # Every batch held: no buffer is ever handed back, so each is fresh.
    loader = ctstream.Loader(store, **OPTIONS, batches_per_epoch=12, workers=2)
    held = list(loader.epoch(0))
    # Each batch copied, then let go of (its arrays freed at once, as a training loop does
    # once the values are on the GPU): later batches are built in the freed buffers.
    copies, addresses = [], []
    with loader.epoch(0) as batches:
        for b in batches:
            addresses.append(b["image"].ctypes.data)
            copies.append((b["image"].copy(), b["mask"].copy()))
            del b
    assert len(copies) == len(held) == 12
    for h, (image, mask) in zip(held, copies):
        np.testing.assert_array_equal(h["image"], image)
        np.testing.assert_array_equal(h["mask"], mask)
    # Some buffer served more than one batch.
    assert len(set(addresses)) < len(addresses), addresses


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_leak_over_1000_batches(store):
    # 1000 batches of 8 patches of 16^3, image and mask: 262 MB pass through. A leak of
    # the Rust buffers would show as RSS growing with them.
    loader = ctstream.Loader(
        store, batch_size=8, patch=(16, 16, 16), batches_per_epoch=100, seed=1, workers=2
    )
    rss = []
    for epoch in range(10):
        for b in loader.epoch(epoch):
            assert b["image"].shape == (8, 1, 16, 16, 16)
        gc.collect()
        rss.append(rss_bytes())
    growth = rss[-1] - rss[1]
    assert growth < 16 << 20, (
        f"RSS grew by {growth / 2**20:.1f} MiB from epoch 1 to 9 (of {[r >> 20 for r in rss]} MiB)"
    )


def test_bad_options_raise_value_errors_naming_them(store):
    cases = [
        (dict(positive_share=1.5), r"positive_share 1\.5: must lie in"),
        (
            dict(negatives="everywhere"),
            "negatives: `everywhere` is not a source of negatives",
        ),
        (dict(augment="flips"), "augment: `flips` is not one of"),
        (dict(augment={"flip": True}), r'augment\["flip"\]: not one of'),
        (dict(augment={"hu_shift": -1}), "augment hu_shift -1: must be a finite number at least 0"),
        (dict(augment={"hu_scale": 1.5}), r"augment hu_scale 1\.5: must lie in \[0, 1\)"),
        (dict(augment="rotation:deg=200"), "augment rotation about z"),
        (dict(augment="scaling:range=0..1.4"), "augment scaling"),
        (dict(augment="elastic:scale=0"), "augment elastic scale"),
        (dict(augment="gamma:p=-1"), "augment gamma probability -1"),
        (dict(hu_window=(float("nan"), 400)), r"hu_window \[NaN, 400\.0\]: must be finite"),
        (dict(split="val", val_fraction=1.0), r"val_fraction 1: must lie in \[0, 1\)"),
        (dict(hu_window=(400, -1000)), "hu_window .*: must be LO < HI"),
        (dict(workers=0), "workers 0: give 1 to 256"),
        (dict(workers=100_000), "workers 100000: give 1 to 256"),
        (dict(patch=(10**5,) * 3), r"patch \[100000, 100000, 100000\]: each side at least 1"),
        (dict(patch=(2**63, 2**63, 4)), "patch .*: each side at least 1"),
        (dict(batch_size=10**9), "batch_size 1000000000: give 1 to 4096 for patch"),
        (dict(prefetch=10**12), "prefetch 1000000000000: give 1 to 1024"),
        (
            dict(prefetch=1000, batch_size=512),
            "prefetch 1000 and workers 2 with batches of 512 MiB hold 513536 MiB at once: at most 16 GiB",
        ),
        (dict(jitter=(0, 10**9, 0)), r"jitter \[0, 1000000000, 0\]: at most 65536"),
        (dict(fetchers=10**6), "fetchers 1000000: give 0 to 1024"),
        (dict(batches_per_epoch=0), "batches_per_epoch 0"),
        (dict(rank=0), "rank and world: give both or neither"),
        (dict(rank=3, world=3), r"shard \(rank 3, world 3\): needs rank < world <= 65536"),
        (dict(split="test"), "split `test`"),
        (dict(mask_label="nodules"), "has no label volume `nodules`"),
        (dict(mask_label="Bad"), "mask_label: `Bad` is not a label volume name"),
        (dict(series=["nope"]), "nope"),
        (dict(window=(0, 1), hu_window=(0, 1)), "same option"),
    ]
    for options, message in cases:
        with pytest.raises((ValueError, ctstream.StoreError), match=message):
            ctstream.Loader(store, **options)


def test_a_corrupt_chunk_while_streaming_is_a_store_error(store_path, tmp_path):
    import shutil
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "tools" / "python"))
    import ctstream_reader

    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    # Every chunk of every scan damaged: the first batch fails, naming a file and chunk.
    for path in (copy / "volumes").glob("*.ctv"):
        data = bytearray(path.read_bytes())
        for off, length, _ in ctstream_reader.Volume(str(path)).table:
            data[off + length // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    loader = ctstream.Loader(
        copy, negatives="random", **{k: v for k, v in OPTIONS.items() if k != "negatives"}
    )
    batches = loader.epoch(0)
    with pytest.raises(
        ctstream.StoreError,
        match=r"\.ctv: corrupt chunk \(z \d+, y \d+, x \d+\): checksum mismatch",
    ):
        next(batches)
    assert not batches.running
    with pytest.raises(StopIteration):
        next(batches)


def test_a_missing_nodules_table_is_a_store_error_not_an_empty_one(store_path, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    # A partial copy: the table is gone while index/checksums.json lists it. Read as an
    # empty table it would make every patch a negative with an empty mask.
    (copy / "index" / "nodules.parquet").unlink()
    with pytest.raises(
        ctstream.StoreError,
        match=r"nodules\.parquet: corrupt: missing, but .*checksums\.json lists it",
    ):
        ctstream.Loader(copy, **OPTIONS)


def test_shards_are_disjoint_and_cover_the_store(store):
    for world in (2, 3):
        shares = [set(ctstream.Loader(store, rank=r, world=world).series_ids) for r in range(world)]
        assert set().union(*shares) == set(store.series_ids)
        assert sum(len(s) for s in shares) == len(store.series_ids)


def wait_for_threads(n: int, seconds: float = 5.0) -> int:
    end = time.monotonic() + seconds
    while loader_threads() != n and time.monotonic() < end:
        time.sleep(0.01)
    return loader_threads()


def test_break_close_and_drop_stop_the_threads(store):
    assert loader_threads() == 0
    loader = ctstream.Loader(store, workers=3, **{k: v for k, v in OPTIONS.items()})
    batches = loader.epoch(0)
    next(batches)
    # (A thread takes its name once it runs: wait for all three.)
    assert wait_for_threads(3) == 3
    batches.close()
    assert loader_threads() == 0 and not batches.running
    # break out of a for loop, then drop the iterator.
    for b in loader.epoch(0):  # noqa: B007 (b is dropped below, after the loop)
        break
    del b
    gc.collect()
    assert wait_for_threads(0) == 0
    # with-block.
    with loader.epoch(0) as batches:
        next(batches)
        assert wait_for_threads(3) == 3
    assert loader_threads() == 0


def test_keyboard_interrupt_stops_the_threads(store):
    # Python installs its Ctrl-C handler only where SIGINT was not ignored when it started
    # (a shell ignores it in jobs it starts in the background, as some CI runners do):
    # install it for this test, and put back what was there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _keyboard_interrupt_stops_the_threads(store)
    finally:
        signal.signal(signal.SIGINT, previous)


def _keyboard_interrupt_stops_the_threads(store):
    loader = ctstream.Loader(store, workers=2, **OPTIONS)
    # Ctrl-C while Python runs the loop body.
    with pytest.raises(KeyboardInterrupt):
        for _ in loader.epoch(0):
            signal.raise_signal(signal.SIGINT)
    gc.collect()
    assert wait_for_threads(0) == 0
    # Ctrl-C while the main thread waits in Rust for a batch (large batches, one worker):
    # the wait checks for signals and raises.
    slow = ctstream.Loader(
        store,
        workers=1,
        prefetch=1,
        batch_size=32,
        patch=(64, 96, 96),
        batches_per_epoch=50,
        cache_bytes=0,
    )
    timer = threading.Timer(0.2, lambda: signal.raise_signal(signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in slow.epoch(0):
            pass
    timer.join()
    assert time.monotonic() - started < 30
    gc.collect()
    assert wait_for_threads(0) == 0


def test_the_loader_refuses_to_run_in_a_forked_child(store):
    import os

    loader = ctstream.Loader(store, **OPTIONS)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what happens, never run pytest's teardown
        try:
            loader.epoch(0)
            msg = "no error"
        except RuntimeError as e:
            msg = str(e)
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    msg = os.read(r, 4096).decode()
    assert "cannot run in process" in msg and "num_workers=0" in msg, msg
    assert len(list(loader.epoch(0))) == len(loader)  # the parent's loader still works


def test_an_epoch_started_before_a_fork_refuses_the_child_instead_of_hanging(store):
    # The epoch's worker threads and its prefetched batches stay in the parent: a child
    # that iterated it used to take the prefetched batches and then wait forever.
    import os
    import signal

    loader = ctstream.Loader(store, **OPTIONS)
    assert len(loader) >= 2, "the test needs an epoch of several batches"
    ep = loader.epoch(0)
    first = next(ep)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what happens, never run pytest's teardown
        signal.alarm(60)  # a hang ends the child, and the parent sees no message
        try:
            next(ep)
            msg = "no error"
        except RuntimeError as e:
            msg = str(e)
        try:
            ep.close()  # must not wait for the parent's threads either
            del ep
        except Exception as e:  # noqa: BLE001 - reported to the parent
            msg += f" / close: {e!r}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    msg = os.read(r, 4096).decode()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}: {msg}"
    assert "ctstream Epoch was built in process" in msg and "num_workers=0" in msg, msg
    rest = list(ep)  # the parent's epoch goes on from where it was
    assert [first["index"]] + [b["index"] for b in rest] == list(range(len(loader)))


def test_batches_past_the_end_of_the_epoch_are_refused(store):
    loader = ctstream.Loader(store, **OPTIONS)
    n = len(loader)
    assert [b["index"] for b in loader.batches(0, first=n - 1, count=1)] == [n - 1]
    for first, count in [(0, n + 5), (n, 1), (n + 1, None), (2**63, 2**63)]:
        with pytest.raises(ValueError, match=f"an epoch has batches 0..{n}"):
            loader.batches(0, first=first, count=count)
