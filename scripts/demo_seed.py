#!/usr/bin/env python3
"""Seeds a small demo RAG application into the local servers, for scripts/demo.sh.

Everything it writes is marked as the demo's: MongoDB database `janitor_demo`, objects under
`demo/` in the bucket, Qdrant collection `demo_chunks`, Redis keys under `demo:`. It writes
nothing unless every server is empty (Redis DBSIZE 0 in REDIS_URL's database, no object in
the bucket, no `janitor_demo` database holding data, no Qdrant collection); otherwise it
prints one line naming what holds data and exits 0 without writing.

The application (times relative to now; the janitor's demo settings are in scripts/demo.sh):

  documents (30)  22 ready, created over the last 9 days; 1 processing, just uploaded;
                  1 ready from 20 days ago held by a chat session active 2 hours ago;
                  1 stuck in "processing" since 18 days ago;
                  5 expired (15-25 days old, ready or failed, held by no active session;
                  one is a copy sharing a live document's file)
  chat_sessions   3 (active 2 h ago, 1 day ago; one stale since 20 days holding an expired
                  document)
  S3 demo/        one object per document (29: the copy shares its file), plus 6 files no
                  document references (garbage: deleted once older than the demo's 30 s TTL)
  Qdrant          4 points per ready document with vectors (108), created_at = the
                  document's; 10 points 40-60 days old (past the demo's 30-day TTL) and 6
                  points a few hours old whose document is gone (orphans)
  Redis           3 demo:doc_segments:{id}:{n} keys per ready document (81), 2 for the gone
                  document (drift); demo:cache:answer:* without TTL: 10 idle for hours or days
                  (garbage), 5 fresh; 6 demo:cache:embedding:* with a TTL; 2 idle
                  demo:cache:pinned:* (protected); 4 demo:session:* with a TTL

Usage: demo_seed.py --env .services/services.env
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import boto3
import pymongo
import redis
from botocore.config import Config
from bson import ObjectId
from qdrant_client import QdrantClient, models

DATABASE = "janitor_demo"
PREFIX = "demo/"
COLLECTION = "demo_chunks"
DIM = 8
POINTS_PER_DOC = 4
KEYS_PER_DOC = 3
USERS = ["alice", "bob", "carol", "dave"]
FILES = ["q3-report.pdf", "onboarding.docx", "pricing.md", "contract.pdf", "notes.txt",
         "roadmap.pptx", "faq.md", "invoice-0042.pdf", "design-review.pdf", "meeting.txt", "spec.md"]


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def read_env(path: str) -> dict[str, str]:
    env = {}
    for line in open(path):
        line = line.strip()
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


class Servers:
    def __init__(self, env: dict[str, str]) -> None:
        self.redis = redis.Redis.from_url(env["REDIS_URL"], socket_timeout=10)
        self.redis_db = urlparse(env["REDIS_URL"]).path.strip("/") or "0"
        self.bucket = env["S3_BUCKET"]
        self.s3 = boto3.client(
            "s3", endpoint_url=env["S3_ENDPOINT"], region_name=env.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))
        self.mongo = pymongo.MongoClient(env["MONGODB_URI"], serverSelectionTimeoutMS=10_000)
        self.db = self.mongo[DATABASE]
        q = urlparse(env["QDRANT_URL"])
        self.qdrant = QdrantClient(host=q.hostname, grpc_port=q.port or 6334, prefer_grpc=True,
                                   https=q.scheme == "https", api_key=env.get("QDRANT_API_KEY") or None,
                                   timeout=30, check_compatibility=False)

    def holding_data(self) -> list[str]:
        """What already holds data, one phrase per server (empty: every server is empty)."""
        held = []
        keys = self.redis.dbsize()
        if keys:
            held.append(f"Redis database {self.redis_db} holds {keys} keys")
        listed = self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        if listed.get("KeyCount", 0):
            held.append(f"bucket {self.bucket} holds objects (e.g. {listed['Contents'][0]['Key']})")
        if DATABASE in self.mongo.list_database_names():
            counts = {c: self.db[c].estimated_document_count() for c in self.db.list_collection_names()}
            if any(counts.values()):
                held.append(f"MongoDB database {DATABASE} holds {sum(counts.values())} records")
        collections = [c.name for c in self.qdrant.get_collections().collections]
        if collections:
            held.append(f"Qdrant holds {len(collections)} collection(s) ({', '.join(sorted(collections)[:3])})")
        return held


def seed(sv: Servers) -> None:
    rng = random.Random(2024)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731

    # ---- the documents: (kind, status, created_at) -------------------------------------
    plan: list[tuple[str, str, datetime]] = []
    plan += [("live", "ready", ago(hours=10 * i + 1)) for i in range(22)]            # 0-9 days
    plan += [("uploading", "processing", ago(minutes=2))]
    plan += [("held", "ready", ago(days=20))]
    plan += [("stuck", "processing", ago(days=18))]
    plan += [("expired", "ready", ago(days=d)) for d in (15, 19, 23)]
    plan += [("copy", "ready", ago(days=22))]                                       # shares live[0]'s file
    plan += [("expired", "failed", ago(days=16))]
    docs = []
    for i, (kind, status, created) in enumerate(plan):
        oid = ObjectId()
        user = USERS[i % len(USERS)]
        filename = FILES[i % len(FILES)]
        docs.append({"_id": oid, "user_id": user, "filename": filename,
                     "minio_key": f"{PREFIX}uploads/{user}/{oid}-{filename}",
                     "status": status, "created_at": created, "kind": kind})
    live0 = docs[0]
    copy = next(d for d in docs if d["kind"] == "copy")
    copy.update(user_id=live0["user_id"], filename=live0["filename"], minio_key=live0["minio_key"])
    held = next(d for d in docs if d["kind"] == "held")
    stale_held = next(d for d in docs if d["kind"] == "expired")
    with_vectors = [d for d in docs if d["status"] == "ready"]

    # ---- S3: one object per document, and files nobody references ----------------------
    objects = {d["minio_key"]: f"{d['filename']} uploaded by {d['user_id']}\n".encode() * 8 for d in docs}
    garbage_files = [f"{PREFIX}uploads/alice/draft-{i}.docx" for i in range(2)] + \
        [f"{PREFIX}tmp/upload-{rng.getrandbits(32):08x}.part" for _ in range(2)] + \
        [f"{PREFIX}exports/report-2024-0{m}.csv" for m in (3, 4)]
    for key in garbage_files:
        objects[key] = b"an abandoned file that no document references\n" * 8
    for key, body in objects.items():
        sv.s3.put_object(Bucket=sv.bucket, Key=key, Body=body)
    say(f"S3: {len(objects)} objects under {sv.bucket}/{PREFIX}: {len(objects) - len(garbage_files)} "
        f"referenced by documents, {len(garbage_files)} unreferenced (garbage once 30 s old)")

    # ---- MongoDB: documents and chat sessions -----------------------------------------
    for d in docs:
        del d["kind"]
    sv.db.documents.insert_many(docs)
    sv.db.documents.create_index("minio_key")
    sv.db.documents.create_index("created_at")
    sessions = [
        {"_id": ObjectId(), "user_id": held["user_id"], "title": "Contract questions",
         "attached_file_ids": [held["_id"], docs[1]["_id"], docs[2]["_id"]], "updated_at": ago(hours=2)},
        {"_id": ObjectId(), "user_id": docs[5]["user_id"], "title": "Pricing",
         "attached_file_ids": [docs[5]["_id"]], "updated_at": ago(days=1)},
        {"_id": ObjectId(), "user_id": stale_held["user_id"], "title": "An old chat",
         "attached_file_ids": [stale_held["_id"]], "updated_at": ago(days=20)},
    ]
    sv.db.chat_sessions.insert_many(sessions)
    sv.db.chat_sessions.create_index("attached_file_ids")
    expired = [d for d in docs if d["created_at"] < ago(days=14) and d["status"] in ("ready", "failed")
               and d["_id"] != held["_id"]]
    say(f"MongoDB {DATABASE}: {len(docs)} documents ({len(expired)} expired: older than 14 days, ready or "
        f"failed, in no session active within 14 days), {len(sessions)} chat sessions")

    # ---- Qdrant: the documents' chunks, old leftovers, orphans -------------------------
    sv.qdrant.create_collection(COLLECTION, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    # as a well-behaved application has them: the janitor's TTL filter and the cascade's
    # document filter use these indexes
    sv.qdrant.create_payload_index(COLLECTION, "created_at", models.PayloadSchemaType.INTEGER, wait=True)
    sv.qdrant.create_payload_index(COLLECTION, "document_id", models.PayloadSchemaType.KEYWORD, wait=True)
    gone = str(ObjectId())  # a document deleted by hand, its chunks and cache keys left behind
    points = []

    def point(doc_id: str, created: datetime, chunk: int) -> models.PointStruct:
        return models.PointStruct(id=len(points) + 1, vector=[rng.uniform(-1, 1) for _ in range(DIM)],
                                  payload={"document_id": doc_id, "chunk": chunk, "created_at": int(created.timestamp())})

    for d in with_vectors:
        for c in range(POINTS_PER_DOC):
            points.append(point(str(d["_id"]), d["created_at"], c))
    for i in range(10):
        points.append(point(str(ObjectId()), ago(days=40 + 2 * i), 0))
    for c in range(6):
        points.append(point(gone, ago(hours=3 + c), c))
    sv.qdrant.upsert(COLLECTION, points, wait=True)
    say(f"Qdrant {COLLECTION}: {len(points)} points: {len(with_vectors) * POINTS_PER_DOC} chunks of "
        f"{len(with_vectors)} documents, 10 older than 30 days, 6 orphans of a deleted document")

    # ---- Redis ---------------------------------------------------------------------------
    r = sv.redis
    pipe = r.pipeline(transaction=False)
    for d in with_vectors:
        for n in range(KEYS_PER_DOC):
            pipe.set(f"demo:doc_segments:{d['_id']}:{n}", f"segment {n} of {d['filename']}")
    for n in range(2):
        pipe.set(f"demo:doc_segments:{gone}:{n}", f"segment {n} of a deleted document")
    for u in USERS:
        pipe.set(f"demo:session:{u}", f'{{"user": "{u}", "theme": "dark"}}', ex=86_400)
    for n in range(5):
        pipe.set(f"demo:cache:answer:{rng.getrandbits(48):012x}", f'{{"answer": "fresh answer {n}"}}')
    pipe.execute()

    def restore(key: str, value: str, idle_secs: int, ttl_ms: int = 0) -> None:
        # written as if last read idle_secs ago: RESTORE ... IDLETIME
        tmp = "demo:__seed_dump__"
        r.set(tmp, value)
        dump = r.dump(tmp)
        r.unlink(tmp)
        r.restore(key, ttl_ms, dump, idletime=idle_secs)

    for n in range(10):
        restore(f"demo:cache:answer:{rng.getrandbits(48):012x}", f'{{"answer": "stale answer {n}"}}',
                idle_secs=rng.randint(2 * 3600, 3 * 86_400))
    for n in range(6):
        restore(f"demo:cache:embedding:{rng.getrandbits(48):012x}", f"[0.{n}, 0.1, 0.2]",
                idle_secs=rng.choice([0, 7200]), ttl_ms=6 * 3600 * 1000)
    for name in ("system-prompt", "welcome-message"):
        restore(f"demo:cache:pinned:{name}", f"pinned {name}", idle_secs=5 * 86_400)
    say(f"Redis db {sv.redis_db}: {r.dbsize()} keys: {len(with_vectors) * KEYS_PER_DOC + 2} demo:doc_segments:*, "
        "10 idle demo:cache:answer:* without TTL (garbage), 5 fresh ones, 6 with a TTL, 2 pinned, 4 sessions")

    say(f"garbage the janitor should clean: 6 files, 16 vectors, 10 cache keys, and {len(expired)} expired documents "
        f"with {len({d['minio_key'] for d in expired} - {live0['minio_key']})} files, "
        f"{sum(1 for d in expired if d['status'] == 'ready') * POINTS_PER_DOC} vectors and "
        f"{sum(1 for d in expired if d['status'] == 'ready') * KEYS_PER_DOC} keys "
        "(one expired document shares a live document's file: that file stays)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", required=True, help="the servers' env file (.services/services.env)")
    args = ap.parse_args()
    sv = Servers(read_env(args.env))
    held = sv.holding_data()
    if held:
        say(f"not seeding: {'; '.join(held)}. The demo writes only to empty servers; the janitor "
            "starts anyway (a fresh start: scripts/services.sh down, which deletes the servers' data)")
        return 0
    started = time.monotonic()
    seed(sv)
    say(f"seeded in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
