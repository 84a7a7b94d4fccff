#!/usr/bin/env python3
"""Soak: `janitor run` against the test servers (its own Redis database, S3 prefix, MongoDB
database; the document lifecycle on), every loop and the monitor every second, for
--minutes. Each second a little garbage is written (Redis keys without TTL, S3 objects,
expired documents with their vectors and keys), so every cycle plans and deletes. Every 10 s
/metrics is sampled: janitor_process_resident_bytes, janitor_process_open_fds,
janitor_runtime_alive_tasks and runs by outcome; at the end the daemon's WARN and ERROR log
lines are listed by message, to be explained. Flat means the last third's mean is within
a few percent (memory) or equal (descriptors, tasks) of the second third's: the first third
is warm-up (allocator arenas, connection pools, the history file's pages).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

import boto3
import pymongo
import redis
from botocore.config import Config
from bson import ObjectId

from common import JANITOR, free_port, services, wait_healthy


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def log_levels(path: str) -> dict[str, dict[str, int]]:
    """The daemon's WARN and ERROR log lines (JSON), counted by level and message."""
    import json
    from collections import Counter, defaultdict
    found: dict[str, Counter] = defaultdict(Counter)
    for line in open(path, errors="replace"):
        try:
            rec = json.loads(line)
        except ValueError:
            found["UNPARSED"][line.strip()[:160]] += 1
            continue
        level = rec.get("level", "")
        if level in ("WARN", "ERROR"):
            fields = rec.get("fields", {})
            message = rec.get("message") or fields.get("message") or rec
            # with its fields (which worker, which error): a warning must say what it was
            extra = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "message")
            found[level][f"{message} ({extra})"[:300] if extra else str(message)[:300]] += 1
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5)
    args = ap.parse_args()
    svc = services()
    workdir = tempfile.mkdtemp(prefix="janitor-soak-")
    port = free_port()
    redis_url = re.sub(r"/\d+$", "/61", svc["REDIS_URL"])
    env = {k: svc[k] for k in ["QDRANT_URL", "S3_ENDPOINT", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
                               "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "MONGODB_URI"]}
    env.update({
        "PATH": os.environ["PATH"], "REDIS_URL": redis_url, "MONGODB_DATABASE": "soak_db",
        "JANITOR_ADMIN_ADDR": f"127.0.0.1:{port}", "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"),
        "JANITOR_LOG_FORMAT": "json", "JANITOR_ALLOW_SHORT_TTL": "true",
        "JANITOR_S3_PREFIXES": "soak/", "FILES_TTL_DAYS": "0.00001", "JANITOR_S3_GRACE_HOURS": "0.0001",
        "JANITOR_REDIS_POLICIES": "soak:*=delete", "JANITOR_MAX_DELETE_FRACTION": "1",
        "JANITOR_QDRANT_COLLECTIONS": "soak_chunks=1h", "JANITOR_QDRANT_ORPHAN_FIELD": "document_id",
        "JANITOR_DOCUMENTS_EXPIRE": "true", "JANITOR_DOCUMENTS_TTL_DAYS": "1",
        "JANITOR_DOCUMENTS_REDIS_KEYS": "soakdoc:{document_id}*",
        "REDIS_CLEANUP_INTERVAL_SECONDS": "1", "QDRANT_CLEANUP_INTERVAL_SECONDS": "1",
        "MINIO_CLEANUP_INTERVAL_SECONDS": "1", "JANITOR_DOCUMENTS_INTERVAL_SECONDS": "1",
        "RESOURCE_MONITORING_INTERVAL_SECONDS": "1", "JANITOR_QUEUE_TASKS_PER_CYCLE": "10",
        "JANITOR_S3_MEASURE_CACHE_SECONDS": "0",
    })
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    mongo = pymongo.MongoClient(svc["MONGODB_URI"])
    mongo.drop_database("soak_db")
    docs = mongo["soak_db"]["documents"]
    docs.insert_one({"minio_key": "soak/keep.pdf", "created_at": datetime.datetime.now(datetime.timezone.utc),
                     "status": "ready"})
    s3 = boto3.client("s3", endpoint_url=svc["S3_ENDPOINT"], aws_access_key_id=svc["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=svc["AWS_SECRET_ACCESS_KEY"], region_name=svc["AWS_REGION"],
                      config=Config(s3={"addressing_style": "path"}))
    bucket = svc["S3_BUCKET"]
    s3.put_object(Bucket=bucket, Key="soak/keep.pdf", Body=b"x")
    log_path = os.path.join(workdir, "janitor.log")
    log_file = open(log_path, "w")
    proc = subprocess.Popen([JANITOR, "run"], env=env, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    samples = []
    try:
        wait_healthy(base)
        end = time.time() + args.minutes * 60
        n = 0
        next_sample = time.time()
        while time.time() < end:
            # a little garbage every second: keys, an object, an expired document with a key
            old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
            p = r.pipeline()
            for i in range(50):
                p.set(f"soak:{n}:{i}", "v")
            doc_id = ObjectId()
            p.set(f"soakdoc:{doc_id}:0", "segment")
            p.execute()
            s3.put_object(Bucket=bucket, Key=f"soak/orphan-{n}.bin", Body=b"y" * 100)
            docs.insert_one({"_id": doc_id, "minio_key": f"soak/doc-{n}.pdf", "created_at": old, "status": "ready"})
            s3.put_object(Bucket=bucket, Key=f"soak/doc-{n}.pdf", Body=b"z" * 100)
            n += 1
            if time.time() >= next_sample:
                text = urllib.request.urlopen(base + "/metrics").read().decode()
                runs = sum(float(v) for v in re.findall(r'^janitor_runs_total\{[^}]*outcome="succeeded"[^}]*\} (\S+)$', text, re.M))
                samples.append((time.time(), metric(text, "janitor_process_resident_bytes") / 2**20,
                                metric(text, "janitor_process_open_fds"), metric(text, "janitor_runtime_alive_tasks"), runs))
                next_sample += 10
            time.sleep(1)
        exit_code = proc.poll()
    finally:
        proc.terminate()
        proc.wait()
        log_file.close()
        levels = log_levels(log_path)
        r.flushdb()
        mongo.drop_database("soak_db")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="soak/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        shutil.rmtree(workdir, ignore_errors=True)
    assert exit_code is None, "the daemon died during the soak"
    third = max(1, len(samples) // 3)
    mid, last = samples[third:2 * third], samples[-third:]
    print(f"\nSoak: {args.minutes:g} min, every loop every second, {n} rounds of garbage; "
          f"{samples[-1][4]:.0f} successful runs")
    print(f"{'t (s)':>6} {'RSS MB':>8} {'fds':>5} {'tasks':>6} {'runs ok':>8}")
    t0 = samples[0][0]
    for t, rss, fds, tasks, runs in samples:
        print(f"{t - t0:>6.0f} {rss:>8.1f} {fds:>5.0f} {tasks:>6.0f} {runs:>8.0f}")
    for name, i in [("RSS MB", 1), ("open fds", 2), ("alive tasks", 3)]:
        a, b = statistics.mean(s[i] for s in mid), statistics.mean(s[i] for s in last)
        print(f"{name}: second third mean {a:.1f}, last third mean {b:.1f} ({(b - a) / a * 100:+.1f}%)")
    # every warning and error the daemon logged, by message: each must have an explanation
    for level in ("ERROR", "WARN", "UNPARSED"):
        lines = levels.get(level, {})
        print(f"log {level}: {sum(lines.values())} lines" + (":" if lines else ""))
        for message, count in sorted(lines.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {count:>6} x {message}")


if __name__ == "__main__":
    main()
