#!/usr/bin/env python3
"""Fault-injecting S3 proxy for the integration tests (Python 3.11 standard library only).

It sits between the janitor (aws-sdk-s3, path-style, SigV4) and a real S3 server (Garage),
forwards every request and injects faults at the rates the test sets:

  drop            read the request, then close the connection without answering
  slow            wait ``slow_ms`` (default 2000), then forward as usual (a client with a
                  shorter timeout sees a timeout; the server still gets the request)
  slowdown_503    answer 503 with an S3 ``<Error><Code>SlowDown</Code>...`` body, not forwarded
  error_200       answer 200 with the same ``<Error>`` body, not forwarded (S3 does this on
                  DeleteObjects, CopyObject and CompleteMultipartUpload: aws-sdk-rust#873)
  per_key_error   DeleteObjects only: withhold a random subset of the keys (``per_key_fraction``
                  of them, at least one), forward the request without them (re-signed with
                  SigV4, its checksum headers recomputed) so the server really keeps them, and
                  answer the server's ``<DeleteResult>`` plus one ``<Error>`` per withheld key
                  (its code drawn from ``per_key_codes``)

Every request whose op is in ``ops`` gets one random draw u in [0, 1); the faults are tried in
the fixed order above, each owning a slice of [0, 1) as wide as its probability: u < drop is a
drop, u < drop + slow is slow, and so on (so the probabilities must add up to at most 1). A
per_key_error drawn for a request that is not a DeleteObjects passes it through unchanged.

Ops: ``delete_objects`` (POST /bucket?delete), ``list`` (GET /bucket), ``head`` (HEAD, bucket
or object), ``get`` (GET /bucket/key), ``put`` (PUT /bucket/key, parts and copies included),
``delete`` (DELETE), ``other`` (anything else), or ``all``.

Control API, on the same port (bucket names cannot contain ``_``, so no clash):

  POST /__faults   JSON settings, replacing the current ones ({} turns every fault off);
                   answers the settings in force. Keys (all optional):
                     drop, slow, slowdown_503, error_200, per_key_error   probabilities 0..1
                     ops               list of ops (default ["delete_objects"])
                     slow_ms           delay of ``slow`` (default 2000)
                     per_key_fraction  fraction of a request's keys withheld (default 0.3)
                     per_key_codes     codes of per-key errors (default SlowDown, InternalError)
                     per_key_sticky    a key withheld once is withheld on every later request
                                       (a permanent failure; default false)
                     latency_ms        extra delay of every matching request, fault or not
                                       (default 0; makes concurrency visible in the stats)
                     limit             at most this many faults from now on, then none
                                       (default null: no limit)
                   An unknown key or a bad value answers 400 and changes nothing.
  GET  /__faults   the settings in force
  GET  /__stats    JSON counters: requests by op, faults by kind, keys withheld (count and
                   list), DeleteObjects requests and keys, DeleteObjects in flight now and the
                   most seen at once, upstream errors, re-signed requests the server refused,
                   client connections accepted (keep-alive: fewer than requests), and requests
                   whose own signature or checksum the proxy could not reproduce (should be 0)
  DELETE /__stats  answers the counters and resets them (the in-flight maximum restarts from
                   the number in flight now)

Usage:
  s3_fault_proxy.py --upstream http://127.0.0.1:3900 --access-key K --secret-key S
                    [--region garage] [--host 127.0.0.1] [--port 0] [--seed N] [--log-headers]

Prints exactly one line ``listening 127.0.0.1:PORT`` on stdout once it accepts connections;
everything else goes to stderr. SIGTERM / SIGINT stop it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from typing import Any

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
FAULTS = ("drop", "slow", "slowdown_503", "error_200", "per_key_error")
OPS = ("delete_objects", "list", "head", "get", "put", "delete", "other")
DEFAULTS: dict[str, Any] = {
    "drop": 0.0,
    "slow": 0.0,
    "slowdown_503": 0.0,
    "error_200": 0.0,
    "per_key_error": 0.0,
    "ops": ["delete_objects"],
    "slow_ms": 2000,
    "per_key_fraction": 0.3,
    "per_key_codes": ["SlowDown", "InternalError"],
    "per_key_sticky": False,
    "latency_ms": 0,
    "limit": None,
}
ERROR_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "AccessDenied": "Access Denied",
    "ServiceUnavailable": "Please reduce your request rate.",
}
# Not forwarded: they describe one hop only.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

log_lock = threading.Lock()


def log(msg: str) -> None:
    with log_lock:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} s3-fault-proxy: {msg}\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Checksums


def _crc_table(poly: int, bits: int) -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c & ((1 << bits) - 1))
    return table


_CRC32C = _crc_table(0x82F63B78, 32)
_CRC64NVME = _crc_table(0x9A6C9329AC4BC9B5, 64)


def _crc_reflected(data: bytes, table: list[int], bits: int) -> int:
    mask = (1 << bits) - 1
    c = mask
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ mask


def checksum(algorithm: str, data: bytes) -> str:
    """The base64 value of an ``x-amz-checksum-<algorithm>`` header."""
    if algorithm == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif algorithm == "crc32c":
        raw = _crc_reflected(data, _CRC32C, 32).to_bytes(4, "big")
    elif algorithm == "crc64nvme":
        raw = _crc_reflected(data, _CRC64NVME, 64).to_bytes(8, "big")
    elif algorithm in ("sha1", "sha256"):
        raw = hashlib.new(algorithm, data).digest()
    else:
        raise ValueError(f"unknown checksum algorithm {algorithm}")
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# SigV4


def _uri_encode(s: str, keep_slash: bool = False) -> str:
    return urllib.parse.quote(s, safe="-_.~/" if keep_slash else "-_.~")


def canonical_uri(raw_path: str) -> str:
    # S3: each segment encoded once (the SDK sends it encoded that way already).
    return "/".join(_uri_encode(urllib.parse.unquote(seg)) for seg in raw_path.split("/")) or "/"


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append(
            (
                _uri_encode(urllib.parse.unquote_plus(k)),
                _uri_encode(urllib.parse.unquote_plus(v)),
            )
        )
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]+)"
)


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


def sigv4_signature(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    signed: list[str],
    payload_hash: str,
    amz_date: str,
    scope: str,
    secret: str,
) -> str:
    canon_headers = ""
    for name in signed:
        value = header_value(headers, name) or ""
        canon_headers += f"{name}:{' '.join(value.split())}\n"
    canonical = "\n".join(
        [
            method,
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canon_headers,
            ";".join(signed),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    date, region, service, terminal = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, terminal):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload and the trailers of an ``aws-chunked`` body (signed chunks or not)."""
    out = bytearray()
    trailers: dict[str, str] = {}
    pos = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            break
        out += body[pos : pos + size]
        pos += size + 2  # the chunk's CRLF
    for line in body[pos:].split(b"\r\n"):
        if b":" in line:
            k, _, v = line.decode().partition(":")
            trailers[k.strip().lower()] = v.strip()
    return bytes(out), trailers


