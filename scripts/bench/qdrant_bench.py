#!/usr/bin/env python3
"""Qdrant TTL sweep benchmark: the janitor's batches vs one direct filtered delete.

A private Qdrant test server (Qdrant's engine, tests/support/qdrant_server.py) holds two
identical collections of N points (8-dim vectors, an integer index on `created_at`), half of
them two days old, half new. With RAG_SESSION_TTL_HOURS=24, N/2 points must go.

  janitor  `janitor sweep --once --resource qdrant` with its defaults: index check, exact
           count, ids scrolled 10,000 at a time, each batch deleted with
           `has_id AND created_at < cutoff` (wait=true) and its ids asked for again,
           10 ms pause between batches, exact count after the run
  janitor, no pause   the same with JANITOR_QDRANT_BATCH_PAUSE_MS=0: the cost of the
           batching itself, without the deliberate pacing
  direct   one `delete(filter=created_at < cutoff, wait=true)` through qdrant-client

The contenders start from identical collections, one after the other, on the same server;
the table gives wall times (process start included for the janitor), the ratios, the points
left and the janitor's peak RSS.

The engine's floor for any plan-then-delete sweep is measured too, in-process with no gRPC:
the same ids scrolled in pages of 10,000 and deleted with the same re-checking filter,
against one filtered delete, on two identical engine shards.
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


def janitor(port: int, name: str, workdir: str, extra: dict[str, str]) -> tuple[float, int, str]:
    env = extra | {
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


def engine_floor(n: int, now: float, workdir: str) -> tuple[float, float]:
    """In-process on Qdrant's engine: (scroll + re-checking deletes, one filtered delete)."""
    import qdrant_edge as edge

    def shard(path: str):
        sh = edge.EdgeShard.create(path, edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=DIM, distance=edge.Distance.Cosine)))
        sh.update(edge.UpdateOperation.create_field_index("created_at", edge.PayloadSchemaType.Integer))
        rng = random.Random(7)
        for start in range(0, n, 5000):
            sh.update(edge.UpdateOperation.upsert_points([
                edge.Point(i, [rng.random() for _ in range(DIM)],
                           {"created_at": int(now - (48 * 3600 if i % 2 else 60)), "session": f"s{i % 997}"})
                for i in range(start + 1, min(start + 5000, n) + 1)]))
        return sh

    def expired():
        return edge.FieldCondition("created_at", range=edge.RangeFloat(lt=now - 24 * 3600))

    batched, single = shard(os.path.join(workdir, "floor-a")), shard(os.path.join(workdir, "floor-b"))
    started = time.perf_counter()
    pages, offset = [], None
    while True:
        records, offset = batched.scroll(edge.ScrollRequest(
            offset=offset, limit=10_000, filter=edge.Filter(must=[expired()]), with_payload=False, with_vector=False))
        pages.append({r.id for r in records})
        if offset is None:
            break
    for ids in pages:
        batched.update(edge.UpdateOperation.delete_points_by_filter(
            edge.Filter(must=[edge.HasIdCondition(ids), expired()])))
    floor = time.perf_counter() - started
    started = time.perf_counter()
    single.update(edge.UpdateOperation.delete_points_by_filter(edge.Filter(must=[expired()])))
    one = time.perf_counter() - started
    for sh in (batched, single):
        sh.close()
    return floor, one


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
        names = ("bench_janitor", "bench_nopause", "bench_direct")
        for name in names:
            seed(client, name, n, now)
        print(f"seeded 3 x {n} points in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        j_wall, j_rss, j_line = janitor(port, "bench_janitor", workdir, {})
        p_wall, p_rss, _ = janitor(port, "bench_nopause", workdir, {"JANITOR_QDRANT_BATCH_PAUSE_MS": "0"})
        d_wall = direct(client, "bench_direct", now - 24 * 3600)
        left = [count(client, name) for name in names]
        print(f"janitor: {j_line}", file=sys.stderr)
        floor, one = engine_floor(n, now, workdir)
        rows = [
            ("janitor (batches of 10,000, indexed, 10 ms pause)", j_wall, left[0], f"{j_rss / 1024:.1f} MB"),
            ("janitor, JANITOR_QDRANT_BATCH_PAUSE_MS=0", p_wall, left[1], f"{p_rss / 1024:.1f} MB"),
            ("direct filtered delete, one call", d_wall, left[2], "-"),
        ]
        print(f"\n{n:,} points per collection, {n // 2:,} past the TTL\n")
        print(f"| contender | seconds | points left | peak RSS |\n|---|---|---|---|")
        for name, wall, pts, rss in rows:
            print(f"| {name} | {wall:.2f} | {pts:,} | {rss} |")
        print(f"\njanitor / direct = {j_wall / d_wall:.2f}x, without the pause {p_wall / d_wall:.2f}x (goal <= 1.5x)")
        print(f"engine floor, in-process: scroll + re-checking deletes {floor:.2f} s, one filtered delete "
              f"{one:.2f} s = {floor / one:.2f}x")
        if len(set(left)) != 1 or left[0] != n - n // 2:
            raise SystemExit(f"different results: points left {left}")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
