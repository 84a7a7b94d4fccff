#!/usr/bin/env python3
"""Admin API under load with a backend down. `janitor run` is started against the test
servers' Redis, Qdrant and S3, but with MONGODB_URI pointing at a port where nothing
listens (the reference source is down: the S3 and document passes fail closed, the monitor
reports MongoDB as failing). wrk (2 threads, --connections, --seconds each) then loads:

  GET /healthz                 no token
  GET /api/resources/metrics   the snapshot, with the bearer token
  GET /api/resources/queue     with the token
  GET /api/workers             with the token

and reports requests/s and the latency percentiles wrk measures (p50, p99). Then a flood of
POST /api/resources/cleanup (dry runs, 8 threads for --seconds): every answer past the
limit must be 429 with Retry-After, and the queue (sampled throughout) must never hold more
tasks than the accepted requests. Both processes share the machine's 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from common import JANITOR, free_port, services, wait_healthy

TOKEN = "load-bench-token-0123456789"


def wrk(url: str, seconds: int, connections: int, token: bool) -> tuple[float, str, str]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: Bearer {TOKEN}"]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, f"{url}: {errors.group(0)}"
    return rps, p50, p99


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    svc = services()
    workdir = tempfile.mkdtemp(prefix="janitor-bench-load-")
    port = free_port()
    env = {k: svc[k] for k in ["REDIS_URL", "QDRANT_URL", "S3_ENDPOINT", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
                               "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]}
    env.update({
        "PATH": os.environ["PATH"],
        "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=1000",
        "MONGODB_DATABASE": "load_bench",
        "JANITOR_ADMIN_ADDR": f"127.0.0.1:{port}",
        "JANITOR_ADMIN_TOKEN": TOKEN,
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
        "JANITOR_LOG_FORMAT": "json",
        "JANITOR_DRY_RUN": "true",
        "RESOURCE_MONITORING_INTERVAL_SECONDS": "5",
        "JANITOR_BACKEND_TIMEOUT_SECONDS": "2",
    })
    proc = subprocess.Popen([JANITOR, "run"], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        time.sleep(6)  # the first measurements, MongoDB failing (server selection times out)
        metrics = json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/api/resources/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).read())
        rows = []
        for path, token in [("/healthz", False), ("/api/resources/metrics", True),
                            ("/api/resources/queue", True), ("/api/workers", True)]:
            rows.append((path, *wrk(base + path, args.seconds, args.connections, token)))

        # the cleanup flood: 429 past the limit, and the queue never grows past what was accepted
        counts: dict[int, int] = {}
        retry_after_missing = 0
        lock = threading.Lock()
        stop = time.time() + args.seconds

        def flood() -> None:
            nonlocal retry_after_missing
            while time.time() < stop:
                req = urllib.request.Request(base + "/api/resources/cleanup?async=true", method="POST",
                                             data=b'{"dry_run": true}',
                                             headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        code = r.status
                except urllib.error.HTTPError as e:
                    code = e.code
                    if code == 429 and not e.headers.get("Retry-After"):
                        with lock:
                            retry_after_missing += 1
                with lock:
                    counts[code] = counts.get(code, 0) + 1

        max_queue = 0
        threads = [threading.Thread(target=flood) for _ in range(8)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            q = json.loads(urllib.request.urlopen(urllib.request.Request(
                base + "/api/resources/queue", headers={"Authorization": f"Bearer {TOKEN}"})).read())
            max_queue = max(max_queue, q["queue_size"] + q["running"])
            time.sleep(0.05)
        accepted = counts.get(202, 0)

        print(f"\nAdmin API load, MongoDB down (its measurement: status {metrics['mongodb']['status']!r}); "
              f"wrk -t2 -c{args.connections} -d{args.seconds}s on 2 shared cores\n")
        print(f"{'endpoint':<28} {'req/s':>10} {'p50':>10} {'p99':>10}")
        for path, rps, p50, p99 in rows:
            print(f"{path:<28} {rps:>10,.0f} {p50:>10} {p99:>10}")
        print(f"\ncleanup flood ({args.seconds} s, 8 clients): answers {counts}; 429 without Retry-After: "
              f"{retry_after_missing}; most tasks queued or running at once: {max_queue} "
              f"(accepted: {accepted}, each store one task)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