# ---------------------------------------------------------------------------------------------
# Settings and counters


class BadSettings(ValueError):
    pass


def parse_settings(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadSettings("settings must be a JSON object")
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise BadSettings(f"unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = json.loads(json.dumps(DEFAULTS))
    s.update(raw)
    for f in FAULTS:
        p = s[f]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise BadSettings(f"{f} must be a probability in 0..1, got {p!r}")
        s[f] = float(p)
    total = sum(s[f] for f in FAULTS)
    if total > 1 + 1e-9:
        raise BadSettings(f"fault probabilities add up to {total} > 1 (one draw per request)")
    ops = s["ops"]
    if isinstance(ops, str):
        ops = [ops]
    if not isinstance(ops, list) or not all(o in OPS or o == "all" for o in ops):
        raise BadSettings(f"ops must be a list among {list(OPS) + ['all']}, got {ops!r}")
    s["ops"] = ops
    for k in ("slow_ms", "latency_ms"):
        if isinstance(s[k], bool) or not isinstance(s[k], (int, float)) or s[k] < 0:
            raise BadSettings(f"{k} must be a number >= 0")
    f = s["per_key_fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise BadSettings("per_key_fraction must be in (0, 1]")
    codes = s["per_key_codes"]
    if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
        raise BadSettings("per_key_codes must be a non-empty list of strings")
    if not isinstance(s["per_key_sticky"], bool):
        raise BadSettings("per_key_sticky must be true or false")
    lim = s["limit"]
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 0):
        raise BadSettings("limit must be null or an integer >= 0")
    return s


class State:
    def __init__(self, seed: int | None) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.settings = parse_settings({})
        self.injected_since_settings = 0
        self.sticky: set[str] = set()
        self.in_flight = 0
        self.reset_counters()

    def reset_counters(self) -> None:
        self.requests = {op: 0 for op in OPS}
        self.faults = {f: 0 for f in FAULTS}
        self.withheld: list[str] = []
        self.delete_objects_keys = 0
        self.max_in_flight = getattr(self, "in_flight", 0)
        self.upstream_errors = 0
        self.resign_refused = 0
        self.signature_mismatches = 0
        self.checksum_mismatches = 0
        self.connections = 0

    def set_settings(self, settings: dict[str, Any]) -> None:
        with self.lock:
            self.settings = settings
            self.injected_since_settings = 0
            self.sticky = set()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()),
                "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()),
                "keys_withheld": len(self.withheld),
                "withheld_keys": list(self.withheld),
                "delete_objects_keys": self.delete_objects_keys,
                "delete_objects_in_flight": self.in_flight,
                "delete_objects_max_in_flight": self.max_in_flight,
                "upstream_errors": self.upstream_errors,
                "resign_refused": self.resign_refused,
                "client_signature_mismatches": self.signature_mismatches,
                "client_checksum_mismatches": self.checksum_mismatches,
                "client_connections": self.connections,
                "settings": self.settings,
            }

    def draw(self, op: str) -> tuple[str | None, dict[str, Any]]:
        """Counts the request; the fault it gets (None: none) and the settings in force."""
        with self.lock:
            s = self.settings
            self.requests[op] += 1
            if not ("all" in s["ops"] or op in s["ops"]):
                return None, s
            u = self.rng.random()
            if s["limit"] is not None and self.injected_since_settings >= s["limit"]:
                return None, s
            edge = 0.0
            for f in FAULTS:
                edge += s[f]
                if u < edge:
                    if f == "per_key_error" and op != "delete_objects":
                        return None, s
                    self.injected_since_settings += 1
                    self.faults[f] += 1
                    return f, s
            return None, s

    def pick_withheld(self, keys: list[str], s: dict[str, Any]) -> list[str]:
        with self.lock:
            if not keys:
                return []
            n = max(1, round(len(keys) * s["per_key_fraction"]))
            chosen = set(self.rng.sample(keys, min(n, len(keys))))
            if s["per_key_sticky"]:
                chosen |= self.sticky & set(keys)
                self.sticky |= chosen
            withheld = [k for k in keys if k in chosen]
            self.withheld.extend(withheld)
            return withheld

    def pick_code(self, s: dict[str, Any]) -> str:
        with self.lock:
            return self.rng.choice(s["per_key_codes"])

    def enter_delete(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave_delete(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def count(self, field: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + n)


# ---------------------------------------------------------------------------------------------
# The proxy


def classify(method: str, path: str, query: str) -> str:
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    params = {p.split("=", 1)[0] for p in query.split("&") if p}
    if method == "POST" and "delete" in params and not has_key:
        return "delete_objects"
    if method == "GET":
        return "get" if has_key else "list"
    if method == "HEAD":
        return "head"
    if method == "PUT" and has_key:
        return "put"
    if method == "DELETE":
        return "delete"
    return "other"


def parse_delete(headers: list[tuple[str, str]], body: bytes):
    """A DeleteObjects body: (root, namespace, Object elements, keys, was aws-chunked)."""
    payload, encoded = body, False
    try:
        if "aws-chunked" in (header_value(headers, "content-encoding") or ""):
            payload, _ = decode_aws_chunked(body)
            encoded = True
        root = ET.fromstring(payload)
    except (ValueError, ET.ParseError):
        return None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    objects = root.findall(f"{ns}Object")
    keys = [o.findtext(f"{ns}Key") or "" for o in objects]
    return root, ns, objects, keys, encoded


def xml_bytes(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode").encode()


def error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    e = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{e(code)}</Code><Message>{e(message)}</Message>"
        f"<Resource>{e(resource)}</Resource><RequestId>{request_id}</RequestId>"
        "<HostId>s3-fault-proxy</HostId></Error>"
    ).encode()


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, args) -> None:
        super().__init__(addr, Handler)
        up = urllib.parse.urlsplit(args.upstream)
        if up.scheme != "http" or not up.hostname:
            raise SystemExit("--upstream must be http://host:port")
        self.upstream = (up.hostname, up.port or 80)
        self.access_key = args.access_key
        self.secret_key = args.secret_key
        self.region = args.region
        self.log_headers = args.log_headers
        self.state = State(args.seed)
        self.request_ids = iter(range(1, 1 << 62))
        self.id_lock = threading.Lock()

    def next_id(self) -> str:
        with self.id_lock:
            return f"FAULTPROXY{next(self.request_ids):08d}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy
    timeout = 300  # an idle keep-alive connection is closed after this
    upstream_conn: http.client.HTTPConnection | None = None

    # quiet the default per-request line; we log our own
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        log(f"client {self.client_address[0]}:{self.client_address[1]}: " + (format % args))

    def setup(self) -> None:
        super().setup()
        self.server.state.count("connections")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.upstream_conn is not None:
                self.upstream_conn.close()

    def do_GET(self) -> None:
        self.handle_any()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    # -- request plumbing --------------------------------------------------------------------

    def read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def respond(
        self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.send_response_only(status)
        sent_type = False
        for k, v in headers or []:
            if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                continue
            sent_type |= k.lower() == "content-type"
            self.send_header(k, v)
        if not sent_type and body:
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()

    def respond_json(self, status: int, obj: Any) -> None:
        self.respond(status, json.dumps(obj, indent=1).encode(), [("Content-Type", "application/json")])

    # -- control API -------------------------------------------------------------------------

    def control(self, path: str, body: bytes) -> None:
        state = self.server.state
        if path == "/__faults" and self.command == "POST":
            try:
                settings = parse_settings(json.loads(body or b"{}"))
            except (ValueError, BadSettings) as e:
                return self.respond_json(400, {"error": str(e)})
            state.set_settings(settings)
            log(f"faults set: {json.dumps(settings)}")
            return self.respond_json(200, settings)
        if path == "/__faults" and self.command == "GET":
            return self.respond_json(200, state.settings)
        if path == "/__stats" and self.command == "GET":
            return self.respond_json(200, state.stats())
        if path == "/__stats" and self.command == "DELETE":
            stats = state.stats()
            with state.lock:
                state.reset_counters()
            return self.respond_json(200, stats)
        return self.respond_json(404, {"error": f"no control endpoint {self.command} {path}"})

    # -- the proxy ---------------------------------------------------------------------------

    def handle_any(self) -> None:
        t0 = time.monotonic()
        raw_path, _, raw_query = self.path.partition("?")
        body = self.read_body()
        if raw_path.startswith("/__"):
            return self.control(raw_path, body)
        headers = list(self.headers.items())
        op = classify(self.command, raw_path, raw_query)
        state = self.server.state
        if self.server.log_headers:
            log(
                f"{op} {self.command} {self.path} body {len(body)} B headers:\n"
                + "\n".join(f"    {k}: {v}" for k, v in headers)
                + (f"\n    body: {body[:600]!r}" if op == "delete_objects" else "")
            )
        fault, s = state.draw(op)
        if op == "delete_objects":
            parsed = parse_delete(headers, body)
            state.count("delete_objects_keys", len(parsed[3]) if parsed else 0)
            state.enter_delete()
        status: int | str = "-"
        try:
            if s["latency_ms"] and ("all" in s["ops"] or op in s["ops"]):
                time.sleep(s["latency_ms"] / 1000)
            status = self.apply(op, fault, s, raw_path, raw_query, headers, body)
        except (BrokenPipeError, ConnectionResetError) as e:
            status = f"client gone ({e.__class__.__name__})"
            self.close_connection = True
        finally:
            if op == "delete_objects":
                state.leave_delete()
            log(
                f"{op} {self.command} {self.path[:120]} -> {status}"
                f"{' [' + fault + ']' if fault else ''} {1000 * (time.monotonic() - t0):.0f} ms"
            )

    def apply(self, op, fault, s, raw_path, raw_query, headers, body) -> int | str:
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return "dropped"
        if fault == "slow":
            time.sleep(s["slow_ms"] / 1000)
        if fault in ("slowdown_503", "error_200"):
            rid = self.server.next_id()
            xml = error_xml("SlowDown", ERROR_MESSAGES["SlowDown"], raw_path, rid)
            status = 503 if fault == "slowdown_503" else 200
            self.respond(status, xml, [("x-amz-request-id", rid), ("Content-Type", "application/xml")])
            return status
        if op == "delete_objects":
            return self.delete_objects(fault, s, raw_path, raw_query, headers, body)
        return self.forward(self.command, self.path, headers, body)

    def delete_objects(self, fault, s, raw_path, raw_query, headers, body) -> int | str:
        state = self.server.state
        parsed = parse_delete(headers, body)
        if parsed is None:
            return self.forward(self.command, self.path, headers, body)
        root, ns, objects, keys, encoded = parsed
        self.check_client_signature(raw_path, raw_query, headers, body)
        if fault != "per_key_error":
            return self.forward(self.command, self.path, headers, body)

        withheld = set(state.pick_withheld(keys, s))
        for o, k in zip(objects, keys):
            if k in withheld:
                root.remove(o)
        errors = [(k, state.pick_code(s)) for k in keys if k in withheld]
        log(f"per_key_error: withholding {len(withheld)} of {len(keys)} keys")
        if len(withheld) < len(keys):
            if ns:
                ET.register_namespace("", ns[1:-1])
            new_payload = xml_bytes(root)
            new_headers = self.resign(raw_path, raw_query, headers, new_payload, encoded)
            resp = self.call_upstream(self.command, self.path, new_headers, new_payload)
            if resp is None:
                return self.upstream_failed(raw_path)
            status, resp_headers, resp_body = resp
            if status != 200:
                if status == 403:
                    state.count("resign_refused")
                    log(f"upstream refused the re-signed DeleteObjects: {resp_body[:300]!r}")
                self.respond(status, resp_body, resp_headers)
                return status
            try:
                result = ET.fromstring(resp_body)
            except ET.ParseError:
                self.respond(status, resp_body, resp_headers)
                return status
        else:
            # nothing left to delete: S3 refuses an empty <Delete>, so answer alone
            result = ET.Element(f"{{{S3_NS}}}DeleteResult")
            resp_headers = [("Content-Type", "application/xml"), ("x-amz-request-id", self.server.next_id())]
        rns = result.tag[: result.tag.index("}") + 1] if result.tag.startswith("{") else ""
        for key, code in errors:
            err = ET.SubElement(result, f"{rns}Error")
            ET.SubElement(err, f"{rns}Key").text = key
            ET.SubElement(err, f"{rns}Code").text = code
            ET.SubElement(err, f"{rns}Message").text = ERROR_MESSAGES.get(code, code)
        if rns:
            ET.register_namespace("", rns[1:-1])
        out = xml_bytes(result)
        self.respond(200, out, resp_headers)
        return 200

    def check_client_signature(self, raw_path, raw_query, headers, body) -> None:
        """Recomputes the client's own checksums and signature: a mismatch means ours differ."""
        for k, v in headers:
            lk = k.lower()
            if lk.startswith("x-amz-checksum-") and lk != "x-amz-checksum-type":
                alg = lk[len("x-amz-checksum-") :]
                try:
                    ok = checksum(alg, body) == v
                except ValueError:
                    continue
            elif lk == "content-md5":
                ok = base64.b64encode(hashlib.md5(body).digest()).decode() == v
            else:
                continue
            if not ok:
                self.server.state.count("checksum_mismatches")
                log(f"WARNING: the client's {k} differs from ours")
        auth = AUTH_RE.match(header_value(headers, "authorization") or "")
        if not auth:
            return
        payload_hash = header_value(headers, "x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
        sig = sigv4_signature(
            self.command,
            raw_path,
            raw_query,
            headers,
            auth["signed"].split(";"),
            payload_hash,
            header_value(headers, "x-amz-date") or "",
            auth["cred"].split("/", 1)[1],
            self.server.secret_key,
        )
        if sig != auth["sig"]:
            self.server.state.count("signature_mismatches")
            log("WARNING: could not reproduce the client's SigV4 signature (canonical form differs?)")

    def resign(self, raw_path, raw_query, headers, payload: bytes, encoded: bool):
        """The headers of ``payload`` sent instead: checksums, length, SigV4 redone."""
        auth = AUTH_RE.match(header_value(headers, "authorization") or "")
        signed = auth["signed"].split(";") if auth else []
        drop = {"content-length", "authorization"}
        if encoded:
            # sent decoded, with its checksum in a header instead of a trailer
            drop |= {"content-encoding", "x-amz-decoded-content-length", "x-amz-trailer"}
        trailer_alg = None
        if encoded:
            trailer = (header_value(headers, "x-amz-trailer") or "").lower()
            if trailer.startswith("x-amz-checksum-"):
                trailer_alg = trailer[len("x-amz-checksum-") :]
        new: list[tuple[str, str]] = []
        for k, v in headers:
            lk = k.lower()
            if lk in drop:
                continue
            if lk == "content-md5":
                v = base64.b64encode(hashlib.md5(payload).digest()).decode()
            elif lk.startswith("x-amz-checksum-") and lk != "x-amz-checksum-type":
                v = checksum(lk[len("x-amz-checksum-") :], payload)
            elif lk == "x-amz-content-sha256":
                if v != "UNSIGNED-PAYLOAD":
                    v = hashlib.sha256(payload).hexdigest()
            new.append((k, v))
        if trailer_alg:
            new.append((f"x-amz-checksum-{trailer_alg}", checksum(trailer_alg, payload)))
        new.append(("Content-Length", str(len(payload))))
        if not auth:
            return new
        signed = [h for h in signed if h not in drop or h == "content-length"]
        if trailer_alg and f"x-amz-checksum-{trailer_alg}" not in signed:
            signed = sorted(signed + [f"x-amz-checksum-{trailer_alg}"])
        scope = auth["cred"].split("/", 1)[1]
        if scope.split("/")[1] != self.server.region:
            log(f"note: the client signs for region {scope.split('/')[1]}, not {self.server.region}")
        payload_hash = header_value(new, "x-amz-content-sha256") or hashlib.sha256(payload).hexdigest()
        sig = sigv4_signature(
            self.command,
            raw_path,
            raw_query,
            new,
            signed,
            payload_hash,
            header_value(headers, "x-amz-date") or "",
            scope,
            self.server.secret_key,
        )
        access_key = auth["cred"].split("/", 1)[0]
        if access_key != self.server.access_key:
            log(f"note: the client signs as {access_key}, not {self.server.access_key}")
        new.append(
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                f"SignedHeaders={';'.join(signed)}, Signature={sig}",
            )
        )
        if self.server.log_headers:
            log("re-signed DeleteObjects headers:\n" + "\n".join(f"    {k}: {v}" for k, v in new))
        return new

    # -- upstream ----------------------------------------------------------------------------

    def upstream_headers(self, headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
        auth = AUTH_RE.match(header_value(headers, "authorization") or "")
        signed = set(auth["signed"].split(";")) if auth else set()
        out = []
        for k, v in headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "content-length":
                continue
            if lk == "expect" and lk not in signed:
                continue  # we already answered 100-continue ourselves
            out.append((k, v))
        if body or self.command in ("POST", "PUT") or header_value(headers, "content-length"):
            out.append(("Content-Length", str(len(body))))
        return out

    def call_upstream(self, method: str, path: str, headers, body: bytes, stream: bool = False):
        """(status, headers, body or the open response) from upstream; None if unreachable."""
        headers = self.upstream_headers(headers, body)
        for attempt in (0, 1):
            reused = self.upstream_conn is not None
            if self.upstream_conn is None:
                host, port = self.server.upstream
                self.upstream_conn = http.client.HTTPConnection(host, port, timeout=120)
            conn = self.upstream_conn
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                self.upstream_conn = None
                if reused and attempt == 0:
                    continue  # a stale keep-alive connection: once more on a fresh one
                log(f"upstream error: {e!r}")
                self.server.state.count("upstream_errors")
                return None
            except OSError as e:
                conn.close()
                self.upstream_conn = None
                log(f"upstream error: {e!r}")
                self.server.state.count("upstream_errors")
                return None
            resp_headers = resp.getheaders()
            if stream and resp.length is not None and method != "HEAD":
                return resp.status, resp_headers, resp
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.upstream_conn = None
                log(f"upstream error while reading: {e!r}")
                self.server.state.count("upstream_errors")
                return None
            if resp.will_close:
                conn.close()
                self.upstream_conn = None
            return resp.status, resp_headers, data
        return None

    def upstream_failed(self, raw_path: str) -> str:
        rid = self.server.next_id()
        xml = error_xml("BadGateway", "s3-fault-proxy: upstream unreachable", raw_path, rid)
        self.respond(502, xml, [("x-amz-request-id", rid)])
        return "502 (upstream unreachable)"

    def forward(self, method, path, headers, body) -> int | str:
        resp = self.call_upstream(method, path, headers, body, stream=True)
        if resp is None:
            return self.upstream_failed(path.partition("?")[0])
        status, resp_headers, data = resp
        if isinstance(data, bytes):
            if method == "HEAD":
                # keep the object's Content-Length; there is no body
                self.send_response_only(status)
                for k, v in resp_headers:
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                if not header_value(resp_headers, "content-length"):
                    self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
            else:
                self.respond(status, data, resp_headers)
            return status
        # a body of known length: streamed
        length = data.length
        self.send_response_only(status)
        for k, v in resp_headers:
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            while True:
                chunk = data.read(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
        except (OSError, http.client.HTTPException):
            self.upstream_conn.close()
            self.upstream_conn = None
            self.close_connection = True
            raise ConnectionResetError("upstream or client failed mid-body")
        if data.will_close:
            self.upstream_conn.close()
            self.upstream_conn = None
        self.wfile.flush()
        return status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="http://host:port of the real S3 server")
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="garage")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-headers", action="store_true", help="log every request's headers")
    args = p.parse_args()

    server = Proxy((args.host, args.port), args)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    sys.stdout.write(f"listening {host}:{port}\n")
    sys.stdout.flush()
    log(f"forwarding to {args.upstream} (seed {args.seed})")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
