#!/usr/bin/env python3
"""Redis Cluster sweep benchmark: the same keys swept on one primary and on three.

N keys, seeded as in redis_bench.py (N/2 `cache:{i}` idle without TTL -> to delete, N/4 with
a TTL, N/4 protected), once on a standalone redis-server and once spread over a 3-primary
Redis Cluster (private servers, `redis-cli --cluster create`, no replicas). The janitor
sweeps each with redis_bench's settings, unpaced (`janitor sweep --once --resource redis`):
on a cluster it finds the primaries from the one node in REDIS_URL and sweeps each on its
own connection, all at once. One run each; wall time, deletions and peak RSS side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import redis
from redis.crc import key_slot

from common import free_port
from redis_bench import Server, run_janitor, seed


class Cluster:
    """Three cluster-enabled redis-servers joined into one cluster, slots spread evenly."""

    def __init__(self, n: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="janitor-bench-cluster-")
        # a cluster node also listens on its port + 10000 (the bus): both must exist
        self.ports = []
        while len(self.ports) < n:
            p = free_port()
            if p < 55000 and p not in self.ports:
                self.ports.append(p)
        self.procs = []
        for p in self.ports:
            d = os.path.join(self.dir, str(p))
            os.makedirs(d)
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", d, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in self.ports:
            for _ in range(100):
                try:
                    redis.Redis(port=p).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
        for p in self.ports:
            while b"cluster_state:ok" not in redis.Redis(port=p).execute_command("CLUSTER", "INFO"):
                time.sleep(0.1)
        # which node serves each slot
        self.owner = [0] * 16384
        for start, end, primary, *_ in redis.Redis(port=self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            port = primary[1]
            for s in range(start, end + 1):
                self.owner[s] = port

    def seed(self, n: int) -> None:
        """redis_bench's data set, each key written straight to the primary of its slot."""
        src = redis.Redis(port=self.owner[key_slot(b"src")])
        src.set("src", "x" * 64)
        payload = src.dump("src")
        src.delete("src")
        half, quarter = n // 2, n // 4
        keys = [(f"cache:{i}", "idle") for i in range(half)]
        keys += [(f"cache:ttl:{i}", "ttl") for i in range(quarter)]
        keys += [(f"cache:protected:{i}", "idle") for i in range(quarter)]
        pipes = {p: redis.Redis(port=p).pipeline(transaction=False) for p in self.ports}
        pending = 0
        for key, kind in keys:
            pipe = pipes[self.owner[key_slot(key.encode())]]
            if kind == "ttl":
                pipe.set(key, "x" * 64, ex=86_400)
            else:
                pipe.restore(key, 0, payload, idletime=7200)
            pending += 1
            if pending == 30_000:
                for pipe in pipes.values():
                    pipe.execute()
                pending = 0
        for pipe in pipes.values():
            pipe.execute()

    def dbsize(self) -> int:
        return sum(redis.Redis(port=p).dbsize() for p in self.ports)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.keys
    workdir = tempfile.mkdtemp(prefix="janitor-bench-")
    single, cluster = Server(), Cluster()
    try:
        seed(single.client, n)
        s_wall, s_rss, s_line = run_janitor(single.port, workdir)
        s_deleted = n - single.client.dbsize()
        t = time.perf_counter()
        cluster.seed(n)
        seeded = time.perf_counter() - t
        before = cluster.dbsize()
        assert before == n, before
        c_wall, c_rss, c_line = run_janitor(cluster.ports[1], workdir)
        c_deleted = n - cluster.dbsize()
        print(f"one primary: {s_line}\nthree primaries: {c_line}\n(cluster seeded in {seeded:.1f} s)")
        print(f"\n{n:,} keys, {n // 2:,} to delete; janitor unpaced\n")
        print("| store | seconds | deleted | peak RSS |\n|---|---|---|---|")
        print(f"| one primary | {s_wall:.2f} | {s_deleted:,} | {s_rss / 1024:.1f} MB |")
        print(f"| 3-primary cluster | {c_wall:.2f} | {c_deleted:,} | {c_rss / 1024:.1f} MB |")
        print(f"\ncluster / one primary: {s_wall / c_wall:.2f}x faster (goal >= 2.5x)")
        if s_deleted != c_deleted or s_deleted != n // 2:
            raise SystemExit(f"different deletions: {s_deleted} vs {c_deleted}")
    finally:
        single.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
