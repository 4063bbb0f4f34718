#!/usr/bin/env python3
"""Serve a local S3 (moto's server mode) with one Object Lock bucket, for `scripts/demo --s3`.

Prints the endpoint URL on its first line, then serves on 127.0.0.1 until killed.

    python scripts/demo_s3_server.py --bucket demo-archive
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

import boto3
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="demo-archive")
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log in the demo output
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=args.bucket, ObjectLockEnabledForBucket=True)
    print(endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
