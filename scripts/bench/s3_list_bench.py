#!/usr/bin/env python3
"""S3 listing benchmark: the janitor's listing at list parallelism 1, 4 and 8 vs rclone.

A private Garage holds N objects of 64 bytes laid out like the application's bucket,
`uploads/u{0..49}/…`, written with 32 concurrent PUTs. Each contender lists the whole bucket:

  janitor   `janitor report breakdown --resource s3 --json` (one streamed listing, every
            object grouped by prefix), with JANITOR_S3_LIST_PARALLELISM=1 (the single
            sorted listing), 4 (the default) and 8
  rclone    `rclone size --checkers 8` (lists the directories it finds in parallel)

Wall time includes process start; requests are counted by Garage (ListObjectsV2). Peak RSS
of the janitor at each parallelism.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import JANITOR
from s3_bench import Garage, rclone_config


def janitor(garage: Garage, bucket: str, workdir: str, parallelism: int) -> tuple[float, int, int]:
    env = {
        "PATH": os.environ["PATH"],
        "S3_ENDPOINT": f"http://127.0.0.1:{garage.s3_port}", "S3_BUCKET": bucket, "AWS_REGION": "garage",
        "AWS_ACCESS_KEY_ID": garage.key, "AWS_SECRET_ACCESS_KEY": garage.secret,
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
        "JANITOR_S3_LIST_PARALLELISM": str(parallelism),
        "JANITOR_BACKEND_TIMEOUT_SECONDS": "60",
    }
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", JANITOR, "report", "breakdown", "--resource", "s3", "--json"],
                          env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"janitor failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    items = int(re.search(r'"items":\s*(\d+)', proc.stdout).group(1))
    return wall, rss, items


def rclone(garage: Garage, bucket: str, workdir: str) -> tuple[float, int]:
    conf, env = rclone_config(garage, workdir)
    started = time.perf_counter()
    out = subprocess.run(["rclone", "--config", conf, "size", f"garage:{bucket}", "--checkers", "8", "--json"],
                         env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return time.perf_counter() - started, int(re.search(r'"count":\s*(\d+)', out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=30_000)
    args = ap.parse_args()
    n = args.objects
    bucket = "bench-list"
    garage = Garage([bucket])
    workdir = tempfile.mkdtemp(prefix="janitor-bench-s3list-")
    try:
        client = garage.client()
        keys = [f"uploads/u{i % 50}/doc-{i:07d}.pdf" for i in range(n)]
        t = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x" * 64), keys))
        print(f"seeded {n:,} objects in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rows = []
        for p in (1, 4, 8):
            before = garage.requests().get("ListObjectsV2", 0)
            wall, rss, items = janitor(garage, bucket, workdir, p)
            reqs = garage.requests().get("ListObjectsV2", 0) - before
            if items != n:
                raise SystemExit(f"janitor at {p} listed {items} objects, not {n}")
            rows.append((f"janitor, JANITOR_S3_LIST_PARALLELISM={p}", wall, reqs, f"{rss / 1024:.1f} MB"))
        before = garage.requests().get("ListObjectsV2", 0)
        r_wall, count = rclone(garage, bucket, workdir)
        if count != n:
            raise SystemExit(f"rclone counted {count} objects, not {n}")
        rows.append(("rclone size --checkers 8", r_wall, garage.requests().get("ListObjectsV2", 0) - before, "-"))
        print(f"\n{n:,} objects under uploads/u0..u49/\n")
        print("| contender | seconds | ListObjectsV2 requests | peak RSS |\n|---|---|---|---|")
        for name, wall, reqs, rss in rows:
            print(f"| {name} | {wall:.2f} | {reqs} | {rss} |")
        single = rows[0][1]
        print(f"\nparallel vs single listing: {single / rows[1][1]:.2f}x (4), {single / rows[2][1]:.2f}x (8); "
              f"janitor (4) vs rclone: {r_wall / rows[1][1]:.2f}x")
    finally:
        garage.stop()


if __name__ == "__main__":
    main()
