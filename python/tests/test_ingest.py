"""ctstream.ingest: the CLI's ingest from Python. The store it makes is compared with the
one `ctstream ingest` makes from the same inputs, file for file; errors arrive as
exceptions carrying the Rust messages (the option, the file), and one bad scan fails alone."""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import ctstream
import pytest
from conftest import run_cli


def digest_tree(root):
    """SHA-256 of every volume and label volume, and each record without its run-dependent fields."""
    out = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "labels").rglob("*"))
        if p.is_file()
    }
    for p in sorted((root / "volumes").iterdir()):
        if p.suffix == ".json":
            rec = json.loads(p.read_text())
            for k in ("ingested_at", "ingest_seconds", "ctstream_version"):
                rec.pop(k, None)
            out[p.name] = rec
        else:
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_python_ingest_equals_the_cli(raw, store_path, tmp_path):
    cli = tmp_path / "cli"
    run_cli(
        "ingest",
        "--input",
        str(raw),
        "--annotations",
        str(raw / "annotations.csv"),
        "--candidates",
        str(raw / "candidates.csv"),
        "--jobs",
        "2",
        "--out",
        str(cli),
    )
    a, b = digest_tree(store_path), digest_tree(cli)
    assert (
        a.keys() == b.keys()
        and len(a) == 4 * 2 + len(list((store_path / "labels").rglob("*.ctv"))) > 8
    )
    for k in a:
        assert a[k] == b[k], k
    for t in ("nodules", "candidates", "labels", "components"):
        assert (store_path / "index" / f"{t}.parquet").read_bytes() == (
            cli / "index" / f"{t}.parquet"
        ).read_bytes(), t


def test_summary_and_resume(raw, store_path, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(store_path, out)
    s = ctstream.ingest(raw, out, annotations=raw / "annotations.csv", resume=True, progress=False)
    # Everything is already stored with the same fingerprint: skipped, nothing failed.
    assert (
        s["stored"] == []
        and sorted(s["skipped"]) == ctstream.Store(out).series_ids
        and s["failed"] == []
    )
    assert s["scans_in_store"] == 4 and s["nodules_indexed"] == ctstream.Store(out).nodules.num_rows
    with pytest.raises(
        ctstream.IngestError, match=r"the store already holds 4 scans; pass --resume"
    ):
        ctstream.ingest(raw, out, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spacing": (1.0, 0.0, 1.0)}, r"^spacing: "),
        ({"chunk": (0, 32, 32)}, r"^chunk: "),
        ({"jobs": 0}, r"^jobs 0: must be 1\.\.=1024$"),
        ({"labels": ["Tumour=/tmp"]}, r"^labels: \"Tumour\" is not a label name"),
        (
            {"labels": {"lungs": "/tmp"}},
            r"labels lungs=/tmp: `lungs` is the lung mask ingest computes",
        ),
    ],
)
def test_bad_options_raise_value_error_naming_the_option(raw, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ctstream.ingest(raw, tmp_path / "never", progress=False, **kwargs)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("scans", [0, 10**9])
def test_synth_refuses_a_scan_count_out_of_range_and_writes_nothing(tmp_path, scans):
    with pytest.raises(ValueError, match=rf"^scans {scans}: give 1 to 10000$"):
        ctstream.synth(tmp_path / "never", scans=scans, small=True, progress=False)
    assert not (tmp_path / "never").exists()


def test_ingest_refuses_an_empty_out_instead_of_the_current_folder(raw):
    with pytest.raises(ValueError, match=r"out: empty path"):
        ctstream.ingest(raw, "", progress=False)


def test_unreadable_csv_raises_naming_the_file_and_the_row(raw, tmp_path):
    bad = tmp_path / "annotations.csv"
    bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\nx,1,2,three,4\n")
    with pytest.raises(
        ctstream.IngestError,
        match=rf"^{re.escape(str(bad))}:2: column `coordZ`: `three` is not a finite number$",
    ):
        ctstream.ingest(raw, tmp_path / "s", annotations=bad, progress=False)


def test_a_truncated_scan_fails_alone_and_spoils_nothing(raw, tmp_path):
    inputs = tmp_path / "raw"
    shutil.copytree(raw, inputs)
    data = sorted(p for p in inputs.rglob("*") if p.suffix in (".raw", ".zraw"))
    assert len(data) == 4, data
    victim = data[0]
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    s = ctstream.ingest(
        inputs, tmp_path / "s", annotations=inputs / "annotations.csv", progress=False
    )
    assert len(s["stored"]) == 3 and len(s["failed"]) == 1, s
    (failure,) = s["failed"]
    # The failure names the scan, its data file, the field and the sizes (45 slices of
    # 128 x 128 int16 need 1474560 bytes; half of them are left).
    assert failure["source"] == str(victim.with_suffix(".mhd")), failure
    size = victim.stat().st_size
    assert failure["reason"].startswith(f"{victim}: truncated: DimSize "), failure
    assert (
        f"the file has {size} after byte 0" in failure["reason"]
        and f"needs {2 * size} bytes" in failure["reason"]
    ), failure
    st = ctstream.Store(tmp_path / "s")
    assert len(st) == 3 and st.damaged == [] and st.scans.num_rows == 3
    for sid in st.series_ids:
        assert st.volume(sid).size > 0


def test_a_locked_store_raises_ingest_error(raw, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    # Another process holds the store's lock (flock, as every ctstream writer takes it).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(out / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            ctstream.IngestError,
            match=r"another ingest.* is writing to this store; wait for it to finish",
        ):
            ctstream.ingest(raw, out, progress=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # Once it is released, the same call works.
    s = ctstream.ingest(raw, out, progress=False)
    assert len(s["stored"]) == 4
