#!/usr/bin/env python3
"""Redis sweep benchmark: janitor vs redis-cli|xargs vs the seed's algorithm, side by side.

Each contender gets an identical, freshly seeded data set on a private redis-server:
  N/2 `cache:{i}`            no TTL, idle 2 h (RESTORE ... IDLETIME)  -> to delete
  N/4 `cache:ttl:{i}`        TTL 1 day                                -> left alone
  N/4 `cache:protected:{i}`  no TTL, idle, JANITOR_REDIS_PROTECT       -> left alone by the janitor

Contenders:
  janitor  `janitor sweep --once --resource redis` (policy cache:*=delete_idle:1h, SCAN
           COUNT 1000, unpaced): SCAN, PTTL + OBJECT IDLETIME + REFCOUNT per key, atomic
           re-check + UNLINK per key
  cli      `redis-cli --scan --pattern 'cache:*' | xargs -n 1000 redis-cli unlink`
           (no checks at all: it also deletes the TTL'd and protected keys)
  seed     seed 003's algorithm in redis-py: scan_iter, TTL per key, DELETE per key

While the janitor runs, a GET loop measures latency next to its baseline without a sweep,
once with the janitor at nice 0 and once at nice 10 (as systemd/janitor.service runs it),
and with --paced OPS once more at JANITOR_REDIS_MAX_OPS_PER_SEC=OPS (the daemon's default
pacing is 50000; the other sweeps are unpaced).
Peak RSS of the janitor comes from /usr/bin/time -v, at N and at N/10 (flat or not).
The janitor and redis-cli alternate for --rounds rounds (3); their medians are compared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

import redis

from common import free_port, sweep_once


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="janitor-bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def seed(r: redis.Redis, n: int) -> None:
    r.flushall()
    r.set("src", "x" * 64)
    payload = r.dump("src")
    r.delete("src")
    half, quarter = n // 2, n // 4
    batch = 10_000
    for start in range(0, half, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, half)):
            p.restore(f"cache:{i}", 0, payload, idletime=7200)
        p.execute()
    for start in range(0, quarter, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, quarter)):
            p.set(f"cache:ttl:{i}", "x" * 64, ex=86_400)
            p.restore(f"cache:protected:{i}", 0, payload, idletime=7200)
        p.execute()
    assert r.dbsize() == half + 2 * quarter


def run_janitor(port: int, workdir: str, nice: int = 0, max_ops: str | None = None) -> tuple[float, int, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "JANITOR_REDIS_POLICIES": "cache:*=delete_idle:1h",
        "JANITOR_REDIS_PROTECT": "cache:protected:*",
        "JANITOR_MAX_DELETE_FRACTION": "1",
        "JANITOR_MAX_DELETE_COUNT": "100000000",
        "JANITOR_REDIS_SCAN_COUNT": "1000",
        "JANITOR_REDIS_MAX_OPS_PER_SEC": max_ops or os.environ.get("BENCH_MAX_OPS", "0"),
        "JANITOR_REDIS_BATCH_PAUSE_MS": os.environ.get("BENCH_PAUSE_MS", "0"),
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
        "JANITOR_LOG_FORMAT": "json",
    }
    return sweep_once("redis", env, workdir, nice)


def run_cli(port: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        f"redis-cli -p {port} --scan --pattern 'cache:*' | xargs -n 1000 redis-cli -p {port} unlink > /dev/null",
        shell=True, check=True)
    return time.perf_counter() - started


def run_seed_algorithm(port: int) -> float:
    """Seed 003's Redis cleanup: every cache key, TTL then DELETE when it has none."""
    r = redis.Redis(port=port)
    started = time.perf_counter()
    for key in r.scan_iter(match="cache:*"):
        if r.ttl(key) == -1:
            r.delete(key)
    return time.perf_counter() - started


