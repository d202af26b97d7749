#!/usr/bin/env python3
"""An S3-compatible server on the loopback interface for the remote-store tests: moto's
standalone server (in memory), with the buckets made before it answers.

    python3 tools/s3/server.py [--port 0] [--bucket NAME ...]

Prints one line, `http://127.0.0.1:PORT`, once it serves, then runs until its standard
input closes or it gets SIGTERM/SIGINT. Any access key and secret are accepted. The
pinned packages are in tools/s3/requirements.txt (a virtual environment of their own).
"""

import argparse
import signal
import sys
import threading

from moto.server import ThreadedMotoServer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    ap.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    a = ap.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=a.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for b in a.bucket:
        s3.create_bucket(Bucket=b)
    print(endpoint, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
