#!/usr/bin/env python3
"""S3 orphan sweep benchmark: janitor vs the DeleteObjects floor vs rclone, side by side.

A private Garage under libfaketime holds one bucket per contender, each seeded identically:
N objects, half written with the clock 8 days back (old), half now; half of the old ones
are referenced by a MongoDB document (minio_key, indexed). So D = N/4 objects are old and
unreferenced: what the janitor must delete.

  floor    the fastest direct loop: DeleteObjects over the already-known D keys, 1000 a
           request, sequential
  janitor  `janitor sweep --once --resource s3`: listing, reference checks, deletion with
           adaptive concurrency (JANITOR_S3_MAX_INFLIGHT=8, the default)
  janitor-1  the same at JANITOR_S3_MAX_INFLIGHT=1 (one DeleteObjects in flight)
  rclone   `rclone delete --min-age 7d --use-server-modtime --checkers 32` (checks age only,
           so it deletes all N/2 old objects, one DELETE request each)

Requests are counted by Garage itself (admin /metrics, api_s3_request_counter); the
janitor's MongoDB commands by the MongoDB server itself (serverStatus metrics.commands:
find, getMore, ...). Peak RSS of the janitor at N/10 and N.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pymongo
from botocore.config import Config

from common import free_port, sweep_once
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Garage:
    """A single-node Garage under libfaketime, with one key and the given buckets."""

    def __init__(self, buckets: list[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="janitor-bench-garage-")
        self.s3_port, rpc, self.admin_port = free_port(), free_port(), free_port()
        self.token = os.urandom(16).hex()
        self.config = os.path.join(self.dir, "garage.toml")
        with open(self.config, "w") as f:
            f.write(f"""metadata_dir = "{self.dir}/meta"
