"""Stores on object storage from Python, against moto's S3 server on the loopback interface
(tools/s3/server.py, in the Python of `$CTSTREAM_S3_PYTHON` or target/s3-venv): an ingest
to `s3://`, then the store, its index and the loader's batches equal to the local store's;
a disk cache that serves a second run. Skipped without the server's packages unless
`CTSTREAM_REQUIRE_S3` is set (CI sets it)."""

import os
import subprocess
from pathlib import Path

import ctstream
import pytest
from conftest import ROOT
from test_loader import OPTIONS, summary

BUCKET = "ctstream-py"


@pytest.fixture(scope="module")
def s3():
    python = os.environ.get("CTSTREAM_S3_PYTHON") or str(
        ROOT / "target" / "s3-venv" / "bin" / "python"
    )
    required = bool(os.environ.get("CTSTREAM_REQUIRE_S3"))
    try:
        p = subprocess.Popen(
            [python, str(ROOT / "tools" / "s3" / "server.py"), "--bucket", BUCKET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError as e:
        if required:
            pytest.fail(f"{python}: {e}")
        pytest.skip(f"no Python with moto at {python}")
    endpoint = p.stdout.readline().strip()
    if not endpoint.startswith("http://127.0.0.1:"):
        p.kill()
        if required:
            pytest.fail(f"{python} tools/s3/server.py did not start")
        pytest.skip("moto is not installed (pip install -r tools/s3/requirements.txt)")
    env = dict(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1",
    )
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    p.stdin.close()
    p.wait(timeout=30)


@pytest.fixture(scope="module")
def remote_url(s3, raw, tmp_path_factory):
    url = f"s3://{BUCKET}/luna"
    stage = tmp_path_factory.mktemp("stage")
    s = ctstream.ingest(
        raw,
        url,
        annotations=raw / "annotations.csv",
        candidates=raw / "candidates.csv",
        jobs=2,
        stage=stage,
        progress=False,
    )
    assert len(s["stored"]) == 4 and not s["failed"] and s["bytes_uploaded"] > 0, s
    return url


def test_an_ingest_to_s3_reads_back_as_the_local_store(remote_url, store):
    r = ctstream.Store(remote_url)
    assert r.path == remote_url
    assert r.series_ids == store.series_ids
    assert r.manifest == store.manifest
    for name in store.table_names:
        assert r.table(name).equals(store.table(name)), name
    sid = store.series_ids[0]
    assert (r.volume(sid) == store.volume(sid)).all()


def test_loader_batches_from_s3_equal_the_local_ones(remote_url, store, tmp_path):
    want = [
        summary(b)
        for b in ctstream.Loader(store, workers=2, batches_per_epoch=4, **OPTIONS).epoch(0)
    ]
    cache = tmp_path / "cache"
    for _ in range(2):  # cold, then warm disk cache
        r = ctstream.Store(remote_url, disk_cache=cache, disk_cache_gb=1)
        got = [
            summary(b)
            for b in ctstream.Loader(r, workers=2, batches_per_epoch=4, **OPTIONS).epoch(0)
        ]
        assert got == want
    assert any(p.suffix == ".chunk" for p in Path(cache).iterdir())


def test_bad_remote_options_raise_naming_them(s3):
    with pytest.raises(ValueError, match="disk_cache_gb"):
        ctstream.Store(f"s3://{BUCKET}/luna", disk_cache="/tmp/x", disk_cache_gb=0)
    with pytest.raises(ValueError, match="shard"):
        ctstream.ingest("/nonexistent", f"s3://{BUCKET}/other", shard="2/2", progress=False)
    with pytest.raises(ValueError, match="read-only"):
        ctstream.ingest("/nonexistent", "https://example.org/store", progress=False)


def test_two_shards_then_index_equal_one_ingest(s3, raw, store, tmp_path):
    # Two shards into one store on S3, one after the other as two machines would, then
    # the index once: the same tables as the single local ingest of the same inputs.
    url = f"s3://{BUCKET}/sharded"
    csv = dict(annotations=raw / "annotations.csv", candidates=raw / "candidates.csv")
    stored = []
    for k in range(2):
        s = ctstream.ingest(
            raw, url, shard=f"{k}/2", jobs=2, stage=tmp_path / f"stage{k}", progress=False, **csv
        )
        assert not s["failed"], s
        stored += s["stored"]
    assert sorted(stored) == sorted(store.series_ids)
    s = ctstream.index(url, **csv)
    assert s["scans_in_store"] == 4 and s["nodules_indexed"] == len(store.table("nodules")), s
    r = ctstream.Store(url)
    for name in store.table_names:
        assert r.table(name).equals(store.table(name)), name
    # Without the CSVs the index would lose its nodules: refused, naming the keywords.
    with pytest.raises(ctstream.IngestError, match=r"annotations= \(and excluded=\) again"):
        ctstream.index(url)
    assert ctstream.index(url, drop_csv=True)["nodules_indexed"] == 0
    assert len(ctstream.Store(url).table("nodules")) == 0
