#!/usr/bin/env python3
"""Qdrant TTL sweep benchmark: the janitor's batches vs one direct filtered delete.

A private Qdrant test server (Qdrant's engine, tests/support/qdrant_server.py) holds two
identical collections of N points (8-dim vectors, an integer index on `created_at`), half of
them two days old, half new. With RAG_SESSION_TTL_HOURS=24, N/2 points must go.

  janitor  `janitor sweep --once --resource qdrant` with its defaults: index check, ids
           scrolled 10,000 at a time, each batch deleted with `has_id AND created_at < cutoff`
           (wait=true), exact counts before and after each batch, 10 ms pause between batches
  direct   one `delete(filter=created_at < cutoff, wait=true)` through qdrant-client

Both contenders start from the same state, one after the other, on the same server; the
table gives wall times (process start included for the janitor), the ratio, the points left
and the janitor's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from qdrant_client import QdrantClient, models

from common import ROOT, free_port, sweep_once
SERVER = os.path.join(ROOT, "tests", "support", "qdrant_server.py")
DIM = 8


def start_server(storage: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "--port", str(port), "--storage-path", storage],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"qdrant test server did not start: {line!r}")
    return proc, port


def seed(client: QdrantClient, name: str, n: int, now: float) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    client.create_payload_index(name, "created_at", models.PayloadSchemaType.INTEGER, wait=True)
    rng = random.Random(7)
    chunk = 5000
    for start in range(0, n, chunk):
        ids = range(start + 1, min(start + chunk, n) + 1)
        client.upsert(name, wait=True, points=models.Batch(
            ids=list(ids),
            vectors=[[rng.random() for _ in range(DIM)] for _ in ids],
            payloads=[{"created_at": int(now - (48 * 3600 if i % 2 else 60)), "session": f"s{i % 997}"} for i in ids],
        ))


def count(client: QdrantClient, name: str) -> int:
    return client.count(name, exact=True).count


def janitor(port: int, name: str, workdir: str) -> tuple[float, int, str]:
    env = {
        "PATH": os.environ["PATH"],
        "QDRANT_URL": f"http://127.0.0.1:{port}",
        "JANITOR_QDRANT_COLLECTIONS": name,
        "RAG_SESSION_TTL_HOURS": "24",
        "JANITOR_MAX_DELETE_FRACTION": "1", "JANITOR_MAX_DELETE_COUNT": "100000000",
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"), "JANITOR_LOG_FORMAT": "json",
        "JANITOR_BACKEND_TIMEOUT_SECONDS": "120",
    }
    return sweep_once("qdrant", env, workdir)


def direct(client: QdrantClient, name: str, cutoff: float) -> float:
    started = time.perf_counter()
    client.delete(name, wait=True, points_selector=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="created_at", range=models.Range(lt=cutoff))])))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    args = ap.parse_args()
    n = args.points
    workdir = tempfile.mkdtemp(prefix="janitor-bench-qdrant-")
    server, port = start_server(os.path.join(workdir, "storage"))
    try:
        client = QdrantClient(host="127.0.0.1", grpc_port=port, prefer_grpc=True, timeout=600,
                              check_compatibility=False)
        now = time.time()
        t = time.perf_counter()
        for name in ("bench_janitor", "bench_direct"):
            seed(client, name, n, now)
        print(f"seeded 2 x {n} points in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        j_wall, j_rss, j_line = janitor(port, "bench_janitor", workdir)
        d_wall = direct(client, "bench_direct", now - 24 * 3600)
        left_j, left_d = count(client, "bench_janitor"), count(client, "bench_direct")
        print(f"janitor: {j_line}", file=sys.stderr)
        rows = [
            ("janitor (batches of 10,000, indexed)", j_wall, left_j, f"{j_rss / 1024:.1f} MB"),
            ("direct filtered delete, one call", d_wall, left_d, "-"),
        ]
        print(f"\n{n:,} points per collection, {n // 2:,} past the TTL\n")
        print(f"| contender | seconds | points left | peak RSS |\n|---|---|---|---|")
        for name, wall, left, rss in rows:
            print(f"| {name} | {wall:.2f} | {left:,} | {rss} |")
        print(f"\njanitor / direct = {j_wall / d_wall:.2f}x (goal <= 1.5x)")
        if left_j != left_d or left_j != n - n // 2:
            raise SystemExit(f"different results: janitor left {left_j}, direct left {left_d}")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
