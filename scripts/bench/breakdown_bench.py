#!/usr/bin/env python3
"""Redis breakdown benchmark: `janitor report breakdown` vs `redis-cli --bigkeys` and
`redis-cli --memkeys`, side by side on one private redis-server and one data set.

Data (N keys): 40% `doc_segments:{doc}:{i}` (300-byte strings, no TTL), 30%
`session:{user}:{i}` (80 bytes, TTL 1 day), 20% `embedding_cache:{i}` (1 KiB, no TTL),
10% `rate:{i}` (small integers, TTL); {doc} and {user} take 5,000 values each, so
`--depth 2` has ~10,000 prefixes and exercises the bounded prefix table.

Contenders, each run alternately for --rounds rounds (medians compared):
  janitor depth 1   `janitor report breakdown --resource redis --json` (unpaced): SCAN, PTTL +
                    OBJECT IDLETIME per key, MEMORY USAGE on 64 keys per prefix
  janitor depth 2   the same with `--depth 2`
  redis-cli --bigkeys, redis-cli --memkeys (Redis's own tools: the largest key per type)

Peak RSS of the janitor from /usr/bin/time -v at N/10 and N (flat or not). A GET loop on
its own connection measures the application's latency during a janitor breakdown, beside
its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

import redis

from common import JANITOR
from redis_bench import Server, latency


def seed(r: redis.Redis, n: int) -> None:
    r.flushall()
    batch = 10_000
    doc, sess, emb = int(n * 0.4), int(n * 0.3), int(n * 0.2)
    rate = n - doc - sess - emb
    for start in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            if i < doc:
                p.set(f"doc_segments:d{i % 5000}:{i}", "s" * 300)
            elif i < doc + sess:
                p.set(f"session:u{i % 5000}:{i}", "x" * 80, ex=86_400)
            elif i < doc + sess + emb:
                p.set(f"embedding_cache:{i}", "e" * 1024)
            else:
                p.set(f"rate:{i}", i % 100, ex=3600)
        p.execute()
    assert r.dbsize() == n, (r.dbsize(), n)


def run_janitor(port: int, depth: int, workdir: str, max_ops: int = 0, nice: int = 0) -> tuple[float, int, dict]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "JANITOR_REDIS_MAX_OPS_PER_SEC": str(max_ops),
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
    }
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "nice", "-n", str(nice), JANITOR, "report", "breakdown", "--resource", "redis",
                           "--depth", str(depth), "--json"],
                          env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"janitor failed:\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss, json.loads(proc.stdout)[0]


def run_cli(port: int, flag: str) -> float:
    started = time.perf_counter()
    subprocess.run(["redis-cli", "-p", str(port), flag], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.keys
    server = Server()
    workdir = tempfile.mkdtemp(prefix="janitor-bench-")
    try:
        seed(server.client, n // 10)
        _, rss_small, _ = run_janitor(server.port, 1, workdir)
        _, rss_small2, _ = run_janitor(server.port, 2, workdir)
        seed(server.client, n)
        times = {"janitor depth 1": [], "janitor depth 2": [], "redis-cli --bigkeys": [], "redis-cli --memkeys": []}
        rss = rss2 = 0
        for _ in range(args.rounds):
            wall, peak, b1 = run_janitor(server.port, 1, workdir)
            times["janitor depth 1"].append(wall)
            rss = max(rss, peak)
            wall, peak, b2 = run_janitor(server.port, 2, workdir)
            times["janitor depth 2"].append(wall)
            rss2 = max(rss2, peak)
            times["redis-cli --bigkeys"].append(run_cli(server.port, "--bigkeys"))
            times["redis-cli --memkeys"].append(run_cli(server.port, "--memkeys"))
        base50, base99, base_n, _ = latency(server.port, lambda: time.sleep(3))
        paced = []
        for max_ops, nice in [(0, 0), (0, 10), (200_000, 0), (50_000, 0)]:
            p50, p99, samples, (wall, _, _) = latency(server.port, lambda: run_janitor(server.port, 1, workdir, max_ops, nice))
            paced.append((max_ops, nice, wall, p50, p99, samples))

        used = server.client.info("memory")["used_memory"]
        print(f"\nRedis breakdown, {n:,} keys (used_memory {used / 2**20:.0f} MB)\n")
        memkeys = statistics.median(times["redis-cli --memkeys"])
        print(f"{'contender':<24} {'median s':>9} {'runs s':>22} {'vs --memkeys':>13}")
        for name, secs in times.items():
            runs = " ".join(f"{x:.2f}" for x in secs)
            med = statistics.median(secs)
            print(f"{name:<24} {med:>9.2f} {runs:>22} {memkeys / med:>12.2f}x")
        print("\njanitor depth 1 groups (prefix, keys, estimated MB, keys without TTL):")
        for g in b1["groups"]:
            print(f"  {g['prefix']:<20} {g['items']:>9,} {g['bytes'] / 2**20:>9.1f} {g['without_ttl']:>9,}")
        print(f"  estimated total {b1['bytes'] / 2**20:.1f} MB vs used_memory {used / 2**20:.1f} MB")
        print(f"janitor depth 2: {len(b2['groups'])} groups listed, other = {b2['other']['items']:,} keys; "
              f"notes: {'; '.join(b2['notes'][:1])}")
        print(f"janitor peak RSS: depth 1 {rss_small / 1024:.1f} MB at {n // 10:,} keys, {rss / 1024:.1f} MB at {n:,}; "
              f"depth 2 {rss_small2 / 1024:.1f} MB -> {rss2 / 1024:.1f} MB")
        print(f"\nGET p50/p99 (a redis-py loop on its own connection; 2 cores shared by redis-server, the janitor "
              f"and the loop): baseline {base50:.3f}/{base99:.3f} ms ({base_n} GETs); during a depth-1 breakdown:")
        print(f"  {'JANITOR_REDIS_MAX_OPS_PER_SEC':>30} {'nice':>5} {'wall s':>7} {'vs --memkeys':>13} {'GET p50 ms':>11} {'GET p99 ms':>11} {'GETs':>7}")
        for max_ops, nice, wall, p50, p99, samples in paced:
            label = f"{max_ops:,}" if max_ops else "0 (unpaced)"
            print(f"  {label:>30} {nice:>5} {wall:>7.2f} {memkeys / wall:>12.2f}x {p50:>11.3f} {p99:>11.3f} {samples:>7}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
