"""Signing keys for the tests of token verification: an identity provider's RSA keys published as a
JWKS (a file, and a URL on loopback), HS256 secrets named by kid for rotation, and a retired key."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from semantic.auth import issue_token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private: rsa.RSAPrivateKey, kid: str, **extra) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig", **extra}


def secret_jwk(secret: str, kid: str, **extra) -> dict:
    return {"kty": "oct", "kid": kid, "alg": "HS256", "k": b64(secret.encode()), **extra}


@dataclass
class Keyring:
    """Private keys by kid (RSA keys and HS256 secrets), and the JWKS documents the servers read."""

    directory: Path
    rsa: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def add_rsa(self, kid: str) -> rsa.RSAPrivateKey:
        self.rsa[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.rsa[kid]

    def token(self, kid: str, tenant_id: str | None = "t001", role: str = "tenant", ttl_seconds: int = 3600) -> str:
        if kid in self.rsa:
            return issue_token(self.rsa[kid], tenant_id, role, ttl_seconds, kid=kid, algorithm="RS256")
        return issue_token(self.secrets[kid], tenant_id, role, ttl_seconds, kid=kid)

    def write(self, name: str, keys: list[dict]) -> Path:
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}))
        tmp.replace(path)  # a reader never sees half a file
        return path

    def jwks(self, *kids: str, retired: dict[str, float] | None = None) -> list[dict]:
        """The public JWKS entries of these kids (`retired`: kid -> its exp)."""
        retired = retired or {}
        return [(public_jwk(self.rsa[kid], kid) if kid in self.rsa else secret_jwk(self.secrets[kid], kid))
                | ({"exp": retired[kid]} if kid in retired else {}) for kid in kids]


def keyring(directory: Path) -> Keyring:
    """The keys of the secured servers: two RSA keys (one in the file, one at the URL), a current
    HS256 secret, and one retired an hour ago."""
    directory.mkdir(parents=True, exist_ok=True)
    ring = Keyring(directory)
    ring.add_rsa("idp-file")
    ring.add_rsa("idp-url")
    ring.secrets["hs-2026"] = "a-rotated-hs256-secret-that-is-long-enough"
    ring.secrets["hs-retired"] = "the-previous-hs256-secret-now-retired!!!!"
    ring.write("jwks.json", ring.jwks("idp-file", "hs-2026", "hs-retired", retired={"hs-retired": time.time() - 3600}))
    ring.write("url-jwks.json", ring.jwks("idp-url"))
    return ring


@contextmanager
def serving(path: Path) -> Iterator[str]:
    """Serve a file on loopback (as an identity provider serves its JWKS); its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