data_dir = "{self.dir}/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{os.urandom(32).hex()}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{self.s3_port}"
[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
admin_token = "{self.token}"
metrics_token = "{self.token}"
""")
        os.chmod(self.config, 0o600)
        self.clock = os.path.join(self.dir, "faketime")
        self.set_clock("+0")
        self.key, self.secret = "GK" + os.urandom(12).hex(), os.urandom(32).hex()
        env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=self.clock,
                   FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1", RUST_LOG="warn",
                   GARAGE_DEFAULT_ACCESS_KEY=self.key, GARAGE_DEFAULT_SECRET_KEY=self.secret,
                   GARAGE_DEFAULT_BUCKET=buckets[0])
        self.proc = subprocess.Popen(["garage", "-c", self.config, "server", "--single-node", "--default-bucket"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                import urllib.request
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        for b in buckets[1:]:
            self.cli("bucket", "create", b)
            self.cli("bucket", "allow", "--read", "--write", "--owner", b, "--key", self.key)

    def cli(self, *args: str) -> None:
        subprocess.run(["garage", "-c", self.config, *args], check=True, stdout=subprocess.DEVNULL)

    def set_clock(self, offset: str) -> None:
        # write-then-rename, then let libfaketime pick it up: a half-written file, or a clock
        # read just before the switch, would give objects the wrong LastModified
        tmp = self.clock + ".tmp"
        with open(tmp, "w") as f:
            f.write(offset + "\n")
        os.replace(tmp, self.clock)
        time.sleep(1.0)

    def client(self):
        # a new client per clock phase: the SDKs learn clock skew from responses
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.s3_port}", region_name="garage",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=64,
                                          retries={"max_attempts": 3}))

    def requests(self) -> dict[str, int]:
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/metrics",
                                     headers={"Authorization": f"Bearer {self.token}"})
        text = urllib.request.urlopen(req).read().decode()
        return {m.group(1): int(float(m.group(2)))
                for m in re.finditer(r'^api_s3_request_counter\{api_endpoint="(\w+)"\} (\S+)', text, re.M)}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def seed(garage: Garage, mongo: pymongo.MongoClient, bucket: str, n: int) -> list[str]:
    """N objects, half old; half of the old referenced. Returns the old unreferenced keys."""
    half = n // 2
    old = [f"uploads/u{i % 50}/old-{i:06d}.pdf" for i in range(half)]
    new = [f"uploads/u{i % 50}/new-{i:06d}.pdf" for i in range(n - half)]

    def put_all(client, keys):
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x" * 64), keys))

    garage.set_clock("-8d")
    put_all(garage.client(), old)
    garage.set_clock("+0")
    put_all(garage.client(), new)
    # the seed itself is checked: every "old" object must really be older than 7 days
    # (libfaketime now and then gives a write the real time): expected results follow what
    # the bucket really holds
    cutoff = time.time() - 7 * 86_400
    missed = {o["Key"] for page in garage.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="uploads/")
              for o in page.get("Contents", []) if "/old-" in o["Key"] and o["LastModified"].timestamp() > cutoff}
    if missed:
        print(f"  seeding {bucket}: {len(missed)} old objects missed the fake clock (kept out of the expected results)",
              file=sys.stderr)
    docs = mongo[f"bench_{bucket}".replace("-", "_")]["documents"]
    docs.drop()
    docs.create_index("minio_key")
    referenced = old[::2]
    for i in range(0, len(referenced), 10_000):
        docs.insert_many([{"minio_key": k} for k in referenced[i:i + 10_000]])
    return [k for k in old[1::2] if k not in missed]


def floor(garage: Garage, bucket: str, keys: list[str]) -> float:
    client = garage.client()
    started = time.perf_counter()
    for i in range(0, len(keys), 1000):
        out = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        assert not out.get("Errors"), out["Errors"][:3]
    return time.perf_counter() - started


def janitor(garage: Garage, mongo_uri: str, bucket: str, workdir: str, inflight: int = 8) -> tuple[float, int, str]:
    env = {
        "PATH": os.environ["PATH"],
        "S3_ENDPOINT": f"http://127.0.0.1:{garage.s3_port}", "S3_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": garage.key, "AWS_SECRET_ACCESS_KEY": garage.secret, "AWS_REGION": "garage",
        "MONGODB_URI": mongo_uri, "MONGODB_DATABASE": f"bench_{bucket}".replace("-", "_"),
        "FILES_TTL_DAYS": "7", "JANITOR_MAX_DELETE_FRACTION": "1", "JANITOR_MAX_DELETE_COUNT": "100000000",
        "JANITOR_AUDIT_LOG": os.path.join(workdir, "audit.jsonl"), "JANITOR_LOG_FORMAT": "json",
        "JANITOR_BACKEND_TIMEOUT_SECONDS": "30", "JANITOR_S3_MAX_INFLIGHT": str(inflight),
    }
    return sweep_once("s3", env, workdir)


def rclone_config(garage: Garage, workdir: str) -> tuple[str, dict[str, str]]:
    """An rclone config file naming the Garage `garage`, and the environment to run it in."""
    conf = os.path.join(workdir, "rclone.conf")
    with open(conf, "w") as f:
        f.write(f"[garage]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:{garage.s3_port}\n"
                f"region = garage\naccess_key_id = {garage.key}\nsecret_access_key = {garage.secret}\n"
                "force_path_style = true\nlist_version = 2\nno_check_bucket = true\n")
    return conf, {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


def rclone(garage: Garage, bucket: str, workdir: str) -> float:
    conf, env = rclone_config(garage, workdir)
    started = time.perf_counter()
    subprocess.run(["rclone", "--config", conf, "delete", f"garage:{bucket}", "--min-age", "7d",
                    "--use-server-modtime", "--checkers", "32", "-q"], env=env, check=True)
    return time.perf_counter() - started


def mongo_commands(mongo: pymongo.MongoClient) -> dict[str, int]:
    """Commands the server has run, by name (serverStatus), without our own serverStatus."""
    cmds = mongo.admin.command("serverStatus")["metrics"]["commands"]
    return {k: v["total"] for k, v in cmds.items() if isinstance(v, dict) and "total" in v and k != "serverStatus"}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--mongodb-uri", required=True)
    ap.add_argument("--skip-rclone", action="store_true", help="the slow peer (one DELETE per object)")
    ap.add_argument("--skip-inflight-1", action="store_true",
                    help="no run at JANITOR_S3_MAX_INFLIGHT=1 (a bucket less to seed: 300k objects take ~13 min)")
    args = ap.parse_args()
    n = args.objects
    buckets = ["bench-floor", "bench-janitor", "bench-small"]
    if not args.skip_inflight_1:
        buckets.insert(2, "bench-janitor1")
    if not args.skip_rclone:
        buckets.insert(3, "bench-rclone")
    garage = Garage(buckets)
    mongo = pymongo.MongoClient(args.mongodb_uri)
    workdir = tempfile.mkdtemp(prefix="janitor-bench-s3-")
    try:
        t = time.perf_counter()
        small_orphans = seed(garage, mongo, "bench-small", n // 10)
        orphans = {b: seed(garage, mongo, b, n) for b in buckets if b != "bench-small"}
        seeding = time.perf_counter() - t
        seeded = len(orphans) * n + n // 10
        print(f"seeded {seeded:,} objects in {seeding:.0f} s ({seeded / seeding:.0f}/s, 32 concurrent PUTs)",
              file=sys.stderr)

        _, rss_small, _ = janitor(garage, args.mongodb_uri, "bench-small", workdir)

        before = garage.requests()
        floor_s = floor(garage, "bench-floor", orphans["bench-floor"])
        floor_req = delta(garage.requests(), before)

        before, mongo_before = garage.requests(), mongo_commands(mongo)
        jan_s, rss, summary = janitor(garage, args.mongodb_uri, "bench-janitor", workdir)
        jan_req = delta(garage.requests(), before)
        jan_mongo = delta(mongo_commands(mongo), mongo_before)

        jan1_s, summary1, jan1_req = None, None, {}
        if not args.skip_inflight_1:
            before = garage.requests()
            jan1_s, _, summary1 = janitor(garage, args.mongodb_uri, "bench-janitor1", workdir, inflight=1)
            jan1_req = delta(garage.requests(), before)

        rclone_s, rclone_req = None, {}
        if not args.skip_rclone:
            before = garage.requests()
            rclone_s = rclone(garage, "bench-rclone", workdir)
            rclone_req = delta(garage.requests(), before)

        d = len(orphans["bench-janitor"])
        n_old = n // 2
        budget = -(-n // 1000) + -(-d // 1000)
        ref_budget = -(-n_old // 1000)
        print(f"\nS3 orphan sweep, {n:,} objects ({n_old:,} older than 7 d, {d:,} of those unreferenced)\n")
        print(f"{'contender':<52} {'wall s':>8} {'S3 requests':>12}  by endpoint")
        rows = [
            ("floor: sequential DeleteObjects, known keys", floor_s, floor_req),
            ("janitor sweep (list + references + delete)", jan_s, jan_req),
        ]
        if jan1_s is not None:
            rows.append(("janitor sweep, JANITOR_S3_MAX_INFLIGHT=1", jan1_s, jan1_req))
        if rclone_s is not None:
            rows.append(("rclone delete --min-age 7d --checkers 32 (age only)", rclone_s, rclone_req))
        print(f"seeding: {seeded:,} objects in {seeding:.0f} s ({seeded / seeding:.0f} PUT/s, 32 concurrent)")
        for name, secs, req in rows:
            print(f"{name:<52} {secs:>8.2f} {sum(req.values()):>12,}  {req}")
        print(f"\njanitor / floor: {jan_s / floor_s:.2f}x"
              + (f"   janitor / janitor at 1 in flight: {jan_s / jan1_s:.2f}x" if jan1_s else "")
              + (f"   janitor / rclone: {jan_s / rclone_s:.2f}x" if rclone_s else ""))
        if summary1:
            print(f"janitor at 1 in flight: {summary1}")
        print(f"janitor S3 requests {sum(jan_req.values())} vs budget 1.05 x {budget} = {1.05 * budget:.0f} "
              f"(LIST ceil(N/1000) + DeleteObjects ceil(D/1000))")
        # find: the $in reference checks, plus one cursor for the dangling-reference merge;
        # getMore: that cursor's further pages (documents streamed, not queries per key)
        print(f"janitor MongoDB commands (counted by the server): {jan_mongo}; "
              f"find {jan_mongo.get('find', 0)} vs budget ceil(N_old/1000) = {ref_budget} reference queries "
              f"+ 1 dangling-reference cursor")
        print(f"janitor: {summary}")
        print(f"janitor peak RSS: {rss / 1024:.1f} MB at {n:,} objects, {rss_small / 1024:.1f} MB at {n // 10:,}")
        remaining = {o["Key"]: o["LastModified"] for page in
                     garage.client().get_paginator("list_objects_v2").paginate(Bucket="bench-janitor")
                     for o in page.get("Contents", [])}
        left = len(remaining)
        docs = mongo["bench_bench_janitor"]["documents"]
        for key in orphans["bench-janitor"]:
            if key in remaining:
                print(f"  orphan not deleted: {key} LastModified {remaining[key]} "
                      f"referenced={docs.count_documents({'minio_key': key})}")
        print(f"objects left in the janitor's bucket: {left:,} (expected {n - d:,}); small run deleted "
              f"{len(small_orphans):,} expected")
    finally:
        garage.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
