#!/usr/bin/env python3
"""Black-box abuse probes against a running system (`scripts/run.sh`): what a stranger, or a
user acting against others, tries first. Each probe prints `held` or `OPEN` and what it saw;
the script exits 1 if any is open. Standard library only (raw sockets, a minimal WebSocket).

    scripts/probes.py                     # against 127.0.0.1:8080 (client) and :9080 (admin)
    NEARBY_PROBE_CLIENT=127.0.0.1:8081 scripts/probes.py

Tokens are signed with the development secret (what run.sh runs with) unless NEARBY_JWT_SECRET
is set. Only loopback addresses are probed; every loop is bounded.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

CLIENT = os.environ.get("NEARBY_PROBE_CLIENT", "127.0.0.1:8080")
ADMIN = os.environ.get("NEARBY_PROBE_ADMIN", "127.0.0.1:9080")
DEV_SECRET = "nearby-dev-secret-change-me"
SECRET = os.environ.get("NEARBY_JWT_SECRET", DEV_SECRET).encode()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def addr(text):
    host, port = text.rsplit(":", 1)
    if not host.startswith("127.") and host != "localhost":
        sys.exit(f"probes: {text} is not a loopback address")
    return host, int(port)


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(claims, secret=SECRET):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def user_token(user, **extra):
    now = int(time.time())
    return token({"sub": str(user), "iat": now, "exp": now + 600, **extra})


def new_user():
    return random.randrange(10**12, 4 * 10**18)


def http(method, path, tok=None, body=None, target=CLIENT, source=None, timeout=15):
    """One request on a connection of its own: (status, headers, body)."""
    s = socket.socket()
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(addr(target))
    data = (body or "").encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: probe", "Connection: close",
             f"Content-Length: {len(data)}", "Content-Type: application/json"]
    if tok:
        lines.append(f"Authorization: Bearer {tok}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    raw = b""
    try:
        while chunk := s.recv(65536):
            raw += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n")
    status = int(parts[0].split()[1]) if parts and parts[0].startswith(b"HTTP/") else 0
    headers = {}
    for line in parts[1:]:
        k, _, v = line.decode(errors="replace").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest.decode(errors="replace")


class Ws:
    """A minimal client WebSocket (RFC 6455): masked frames out, unmasked frames in."""

    def __init__(self, tok):
        self.s = socket.create_connection(addr(CLIENT), timeout=10)
        key = b64(os.urandom(16)) + "=="
        self.s.sendall((f"GET /v1/ws?access_token={tok} HTTP/1.1\r\nHost: probe\r\n"
                        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            if not chunk:
                break
            head += chunk
        first, _, self.buf = head.partition(b"\r\n\r\n")
        self.status = int(first.split()[1]) if first.startswith(b"HTTP/") else 0
        self.refusal = self.buf.decode(errors="replace") if self.status != 101 else ""

    def send(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        else:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.s.sendall(head + mask + masked)

    def text(self, obj):
        self.send(0x1, json.dumps(obj).encode())

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frames(self, seconds):
        """Frames until `seconds` pass or the socket closes: (opcode, payload) pairs."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.s.settimeout(max(0.05, deadline - time.time()))
            try:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._read(8))[0]
                payload = self._read(n)
            except (socket.timeout, EOFError, ConnectionResetError, OSError):
                return
            yield b0 & 0x0F, payload
            if b0 & 0x0F == 0x8:
                return

    def close(self):
        self.s.close()


RESULTS = []


def probe(name):
    def wrap(fn):
        try:
            held, saw = fn()
        except Exception as e:  # a probe that cannot run is not a probe that held
            held, saw = False, f"probe failed: {e!r}"
        RESULTS.append(held)
        print(f"{'held' if held else 'OPEN'}  {name}: {saw}")
        return fn
    return wrap