class GetLoop(threading.Thread):
    """GETs one key back to back on its own connection, recording each latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.r = redis.Redis(port=port)
        self.r.set("probe", "v")
        self.stop = threading.Event()
        self.samples: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            self.r.get("probe")
            self.samples.append(time.perf_counter() - t)

    def p(self, q: float) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000


def latency(port: int, during) -> tuple[float, float, int]:
    loop = GetLoop(port)
    loop.start()
    result = during()
    loop.stop.set()
    loop.join()
    return loop.p(0.5), loop.p(0.99), len(loop.samples), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--skip-seed-algorithm", action="store_true", help="the slow peer (minutes at 1M)")
    ap.add_argument("--rounds", type=int, default=3, help="janitor / redis-cli rounds (medians compared)")
    ap.add_argument("--paced", type=int, metavar="OPS", help="also the GET latency during a sweep paced "
                    "at OPS commands/s (JANITOR_REDIS_MAX_OPS_PER_SEC; the daemon's default is 50000)")
    args = ap.parse_args()
    n = args.keys
    server = Server()
    workdir = tempfile.mkdtemp(prefix="janitor-bench-")
    try:
        rows = []
        # small run first: is the janitor's memory flat from N/10 to N?
        seed(server.client, n // 10)
        _, rss_small, _ = run_janitor(server.port, workdir)

        # janitor and redis-cli alternate, round by round: the host's noise (two shared
        # cores; the same sweep has taken 3.0 to 4.2 s) falls on both, and medians are compared
        walls, cli_walls, rss = [], [], 0
        for _ in range(args.rounds):
            seed(server.client, n)
            wall, peak, summary = run_janitor(server.port, workdir)
            walls.append(wall)
            rss = max(rss, peak)
            deleted = n - server.client.dbsize()
            seed(server.client, n)
            cli_walls.append(run_cli(server.port))
            cli_deleted = n - server.client.dbsize()
        wall = statistics.median(walls)
        rows.append(("janitor sweep", walls, deleted))
        rows.append(("redis-cli --scan | xargs unlink", cli_walls, cli_deleted))

        # latency of the application's GETs: a baseline, then during another sweep
        seed(server.client, n)
        base50, base99, base_n, _ = latency(server.port, lambda: time.sleep(3))
        seed(server.client, n)
        p50, p99, samples, _ = latency(server.port, lambda: run_janitor(server.port, workdir))
        # as the systemd unit runs it (Nice=10): the GET loop gets the CPU first
        seed(server.client, n)
        n50, n99, n_samples, _ = latency(server.port, lambda: run_janitor(server.port, workdir, nice=10))

        paced = None
        if args.paced:
            seed(server.client, n)
            ops = str(args.paced)
            p50p, p99p, paced_n, (paced_wall, _, _) = latency(
                server.port, lambda: run_janitor(server.port, workdir, max_ops=ops))
            paced = (p50p, p99p, paced_n, paced_wall)

        if not args.skip_seed_algorithm:
            seed(server.client, n)
            seed_time = run_seed_algorithm(server.port)
            rows.append(("seed 003 (redis-py: TTL + DELETE per key)", [seed_time], n - server.client.dbsize()))

        print(f"\nRedis sweep, {n:,} keys: {n//2:,} cache:* idle without TTL, {n//4:,} with TTL, {n//4:,} protected\n")
        print(f"{'contender':<44} {'median s':>8} {'runs s':>20} {'deleted':>10} {'janitor faster':>15}")
        for name, secs, deleted in rows:
            ratio = statistics.median(secs) / wall
            runs = " ".join(f"{x:.2f}" for x in secs)
            print(f"{name:<44} {statistics.median(secs):>8.2f} {runs:>20} {deleted:>10,} {ratio:>14.2f}x")
        pairs = " ".join(f"{c / j:.2f}x" for j, c in zip(walls, cli_walls))
        print(f"janitor faster than redis-cli, round by round: {pairs}")
        print(f"\njanitor: {summary}")
        print(f"janitor peak RSS: {rss/1024:.1f} MB at {n:,} keys, {rss_small/1024:.1f} MB at {n//10:,} keys")
        print(f"GET latency p50/p99 (a redis-py loop on its own connection; 2 cores shared by "
              f"redis-server, the janitor and the loop): ", end="")
        print(f"baseline {base50:.3f}/{base99:.3f} ms ({base_n} GETs), "
              f"during the sweep {p50:.3f}/{p99:.3f} ms ({samples} GETs), "
              f"during the sweep at nice 10 (systemd/janitor.service) {n50:.3f}/{n99:.3f} ms ({n_samples} GETs)")
        if paced:
            p50p, p99p, paced_n, paced_wall = paced
            print(f"GET latency p50/p99 during a sweep paced at {args.paced:,} commands/s: "
                  f"{p50p:.3f}/{p99p:.3f} ms ({paced_n} GETs; the sweep took {paced_wall:.1f} s)")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
