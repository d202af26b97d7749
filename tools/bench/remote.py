#!/usr/bin/env python3
"""The loader on a store on object storage against the same store on the local disk, in
one run: `ctstream bench` on the local folder, on a copy served by moto's S3 server on the
loopback interface, and on that server behind a proxy that delays every request.

    python3 tools/bench/remote.py --store STORE [--ctstream target/release/ctstream]
        [--server moto|s3rver|s3s-fs] [--s3-python target/s3-venv/bin/python]
        [--s3rver PATH] [--s3s-fs PATH] [--seconds 20] [--rounds 3] [--latency-ms 20] [--json OUT.json]

The server is moto's (tools/s3/server.py, what the tests use; in Python, it copies the
whole object to answer a range, so it bounds the throughput by itself), s3rver (Node.js,
over a folder, answering a range from the file: `npm install s3rver@3.7.1`), or s3s-fs (in
Rust, over a folder: `cargo install s3s-fs --version 0.14.1 --features binary`; it takes
about 150 ms a range request here, hashing the whole file). The store is uploaded object
for object (a store's files are its objects), or linked into s3s-fs's folder. Rounds
alternate local, loopback, loopback with a disk cache (--disk-cache: a new folder, "cold",
then the same again, "warm") and delayed runs; the medians and their ratios to the local
figure are printed, with requests per patch and bytes received per byte used. The
proxy (`LatencyProxy` below) holds every piece of a request on its way to the server for
`--latency-ms` before passing it on, so each request costs that much more, as a server
that far away would; answers pass at once.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ctstream-bench"


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that delays client-to-server bytes by `delay` seconds
    (each piece by the same amount, in order; not cumulative)."""

    def __init__(self, target_port, delay):
        self.target_port, self.delay = target_port, delay
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        self.loop.run_until_complete(start())

    async def _serve(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        queue = asyncio.Queue()

        async def inbound():
            while data := await creader.read(65536):
                await queue.put((time.monotonic() + self.delay, data))
            await queue.put((0.0, b""))

        async def forward():
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                swriter.write(data)
                await swriter.drain()
            swriter.close()

        async def outbound():
            while data := await sreader.read(65536):
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()

        try:
            await asyncio.gather(inbound(), forward(), outbound())
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (cwriter, swriter):
                w.close()


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, binary):
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{binary} did not start")


