#!/usr/bin/env python3
"""Qdrant TTL sweep benchmark: the janitor's time windows vs one direct filtered delete.

A Qdrant server holds identical collections of N points (8-dim vectors, an integer index on
`created_at`), half of them two days old (spread over a day), half new. With
RAG_SESSION_TTL_HOURS=24, N/2 points must go. The server is a private Qdrant test server
(Qdrant's engine, tests/support/qdrant_server.py), or any Qdrant given with --url.

  janitor  `janitor sweep --once --resource qdrant` with its defaults: index check, exact
           count, the expired range cut into windows of ~10,000 points by the index's range
           counts, each window counted, deleted by its range filter (wait=true) and counted
           again, 10 ms pause between windows, exact count after the run
  janitor, no pause   the same with JANITOR_QDRANT_BATCH_PAUSE_MS=0
  janitor, small windows   windows of ~2,000 points: shorter stalls of the writes, more calls
  janitor, ids        JANITOR_QDRANT_AUDIT_IDS=true: ids scrolled 10,000 at a time, each batch
           deleted with `has_id AND created_at < cutoff` and its ids asked for again
  direct   one `delete(filter=created_at < cutoff, wait=true)` through qdrant-client

The contenders start from identical collections, one after the other, on the same server.
While each runs, a second client upserts 16 fresh points at a time into the collection being
swept, back to back; the p99 of those upserts is set beside their p99 with nothing else
running (the baseline). The table gives wall times (process start included for the janitor),
the ratios, the points left, the janitor's peak RSS and the upsert p99.
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
            payloads=[{"created_at": int(now - (24 * 3600 + 600 + (i * 7919) % 86400 if i % 2 else 60)),
                        "session": f"s{i % 997}"} for i in ids],
        ))


def janitor_at(url: str, name: str, workdir: str, extra: dict[str, str]) -> tuple[float, int, str]:
    env = extra | {
        "PATH": os.environ["PATH"],
        "QDRANT_URL": url,
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


class Upserts:
    """Upserts 16 fresh points at a time into one collection, back to back, in a thread."""

    def __init__(self, client: QdrantClient, name: str, first_id: int):
        import threading
        self.client, self.name, self.next_id = client, name, first_id
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(11)
        while not self.stop.is_set():
            ids = list(range(self.next_id, self.next_id + 16))
            self.next_id += 16
            started = time.perf_counter()
            self.client.upsert(self.name, wait=True, points=models.Batch(
                ids=ids, vectors=[[rng.random() for _ in range(DIM)] for _ in ids],
                payloads=[{"created_at": int(time.time()), "session": "live"} for _ in ids]))
            self.latencies.append(time.perf_counter() - started)

    def __enter__(self) -> "Upserts":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def p99_ms(self) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000 if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--url", help="a Qdrant gRPC URL (http://host:6334) instead of a private test server")
    ap.add_argument("--skip-ids", action="store_true", help="leave out the janitor by id (JANITOR_QDRANT_AUDIT_IDS)")
    args = ap.parse_args()
    n = args.points
    workdir = tempfile.mkdtemp(prefix="janitor-bench-qdrant-")
    server = None
    if args.url:
        host, port = args.url.split("//")[-1].rsplit(":", 1)
        port = int(port)
    else:
        host = "127.0.0.1"
        server, port = start_server(os.path.join(workdir, "storage"))
    url = f"http://{host}:{port}"
    try:
        def connect() -> QdrantClient:
            return QdrantClient(host=host, grpc_port=port, prefer_grpc=True, timeout=600, check_compatibility=False)
        client = connect()
        now = time.time()
        contenders = [
            ("janitor (windows of ~10,000, 10 ms pause)", "bench_janitor", {}),
            ("janitor, JANITOR_QDRANT_BATCH_PAUSE_MS=0", "bench_nopause", {"JANITOR_QDRANT_BATCH_PAUSE_MS": "0"}),
            ("janitor, windows of ~2,000 (JANITOR_QDRANT_BATCH_SIZE=2000)", "bench_small",
             {"JANITOR_QDRANT_BATCH_SIZE": "2000"}),
        ]
        if not args.skip_ids:
            contenders.append(("janitor by id (JANITOR_QDRANT_AUDIT_IDS=true)", "bench_ids",
                               {"JANITOR_QDRANT_AUDIT_IDS": "true"}))
        names = [c[1] for c in contenders] + ["bench_direct"]
        t = time.perf_counter()
        for name in names:
            if client.collection_exists(name):
                client.delete_collection(name)
            seed(client, name, n, now)
        print(f"seeded {len(names)} x {n:,} points in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        with Upserts(connect(), "bench_direct", n + 10_000_000) as idle:
            time.sleep(5)
        baseline = idle.p99_ms()
        rows = []
        for label, name, extra in contenders:
            with Upserts(connect(), name, n + 1) as up:
                wall, rss, line = janitor_at(url, name, workdir, extra)
            rows.append((label, name, wall, f"{rss / 1024:.1f} MB", up.p99_ms(), len(up.latencies)))
            print(f"{label}: {line}", file=sys.stderr)
        with Upserts(connect(), "bench_direct", n + 1) as up:
            d_wall = direct(client, "bench_direct", now - 24 * 3600)
        rows.append(("direct filtered delete, one call", "bench_direct", d_wall, "-", up.p99_ms(), len(up.latencies)))
        expired = sum(1 for i in range(1, n + 1) if i % 2)
        print(f"\n{n:,} points per collection, {expired:,} past the TTL; upsert p99 alone: {baseline:.1f} ms\n")
        print("| contender | seconds | vs direct | old points left | peak RSS | upsert p99 (n) |\n|---|---|---|---|---|---|")
        lefts = []
        for label, name, wall, rss, p99, ups in rows:
            left = client.count(name, exact=True, count_filter=models.Filter(must=[models.FieldCondition(
                key="created_at", range=models.Range(lt=now - 24 * 3600))])).count
            lefts.append(left)
            print(f"| {label} | {wall:.2f} | {wall / d_wall:.2f}x | {left:,} | {rss} | {p99:.1f} ms ({ups}) |")
        print(f"\ngoal: janitor <= 1.5x direct, upsert p99 <= 2x alone ({2 * baseline:.1f} ms)")
        if any(lefts):
            raise SystemExit(f"old points left behind: {lefts}")
        if not args.url:
            floor, one = engine_floor(n, now, workdir)
            print(f"engine floor, in-process: scroll + re-checking deletes {floor:.2f} s, one filtered delete "
                  f"{one:.2f} s = {floor / one:.2f}x")
        for name in names:
            client.delete_collection(name)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
