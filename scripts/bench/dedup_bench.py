#!/usr/bin/env python3
"""Dedup hashing benchmark: POST /api/dedup/check vs sha256sum vs the seed's approach.

One file of N MiB (default 1024) in a temp dir, read once beforehand so every contender
reads it from the page cache:

  sha256sum  coreutils over the file
  janitor    `curl -T file` to POST /api/dedup/check on loopback (a running `janitor run`);
             its RSS is sampled every 20 ms during the upload, against its RSS before
  seed       Python: read the whole file into memory, hashlib.sha256 over it (peak RSS
             from /usr/bin/time)

All three must agree on the digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import JANITOR, free_port
TOKEN = "bench-token-0123456789"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--mongodb-uri", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="janitor-bench-dedup-")
    path = os.path.join(work, "file.bin")
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(args.mib):
            f.write(block[i % 256:] + block[:i % 256])
    size = args.mib << 20
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # page cache

    t = time.perf_counter()
    digest = subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]
    t_sum = time.perf_counter() - t

    port = free_port()
    env = {"PATH": os.environ["PATH"], "MONGODB_URI": args.mongodb_uri, "MONGODB_DATABASE": "bench_dedup",
           "JANITOR_ADMIN_ADDR": f"127.0.0.1:{port}", "JANITOR_ADMIN_TOKEN": TOKEN,
           "JANITOR_AUDIT_LOG": os.path.join(work, "audit.jsonl"), "JANITOR_LOG_FORMAT": "json"}
    daemon = subprocess.Popen([JANITOR, "run"], env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except Exception:
                if time.time() > deadline:
                    raise SystemExit("janitor did not start")
                time.sleep(0.05)
        time.sleep(0.5)
        before = rss_kib(daemon.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(daemon.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t = time.perf_counter()
        out = subprocess.run(["curl", "-sS", "-X", "POST", "-T", path, "-H", "Content-Type: application/octet-stream",
                              "-H", f"Authorization: Bearer {TOKEN}",
                              f"http://127.0.0.1:{port}/api/dedup/check?user_id=bench"],
                             capture_output=True, text=True, check=True).stdout
        t_janitor = time.perf_counter() - t
        done.set()
        sampler.join()
        answer = json.loads(out)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)

    seed = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c",
                           "import hashlib,sys,time; t=time.perf_counter(); d=open(sys.argv[1],'rb').read(); "
                           "h=hashlib.sha256(d).hexdigest(); print(h, time.perf_counter()-t)", path],
                          capture_output=True, text=True, check=True)
    seed_digest, t_seed = seed.stdout.split()
    seed_rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", seed.stderr).group(1))
    shutil.rmtree(work, ignore_errors=True)

    if not (answer["sha256"] == digest == seed_digest and answer["size"] == size):
        raise SystemExit(f"digests differ: janitor {answer}, sha256sum {digest}, seed {seed_digest}")
    mbps = lambda secs: size / secs / 1e6  # noqa: E731
    print(f"\n{args.mib} MiB, digest {digest[:16]}…\n")
    print("| contender | seconds | MB/s | memory |\n|---|---|---|---|")
    print(f"| sha256sum | {t_sum:.2f} | {mbps(t_sum):.0f} | - |")
    print(f"| janitor POST /api/dedup/check (curl, loopback) | {t_janitor:.2f} | {mbps(t_janitor):.0f} | "
          f"+{(peak[0] - before) / 1024:.1f} MB over {before / 1024:.1f} MB |")
    print(f"| seed: Python read() + hashlib | {float(t_seed):.2f} | {mbps(float(t_seed)):.0f} | peak {seed_rss / 1024:.0f} MB |")
    print(f"\njanitor throughput = {t_sum / t_janitor * 100:.0f}% of sha256sum's (goal >= 90%), "
          f"extra RSS {(peak[0] - before) / 1024:.1f} MB (goal <= 16 MB)")


if __name__ == "__main__":
    main()
