#!/usr/bin/env python3
"""History benchmark (stores configured but unreachable): one year of 30-minute measurements for 4 stores (70,080 rows) plus
100,000 runs (records of ~1 KB, as the janitor writes them), written into a history file
with the janitor's schema; then `janitor run` (no store configured, so nothing else loads
it) serves it. Measured: the file's size; the response times of `GET
/api/resources/report?period=30d`, of the page (`GET /`) and of every request the page
makes (metrics, queue, workers, runs?limit=20, report 24h, history 24h and 7d for the 4
stores), 20 times each (median and max); the daemon's RSS (/proc/PID/status VmRSS, VmHWM)
with an empty history and with the full one after those requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request

from common import JANITOR, free_port, wait_healthy

SCHEMA = open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "history", "mod.rs")).read()
SCHEMA = SCHEMA[SCHEMA.index('const SCHEMA: &str = "') + len('const SCHEMA: &str = "'):]
SCHEMA = SCHEMA[:SCHEMA.index('";')]

STORES = ["redis", "qdrant", "s3", "mongodb"]
OUTCOMES = ["succeeded"] * 90 + ["dry_run"] * 4 + ["failed_closed"] * 3 + ["failed"] * 2 + ["aborted_cap"]


def seed(path: str, runs: int, now: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA)
    year = 365 * 86400
    rows = []
    for t in range(now - year, now, 1800):
        for i, store in enumerate(STORES):
            f = 0.3 + 0.2 * ((t // 86400 + i) % 7) / 7
            rows.append((store, t, 1000 + t % 5000, 1 << 30, f, "LOW" if f < 0.5 else "MEDIUM", 5.0))
    db.executemany("INSERT INTO usage VALUES (?,?,?,?,?,?,?)", rows)
    rnd = random.Random(7)
    batch = []
    for n in range(runs):
        store = ["redis", "qdrant", "s3", "documents"][n % 4]
        started = now - year + int(n * year / runs)
        outcome = rnd.choice(OUTCOMES)
        run_id = f"{store}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{n:06x}"
        deleted = 0 if outcome != "succeeded" else rnd.randint(0, 5000)
        record = {
            "id": run_id, "resource": store, "trigger": "schedule", "priority": "LOW",
            "reason": "scheduled every 1h (LOW)", "dry_run": outcome == "dry_run", "outcome": outcome,
            "message": "mongodb: connection refused" if outcome.startswith("failed") else None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_secs": rnd.random() * 5, "ttl_secs": 3600.0, "store_items": 100000,
            "planned_deletions": deleted, "planned_expirations": 10, "deleted": deleted, "expired": 10,
            "bytes_freed": deleted * 700, "skipped": 1, "failed": 0,
            "notes": [f"{store}: 100000 items scanned, {deleted} planned"],
            "warnings": [],
            "sample": [{"id": f"doc_segments:{n}:{i}", "action": "delete"} for i in range(10)],
        }
        batch.append((run_id, store, outcome, "schedule", started, record["duration_secs"],
                      int(record["dry_run"]), deleted, 10, deleted * 700, 0, record["message"],
                      json.dumps(record)))
        if len(batch) == 10000:
            db.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            batch = []
    db.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def rss(pid: int) -> tuple[int, int]:
    status = open(f"/proc/{pid}/status").read()
    get = lambda k: int(next(l.split()[1] for l in status.splitlines() if l.startswith(k)))
    return get("VmRSS:"), get("VmHWM:")


def start(workdir: str, history: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "JANITOR_ADMIN_ADDR": f"127.0.0.1:{port}",
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
        "JANITOR_HISTORY_PATH": history,
        "JANITOR_HISTORY_DAYS": "400",
        "JANITOR_HISTORY_MAX_MB": "1024",
        "JANITOR_LOG_FORMAT": "json",
        # every store configured (so the report covers them) but unreachable: the loops
        # fail and back off, the history is all the daemon serves
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "QDRANT_URL": "http://127.0.0.1:1",
        "S3_ENDPOINT": "http://127.0.0.1:1",
        "S3_BUCKET": "bench",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "MONGODB_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500",
        "JANITOR_BACKEND_TIMEOUT_SECONDS": "1",
    }
    proc = subprocess.Popen([JANITOR, "run"], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base)
    return proc, base


def timed(url: str, n: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


PAGE_REQUESTS = ["/", "/api/resources/metrics", "/api/resources/queue", "/api/workers",
                 "/api/resources/runs?limit=20", "/api/resources/report?period=24h"] + [
    f"/api/resources/history?resource={s}&period={p}" for p in ["24h", "7d"] for s in ["redis", "qdrant", "minio", "mongodb"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="janitor-bench-history-")
    try:
        empty = os.path.join(workdir, "empty.sqlite")
        proc, base = start(workdir, empty)
        time.sleep(1)
        for path in PAGE_REQUESTS + ["/api/resources/report?period=30d"]:
            timed(base + path, 3)
        rss_empty = rss(proc.pid)
        proc.terminate(); proc.wait()

        full = os.path.join(workdir, "full.sqlite")
        now = int(time.time())
        t = time.perf_counter()
        seed(full, args.runs, now)
        seeded = time.perf_counter() - t
        size = os.path.getsize(full)
        proc, base = start(workdir, full)
        time.sleep(1)
        rss_start = rss(proc.pid)
        report = timed(base + "/api/resources/report?period=30d")
        page = [(p, timed(base + p)) for p in PAGE_REQUESTS]
        # the page as a browser loads it: every request, one after the other
        loads = []
        for _ in range(10):
            t = time.perf_counter()
            for p in PAGE_REQUESTS:
                with urllib.request.urlopen(base + p, timeout=30) as r:
                    r.read()
            loads.append((time.perf_counter() - t) * 1000)
        rss_full = rss(proc.pid)
        body = json.loads(urllib.request.urlopen(base + "/api/resources/report?period=30d").read())
        proc.terminate(); proc.wait()

        print(f"\nHistory: {args.runs:,} runs over a year + {365 * 48 * 4:,} measurements "
              f"(seeded in {seeded:.1f} s): file {size / 2**20:.1f} MB")
        print(f"GET /api/resources/report?period=30d: median {report[0]:.1f} ms, max {report[1]:.1f} ms "
              f"(redis runs in 30 d: {sum(body['stores']['redis']['runs'].values()):,})")
        print("the page's requests, 20 times each (median / max ms):")
        for p, (med, mx) in page:
            print(f"  {p:<50} {med:7.1f} {mx:7.1f}")
        print(f"the whole page load (all {len(PAGE_REQUESTS)} requests in a row): median "
              f"{statistics.median(loads):.1f} ms, max {max(loads):.1f} ms")
        print(f"daemon RSS (VmRSS / peak VmHWM): empty history {rss_empty[0] / 1024:.1f} / {rss_empty[1] / 1024:.1f} MB; "
              f"full history at start {rss_start[0] / 1024:.1f} MB, after the requests "
              f"{rss_full[0] / 1024:.1f} / {rss_full[1] / 1024:.1f} MB; growth "
              f"{(rss_full[0] - rss_empty[0]) / 1024:.1f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