def start_s3s(binary, store):
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ctstream-s3s-"))
    shutil.copytree(
        store, root / BUCKET / "store", copy_function=os.link, ignore=shutil.ignore_patterns(".*")
    )
    port = free_port()
    p = subprocess.Popen(
        [
            binary,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--access-key",
            "test",
            "--secret-key",
            "test",
            str(root),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, binary)
    return p, f"http://127.0.0.1:{port}", root


def start_s3rver(binary):
    import tempfile

    root = tempfile.mkdtemp(prefix="ctstream-s3rver-")
    port = free_port()
    p = subprocess.Popen(
        [
            binary,
            "-d",
            root,
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            "--configure-bucket",
            BUCKET,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, binary)
    time.sleep(0.5)
    return p, f"http://127.0.0.1:{port}"


def start_server(python):
    p = subprocess.Popen(
        [python, str(ROOT / "tools/s3/server.py"), "--bucket", BUCKET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    endpoint = p.stdout.readline().strip()
    if not endpoint.startswith("http://127.0.0.1:"):
        sys.exit(
            f"{python} tools/s3/server.py did not start (pip install -r tools/s3/requirements.txt)"
        )
    return p, endpoint


KEY = "test"


def env_for(endpoint):
    e = dict(os.environ)
    e.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=KEY,
        AWS_REGION="us-east-1",
    )
    return e


def upload(python, endpoint, store, prefix):
    code = (
        "import boto3,os,sys\n"
        "s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id=sys.argv[5],aws_secret_access_key=sys.argv[5])\n"
        "root=sys.argv[2]\n"
        "for d,_,fs in os.walk(root):\n"
        "  for f in fs:\n"
        "    if f.startswith('.'): continue\n"
        "    p=os.path.join(d,f); s3.upload_file(p,sys.argv[3],sys.argv[4]+'/'+os.path.relpath(p,root))\n"
    )
    subprocess.run([python, "-c", code, endpoint, str(store), BUCKET, prefix, KEY], check=True)


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (Linux /proc), or 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def bench(ctstream, store, seconds, env, extra):
    out = subprocess.run(
        [
            ctstream,
            "--quiet",
            "bench",
            "--store",
            store,
            "--seconds",
            str(seconds),
            "--json",
            *extra,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a local store (ctstream ingest --out)")
    ap.add_argument("--ctstream", default=str(ROOT / "target/release/ctstream"))
    ap.add_argument("--server", choices=["moto", "s3rver", "s3s-fs"], default="moto")
    ap.add_argument(
        "--s3rver", default="s3rver", help="the s3rver script (node_modules/.bin/s3rver)"
    )
    ap.add_argument(
        "--s3-python",
        default=str(ROOT / "target/s3-venv/bin/python"),
        help="a Python with tools/s3/requirements.txt (moto)",
    )
    ap.add_argument("--s3s-fs", default="s3s-fs", help="the s3s-fs binary")
    ap.add_argument(
        "--fetchers", type=int, help="ctstream bench --fetchers (default: the loader's)"
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--json", help="write the figures here as JSON")
    a = ap.parse_args()
    global KEY
    if a.server == "moto":
        server, endpoint = start_server(a.s3_python)
        upload(a.s3_python, endpoint, a.store, "store")
    elif a.server == "s3rver":
        KEY = "S3RVER"  # the key pair s3rver accepts
        server, endpoint = start_s3rver(a.s3rver)
        upload(a.s3_python, endpoint, a.store, "store")
    else:
        server, endpoint, _ = start_s3s(a.s3s_fs, a.store)
    extra = [] if a.fetchers is None else ["--fetchers", str(a.fetchers)]
    try:
        proxy = LatencyProxy(int(endpoint.rsplit(":", 1)[1]), a.latency_ms / 1000.0)
        delayed = f"http://127.0.0.1:{proxy.port}"
        url = f"s3://{BUCKET}/store"
        import tempfile

        cache_root = Path(tempfile.mkdtemp(prefix="ctstream-disk-cache-"))
        # (store, environment, disk cache: None, "cold" (a new folder) or "warm" (the last one))
        kinds = {
            "local": (a.store, dict(os.environ), None),
            "loopback": (url, env_for(endpoint), None),
            "disk cold": (url, env_for(endpoint), "cold"),
            "disk warm": (url, env_for(endpoint), "warm"),
            f"{a.latency_ms:g} ms": (url, env_for(delayed), None),
        }
        runs = {k: [] for k in kinds}
        for r in range(a.rounds):
            for k, (store, env, disk) in kinds.items():
                flags = list(extra)
                if disk:
                    folder = cache_root / f"round{r}"
                    flags += ["--disk-cache", str(folder)]
                c0, t0 = cpu_seconds(server.pid), time.monotonic()
                rep = bench(a.ctstream, store, a.seconds, env, flags)
                # The server's share of one core over the whole run (warm-up and bounds too).
                rep["server_cpu_share"] = (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
                runs[k].append(rep)
                rm = rep.get("remote") or {}
                print(
                    f"round {r + 1} {k:>10}: {rep['patches_per_s']:7.0f} patches/s, cache hit rate {rep['cache_hit_rate']:.3f}, "
                    f"{rm.get('requests_per_patch', 0):.2f} requests/patch, {rm.get('fetched_per_byte_wanted', 0):.2f} bytes received per byte used, "
                    f"server {rep['server_cpu_share']:.2f} of a core",
                    flush=True,
                )
        local = statistics.median(x["patches_per_s"] for x in runs["local"])
        summary = {}
        for k, reps in runs.items():
            med = statistics.median(x["patches_per_s"] for x in reps)
            rms = [x["remote"] for x in reps if x.get("remote")]
            summary[k] = {
                "server": a.server,
                "patches_per_s": med,
                "ratio_to_local": med / local,
                "requests_per_patch": statistics.median(x["requests_per_patch"] for x in rms)
                if rms
                else None,
                "fetched_per_byte_wanted": statistics.median(
                    x["fetched_per_byte_wanted"] for x in rms
                )
                if rms
                else None,
                "cache_hit_rate": statistics.median(x["cache_hit_rate"] for x in reps),
                "server_cpu_share": statistics.median(x["server_cpu_share"] for x in reps),
                "rounds": [x["patches_per_s"] for x in reps],
            }
            print(
                f"{k:>10}: {med:7.0f} patches/s (median of {len(reps)}), {med / local:.2f} x local"
            )
        if a.json:
            Path(a.json).write_text(json.dumps(summary, indent=2))
    finally:
        server.stdin.close()
        if a.server != "moto":
            server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