def main():
    random.seed()
    status, _, _ = http("GET", "/readyz", target=ADMIN)
    if status != 200:
        sys.exit(f"probes: nothing ready at {ADMIN} (start scripts/run.sh first)")

    @probe("1. a gateway without a secret, outside development mode, refuses to start")
    def _():
        binary = os.path.join(ROOT, "target", "release", "nearby-gateway")
        if not os.path.exists(binary):
            return False, f"{binary} not built (run scripts/run.sh first)"
        env = {"PATH": os.environ.get("PATH", ""), "NEARBY_GATEWAY_LISTEN": "127.0.0.1:0",
               "NEARBY_GATEWAY_ADMIN_LISTEN": "127.0.0.1:0", "NEARBY_STARTUP_TIMEOUT": "2s"}
        p = subprocess.run([binary], env=env, capture_output=True, timeout=30)
        said = (p.stdout + p.stderr).decode(errors="replace")
        return p.returncode == 1 and "NEARBY_JWT_SECRET" in said, f"exit {p.returncode}"

    @probe("2. POST /drain without the admin token")
    def _():
        none, _, _ = http("POST", "/drain", target=ADMIN)
        wrong, _, _ = http("POST", "/drain", tok="guess", target=ADMIN)
        return none in (401, 403) and wrong in (401, 403), f"{none}, with a wrong token {wrong}"

    @probe("3. one user opens many sockets")
    def _():
        u = new_user()
        socks = [Ws(user_token(u)) for _ in range(8)]
        statuses = [w.status for w in socks]
        for w in socks:
            w.close()
        return statuses.count(101) <= 5 and 429 in statuses, f"{statuses}"

    @probe("4. a burst of 130 API calls from one user")
    def _():
        tok = user_token(new_user())
        statuses = [http("GET", "/v1/me", tok)[0] for _ in range(130)]
        return 429 in statuses, f"{statuses.count(200)} × 200, {statuses.count(429)} × 429"

    @probe("5. a flood of ping frames")
    def _():
        w = Ws(user_token(new_user()))
        for _ in range(100):
            w.send(0x9, b"x")
        codes = [struct.unpack(">H", p[:2])[0] for op, p in w.frames(5) if op == 0x8 and len(p) >= 2]
        w.close()
        return codes == [1008], f"close codes {codes}"

    @probe("6. an upload past the report budget reaches friends")
    def _():
        u = new_user()
        w = Ws(user_token(u))
        now = int(time.time() * 1000)
        for i in range(12):
            w.text({"type": "location", "lat": 37.77, "lon": -122.42, "ts": now - 20_000 + i})
        # Upload as soon as the socket refuses a report: the budget is spent (it refills one
        # report a second).
        for op, payload in w.frames(5):
            if op == 0x1 and b"rate_limited" in payload:
                break
        items = [{"lat": 37.7, "lon": -122.4, "ts": now - 100 + i} for i in range(100)]
        status, _, body = http("POST", "/v1/me/locations", user_token(u),
                               json.dumps({"locations": items}))
        w.close()
        codes = [e["code"] for e in json.loads(body).get("errors", [])] if status == 202 else []
        return codes == ["rate_limited"], f"{status}, refused {codes}"

    @probe("7. another user's history: the same answer for a user and a non-user")
    def _():
        tok = user_token(new_user())
        other = new_user()
        http("GET", "/v1/me", user_token(other))
        known, _, _ = http("GET", f"/v1/users/{other}/history", tok)
        unknown, _, _ = http("GET", f"/v1/users/{new_user()}/history", tok)
        return known == unknown == 403, f"{known} and {unknown}"

    @probe("8. a half-sent request is held open")
    def _():
        s = socket.create_connection(addr(CLIENT), timeout=30)
        s.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: probe\r\n")
        start = time.time()
        try:
            while s.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
        held_for = time.time() - start
        s.close()
        return held_for < 20, f"closed after {held_for:.1f} s"

    @probe("9. a token not valid yet (nbf an hour ahead)")
    def _():
        status, _, _ = http("GET", "/v1/me", user_token(new_user(), nbf=int(time.time()) + 3600))
        return status == 401, f"{status}"

    @probe("10. a token valid for a hundred years")
    def _():
        now = int(time.time())
        tok = token({"sub": str(new_user()), "iat": now, "exp": now + 100 * 365 * 86400})
        status, _, _ = http("GET", "/v1/me", tok)
        return status == 401, f"{status}"

    @probe("11. a token with an aud claim (as identity providers issue) is accepted")
    def _():
        status, _, _ = http("GET", "/v1/me", user_token(new_user(), aud="some-api"))
        return status == 200, f"{status}"

    @probe("12. a token signed with another secret")
    def _():
        now = int(time.time())
        tok = token({"sub": str(new_user()), "exp": now + 600}, secret=b"guessed-secret")
        status, _, _ = http("GET", "/v1/me", tok)
        return status == 401, f"{status}"

    @probe("13. a flood of new connections from one address")
    def _():
        source = f"127.0.{random.randrange(3, 250)}.{random.randrange(1, 250)}"
        statuses = [http("GET", "/v1/openapi.json", source=source)[0] for _ in range(260)]
        return 429 in statuses, f"{statuses.count(200)} × 200, {statuses.count(429)} × 429"

    @probe("14. a body sent a byte at a time")
    def _():
        s = socket.create_connection(addr(CLIENT), timeout=60)
        tok = user_token(new_user())
        s.sendall((f"POST /v1/me/locations HTTP/1.1\r\nHost: probe\r\nAuthorization: Bearer {tok}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())
        start = time.time()
        raw = b""
        try:
            while chunk := s.recv(4096):
                raw += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        status = raw.split(b" ", 2)[1].decode() if raw.startswith(b"HTTP/") else "none"
        return status == "408" and time.time() - start < 45, f"{status} after {time.time() - start:.0f} s"

    @probe("15. a token in the query of an HTTP call (it would land in access logs)")
    def _():
        status, _, _ = http("GET", f"/v1/me?access_token={user_token(new_user())}")
        return status == 401, f"{status}"

    print(f"{RESULTS.count(True)} of {len(RESULTS)} held")
    sys.exit(0 if all(RESULTS) else 1)


if __name__ == "__main__":
    main()
