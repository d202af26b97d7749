#!/usr/bin/env python3
"""How fast `ctstream view` answers slices, and how much memory it holds while a user
scrolls: starts `ctstream view STORE --port 0 --cache-mb N`, then for each of the first
--scans scans walks every slice of each plane in order, as a scrolling user does (axial,
coronal, sagittal; one HTTP/1.1 connection, as a browser tab keeps one), twice: cold (the
chunks decoded as the slices need them) and warm (again, from the decoded-chunk cache).
Prints the latency of each pass (median, 95th percentile, largest, ms) and the server's
resident memory (VmRSS after each scan, split into RssAnon, the memory it allocated, and
RssFile, pages of the memory-mapped volume files, which the kernel reclaims under pressure;
VmHWM: the most it held), from /proc. Standard
library only.

    python3 tools/bench/view_slices.py --bin target/release/ctstream --store STORE --cache-mb 512
"""

import argparse
import http.client
import json
import re
import statistics
import subprocess
import time


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024  # MiB
    return out


def walk(conn, sid, plane, n):
    times = []
    for i in range(n):
        t = time.perf_counter()
        conn.request("GET", f"/api/scans/{sid}/image/{plane}/{i}")
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise SystemExit(f"{plane} {i}: HTTP {r.status}: {body[:200]!r}")
    return times


def summary(times):
    s = sorted(times)
    return {
        "slices": len(s),
        "median_ms": round(statistics.median(s), 2),
        "p95_ms": round(s[int(0.95 * (len(s) - 1))], 2),
        "max_ms": round(s[-1], 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--scans", type=int, default=1, help="scans to walk through")
    ap.add_argument("--cache-mb", type=int, default=512)
    a = ap.parse_args()
    proc = subprocess.Popen(
        [a.bin, "view", a.store, "--port", "0", "--cache-mb", str(a.cache_mb)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        host, port = re.search(r"http://([\d.]+):(\d+)/", line).groups()
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/api/scans")
        rows = json.loads(conn.getresponse().read())
        start = rss(proc.pid)
        report = {"cache_mb": a.cache_mb, "rss_at_start_mib": round(start["VmRSS"], 1), "scans": []}
        for row in rows[: a.scans]:
            sid, (nz, ny, nx) = row["series_id"], row["shape_zyx"]
            scan = {"series_id": sid, "shape_zyx": [nz, ny, nx]}
            for plane, n in [("axial", nz), ("coronal", ny), ("sagittal", nx)]:
                cold = walk(conn, sid, plane, n)
                warm = walk(conn, sid, plane, n)
                scan[plane] = {"cold": summary(cold), "warm": summary(warm)}
            m = rss(proc.pid)
            scan["rss_mib"], scan["hwm_mib"] = round(m["VmRSS"], 1), round(m["VmHWM"], 1)
            scan["anon_mib"], scan["file_mib"] = round(m["RssAnon"], 1), round(m["RssFile"], 1)
            report["scans"].append(scan)
        print(json.dumps(report, indent=1))
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
