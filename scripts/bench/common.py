"""What the benchmark scripts share: where the janitor is, free ports, one timed sweep."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JANITOR = os.path.join(ROOT, "target", "release", "janitor")


def services() -> dict[str, str]:
    """The test servers' variables (.services/services.env, written by scripts/services.sh)."""
    env = {}
    for line in open(os.path.join(ROOT, ".services", "services.env")):
        if "=" in line and not line.startswith("#"):
            k, v = line.strip().split("=", 1)
            env[k] = v
    return env


def wait_healthy(base: str, tries: int = 300) -> None:
    """Polls `base`/healthz (50 ms apart) until the daemon answers."""
    import urllib.request
    for _ in range(tries):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("janitor did not start")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sweep_once(resource: str, env: dict[str, str], workdir: str, nice: int = 0) -> tuple[float, int, str]:
    """`janitor sweep --once --resource R` under /usr/bin/time (and `nice -n NICE`): wall
    seconds, peak RSS (KiB), and the run's one-line summary."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "nice", "-n", str(nice), JANITOR, "sweep", "--once", "--resource", resource],
                          env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"janitor failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    lines = proc.stdout.splitlines()
    return wall, rss, lines[1].strip() if len(lines) > 1 else proc.stdout.strip()
