#!/usr/bin/env python3
"""Document lifecycle benchmark: the janitor's full cascade vs the seed's loop, side by side.

Two identical worlds are seeded in the servers of scripts/services.sh (MongoDB, Garage,
the Qdrant test server, redis-server), each with N documents, a third of them expired
(created 10 days ago, status ready; the rest 1 day old), each with one object in S3, 20
points in Qdrant (payload document_id) and 2 cache keys in Redis (doc_segments:{id}:n),
plus 50 chat sessions holding live documents.

  janitor  `janitor sweep --once --resource documents`: the full cascade (object, points,
           keys, then the document), batched per store, drift counting off
  seed     a reproduction of the seed's loop: for each expired document, one session query
           and one DeleteObject and one delete_one (the object and the document only; the
           document's vectors and keys are left behind)

Reported: wall time, documents per second and the ratio; requests per store, counted by the
servers themselves (MongoDB serverStatus commands, Garage's admin metrics, Redis
commandstats); what each left behind; the janitor's peak RSS at N/10 and at N.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import boto3
import pymongo
import redis
from botocore.config import Config
from qdrant_client import QdrantClient, models

from common import sweep_once

POINTS = 20
KEYS = 2


def read_env(path: str) -> dict[str, str]:
    env = {}
    for line in open(path):
        if "=" in line and not line.startswith("#"):
            k, v = line.strip().split("=", 1)
            env[k] = v
    return env


class World:
    """One seeded world: its database, bucket prefix, Redis database and collection."""

    def __init__(self, svc: dict[str, str], name: str, redis_db: int) -> None:
        self.svc, self.name = svc, name
        self.mongo = pymongo.MongoClient(svc["MONGODB_URI"])
        self.db = self.mongo[f"bench_{name}"]
        self.mongo.drop_database(self.db.name)
        self.s3 = boto3.client("s3", endpoint_url=svc["S3_ENDPOINT"], region_name="garage",
                               aws_access_key_id=svc["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=svc["AWS_SECRET_ACCESS_KEY"],
                               config=Config(s3={"addressing_style": "path"}, max_pool_connections=64))
        self.bucket, self.prefix = svc["S3_BUCKET"], f"bench-{name}/"
        port = svc["TEST_REDIS_PORT"]
        self.redis_url = f"redis://127.0.0.1:{port}/{redis_db}"
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.flushdb()
        self.qdrant = QdrantClient(url=svc["QDRANT_URL"], prefer_grpc=True, grpc_port=int(svc["QDRANT_URL"].rsplit(":", 1)[1]))
        self.collection = f"bench_{name}"
        if self.qdrant.collection_exists(self.collection):
            self.qdrant.delete_collection(self.collection)
        self.qdrant.create_collection(self.collection, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        self.qdrant.create_payload_index(self.collection, "document_id", models.PayloadSchemaType.KEYWORD, wait=True)

    def seed(self, n: int) -> tuple[int, float]:
        """N documents, a third expired; returns (expired, seconds)."""
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        docs, expired = [], 0
        for i in range(n):
            old = i % 3 == 0
            expired += old
            docs.append({"_id": f"{self.name}-{i:07d}", "status": "ready", "minio_key": f"{self.prefix}u{i % 50}/{i:07d}.pdf",
                         "created_at": now - timedelta(days=10 if old else 1)})
        for chunk in range(0, n, 1000):
            self.db.documents.insert_many(docs[chunk:chunk + 1000], ordered=False)
        # as the application has them: the reference field and the session ids indexed
        self.db.documents.create_index("minio_key")
        self.db.chat_sessions.create_index("attached_file_ids")
        live = [d["_id"] for d in docs if d["created_at"] > now - timedelta(days=7)]
        self.db.chat_sessions.insert_many([{"attached_file_ids": live[i::50][:5], "updated_at": now} for i in range(50)])
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda d: self.s3.put_object(Bucket=self.bucket, Key=d["minio_key"], Body=b"%PDF" * 16), docs))
        points = [models.PointStruct(id=i * POINTS + j, vector=[0.1, 0.2, 0.3, float(j)], payload={"document_id": d["_id"]})
                  for i, d in enumerate(docs) for j in range(POINTS)]
        for chunk in range(0, len(points), 2000):
            self.qdrant.upsert(self.collection, points[chunk:chunk + 2000], wait=True)
        pipe = self.redis.pipeline(transaction=False)
        for d in docs:
            for k in range(KEYS):
                pipe.set(f"doc_segments:{d['_id']}:{k}", b"x" * 64)
        pipe.execute()
        return expired, time.perf_counter() - started

    def left(self) -> dict[str, int]:
        """What is left of the expired documents' things (ids end in a multiple of 3)."""
        expired_ids = [d["_id"] for d in self.db.documents.find({"created_at": {"$lt": datetime.now(timezone.utc) - timedelta(days=7)}}, {"_id": 1})]
        objects = sum(1 for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
                      for o in page.get("Contents", []) if int(o["Key"].rsplit("/", 1)[1][:7]) % 3 == 0)
        points = self.qdrant.count(self.collection, count_filter=models.Filter(must=[models.FieldCondition(
            key="document_id", match=models.MatchAny(any=[f"{self.name}-{i:07d}" for i in range(0, self.n, 3)]))]), exact=True).count
        keys = sum(1 for k in self.redis.scan_iter("doc_segments:*", count=1000) if int(k.decode().rsplit(":", 1)[0][-7:]) % 3 == 0)
        return {"documents": len(expired_ids), "objects": objects, "points": points, "keys": keys}

    def env(self, audit: str) -> dict[str, str]:
        s = self.svc
        return {"PATH": os.environ["PATH"], "REDIS_URL": self.redis_url, "QDRANT_URL": s["QDRANT_URL"],
                "S3_ENDPOINT": s["S3_ENDPOINT"], "S3_BUCKET": s["S3_BUCKET"], "AWS_ACCESS_KEY_ID": s["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": s["AWS_SECRET_ACCESS_KEY"], "AWS_REGION": "garage", "MONGODB_URI": s["MONGODB_URI"],
                "MONGODB_DATABASE": self.db.name, "JANITOR_QDRANT_COLLECTIONS": self.collection,
                "JANITOR_DOCUMENTS_EXPIRE": "true", "JANITOR_DOCUMENTS_RECONCILE": "false",
                "JANITOR_MAX_DELETE_FRACTION": "1", "JANITOR_MAX_DELETE_COUNT": "10000000",
                "JANITOR_AUDIT_LOG": audit, "JANITOR_BACKEND_TIMEOUT_SECONDS": "30", "JANITOR_LOG_FORMAT": "text",
                **getattr(self, "extra", {})}

    def cleanup(self) -> None:
        self.mongo.drop_database(self.db.name)
        self.qdrant.delete_collection(self.collection)
        self.redis.flushdb()
        keys = [o["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
                for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


def server_cpu(state_dir: str) -> dict[str, float]:
    """CPU seconds each test server has used so far (from /proc), by name."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in ("mongo", "garage", "qdrant", "redis"):
        try:
            pid = open(os.path.join(state_dir, name, "pid")).read().strip()
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            out[name] = float("nan")
    return out


class Counters:
    """Requests the servers themselves counted."""

    def __init__(self, svc: dict[str, str], world: World) -> None:
        self.svc, self.world = svc, world

    def snapshot(self) -> dict[str, int]:
        cmds = self.world.mongo.admin.command("serverStatus")["metrics"]["commands"]
        mongo = sum(v["total"] for k, v in cmds.items() if isinstance(v, dict) and "total" in v and k != "serverStatus")
        req = urllib.request.Request(self.svc["TEST_GARAGE_ADMIN_URL"] + "/metrics",
                                     headers={"Authorization": f"Bearer {self.svc['TEST_GARAGE_ADMIN_TOKEN']}"})
        text = urllib.request.urlopen(req).read().decode()
        s3 = sum(int(float(m.group(1))) for m in re.finditer(r'^api_s3_request_counter\{[^}]*\} (\S+)', text, re.M))
        stats = self.world.redis.info("commandstats")
        redis_calls = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
        return {"mongodb": mongo, "s3": s3, "redis": redis_calls}

    @staticmethod
    def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: b[k] - a[k] for k in a}


def seed_loop(world: World) -> None:
    """The seed's way: one session query, one DeleteObject and one delete_one per document."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=7)
    for d in world.db.documents.find({"created_at": {"$lt": cutoff}, "status": {"$in": ["ready", "failed"]}}):
        if world.db.chat_sessions.find_one({"attached_file_ids": d["_id"], "updated_at": {"$gte": cutoff}}):
            continue
        world.s3.delete_object(Bucket=world.bucket, Key=d["minio_key"])
        world.db.documents.delete_one({"_id": d["_id"]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", required=True)
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, help="JANITOR_DOCUMENTS_BATCH_SIZE (default: the janitor's, 1000)")
    args = ap.parse_args()
    svc = read_env(args.env)
    n = args.documents
    tmp = tempfile.mkdtemp(prefix="janitor-bench-docs-")
    small = World(svc, "docs_small", 13)
    small.n = n // 10
    jw, sw = World(svc, "docs_janitor", 14), World(svc, "docs_seed", 15)
    jw.n = sw.n = n
    expired, secs = jw.seed(n)
    _, secs2 = sw.seed(n)
    small.seed(n // 10)
    print(f"seeded 2 x {n} documents ({expired} expired), each with 1 object, {POINTS} points, {KEYS} keys: {secs:.1f} s + {secs2:.1f} s")

    if args.batch_size:
        for w in (small, jw):
            w.extra = {"JANITOR_DOCUMENTS_BATCH_SIZE": str(args.batch_size)}
    state = os.path.dirname(os.path.abspath(args.env))
    _, rss_small, _ = sweep_once("documents", small.env(os.path.join(tmp, "small.jsonl")), tmp)
    counters = Counters(svc, jw)
    before, cpu = counters.snapshot(), server_cpu(state)
    wall, rss, summary = sweep_once("documents", jw.env(os.path.join(tmp, "audit.jsonl")), tmp)
    janitor_req = Counters.diff(before, counters.snapshot())
    janitor_cpu = {k: v - cpu[k] for k, v in server_cpu(state).items()}
    janitor_left = jw.left()

    counters = Counters(svc, sw)
    before, cpu = counters.snapshot(), server_cpu(state)
    started = time.perf_counter()
    seed_loop(sw)
    seed_wall = time.perf_counter() - started
    seed_req = Counters.diff(before, counters.snapshot())
    seed_cpu = {k: v - cpu[k] for k, v in server_cpu(state).items()}
    seed_left = sw.left()

    print(f"\n{'':10} {'wall':>8} {'docs/s':>9} {'per doc':>9}  requests (server-counted)             left of the {expired} expired")
    for name, w, req, left in [("janitor", wall, janitor_req, janitor_left), ("seed loop", seed_wall, seed_req, seed_left)]:
        print(f"{name:10} {w:7.2f}s {expired / w:9.0f} {1000 * w / expired:7.2f}ms  mongodb {req['mongodb']:>6} s3 {req['s3']:>6} redis {req['redis']:>6}"
              f"   docs {left['documents']} objects {left['objects']} points {left['points']} keys {left['keys']}")
    for name, cpu in [("janitor", janitor_cpu), ("seed loop", seed_cpu)]:
        print(f"server CPU during {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()))
    print(f"\njanitor / seed loop: {seed_wall / wall:.1f}x the documents per second, with the full cascade")
    print(f"janitor peak RSS: {rss_small / 1024:.1f} MB at {n // 10} documents, {rss / 1024:.1f} MB at {n}")
    print(f"janitor: {summary}")
    for w in (small, jw, sw):
        w.cleanup()


if __name__ == "__main__":
    main()
