"""The keys that API tokens are verified with: an HS256 secret, and key sets (JWKS) whose keys tokens
choose by their `kid` header, for key rotation and for RS256 tokens of an identity provider.

    SEMANTIC_API_SECRET            the HS256 secret of tokens without a `kid` (optional with a key set)
    SEMANTIC_JWKS_FILE             a JWKS file: RSA or EC public keys (RS256, ES256) and HS256 secrets
                                   (`"kty": "oct"`), each with its `kid`
    SEMANTIC_JWKS_URL              an identity provider's JWKS URL (https://.../.well-known/jwks.json)
    SEMANTIC_JWKS_REFRESH_SECONDS  how often a key set is read again (default 300)

Rotation: publish the new key beside the old one (with its own `kid`), sign new tokens with it, and
remove the old key once the tokens signed with it have expired. A key may carry `exp` (seconds since
1970, as a token's): after it, tokens naming that key are refused, so a key can be retired at a set
time. A key set is read again every refresh interval, and at once (at most every 30 seconds) when a
token names a `kid` it does not hold, so a rotated key is picked up without a restart; a read that
fails keeps the keys already held, and says so in the log.

A key set is checked whole at start, and the server refuses to start on any key it cannot use,
naming the setting, the key's index and its kid: PyJWT's own `PyJWKSet` skips such keys silently.
Private keys are refused: the servers only verify. Each key is verified with the one algorithm it
declares (or its type's default), so a token cannot choose how it is checked (no `none`, and no RSA
public key used as an HMAC secret).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt

ALGORITHMS = {"oct": ("HS256", "HS384", "HS512"), "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
              "EC": ("ES256", "ES384", "ES512")}
REQUIRED = {"oct": ("k",), "RSA": ("n", "e"), "EC": ("crv", "x", "y")}
BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
PRIVATE = ("d", "p", "q", "dp", "dq", "qi")
DEFAULT_REFRESH_SECONDS = 300
UNKNOWN_KID_REFRESH_SECONDS = 30  # a token naming an unknown kid reads the key set again at most this often
log = logging.getLogger(__name__)


class KeyRefused(Exception):
    """A token's key cannot be used: unknown kid, retired key, no secret for a token without kid."""


@dataclass(frozen=True)
class Key:
    kid: str | None
    algorithm: str
    key: object  # what PyJWT verifies with: a secret or a public key
    expires: float | None = None  # the JWK's exp: tokens naming this key are refused after it


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_jwks(text: str | bytes, where: str) -> dict[str, Key]:
    """The usable keys of a JWKS, by kid; ValueError naming `where`, the key's index and its kid."""
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f'{where}: expected a JWKS, a JSON object with a "keys" list')
    keys: dict[str, Key] = {}
    for i, entry in enumerate(document["keys"]):
        at = f"{where}: keys[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: expected a JSON object (a JWK)")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key: not for signatures
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f'{at}: no "kid"; each key needs one, as tokens name their key by it')
        at = f"{at} (kid {kid!r})"
        if kid in keys:
            raise ValueError(f"{at}: a second key with this kid")
        kty = entry.get("kty")
        if kty not in ALGORITHMS:
            raise ValueError(f"{at}: kty {kty!r} is not supported (RSA, EC or oct)")
        algorithm = entry.get("alg", ALGORITHMS[kty][0])
        if algorithm not in ALGORITHMS[kty]:
            raise ValueError(f"{at}: alg {algorithm!r} is not accepted for a {kty} key ({', '.join(ALGORITHMS[kty])})")
        missing = [name for name in REQUIRED[kty] if not isinstance(entry.get(name), str) or not entry[name]]
        if missing:
            raise ValueError(f"{at}: a {kty} key needs {', '.join(repr(m) for m in missing)}")
        garbled = [name for name in REQUIRED[kty] if name != "crv" and not BASE64URL.fullmatch(entry[name])]
        if garbled:  # PyJWT decodes base64url leniently: a garbled key would become another key
            raise ValueError(f"{at}: {', '.join(repr(g) for g in garbled)} is not base64url (RFC 7518)")
        if kty != "oct" and any(name in entry for name in PRIVATE):
            raise ValueError(f"{at}: holds a private key; give the servers the public key only (drop "
                             f"{', '.join(repr(n) for n in PRIVATE if n in entry)})")
        expires = entry.get("exp")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
            raise ValueError(f"{at}: exp must be a number of seconds since 1970 (when the key is retired)")
        try:
            parsed = jwt.PyJWK(entry, algorithm)
        except Exception as exc:  # PyJWT's and cryptography's errors for a malformed key
            raise ValueError(f"{at}: not a usable {kty} key ({type(exc).__name__}: {str(exc)[:160]})") from None
        keys[kid] = Key(kid, algorithm, parsed.key, None if expires is None else float(expires))
    if not keys:
        raise ValueError(f"{where}: the key set holds no signing key")
    return keys


@dataclass
class JwksSource:
    """One configured key set (a file or a URL), read again when stale."""

    setting: str  # SEMANTIC_JWKS_FILE or SEMANTIC_JWKS_URL, for messages
    location: str
    read: Callable[[], bytes]
    refresh_seconds: float
    keys: dict[str, Key] = field(default_factory=dict)
    read_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def where(self) -> str:
        return f"{self.setting} ({self.location})"

    def load(self) -> dict[str, Key]:
        """Read and check the key set; ValueError naming the setting."""
        try:
            raw = self.read()
        except (OSError, httpx.HTTPError) as exc:
            raise ValueError(f"{self.where}: cannot be read ({exc})") from None
        keys = parse_jwks(raw, self.where)
        self.keys, self.read_at = keys, time.monotonic()
        return keys

    def refresh(self, min_age: float) -> bool:
        """Read again if the last read is older than `min_age`; a failure keeps the keys held."""
        if time.monotonic() - self.read_at < min_age or not self._lock.acquire(blocking=False):
            return False
        try:
            self.load()
            return True
        except ValueError as exc:
            self.read_at = time.monotonic()  # try again after the interval, not at every token
            log.error("keeping the %d keys already read: %s", len(self.keys), exc)
            return False
        finally:
            self._lock.release()


class KeySet:
    """Chooses the key a token is verified with: by its kid from the key sets, else the secret."""

    def __init__(self, secret: str | None = None, sources: tuple[JwksSource, ...] = ()):
        self.secret, self.sources = secret, sources

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> KeySet:
        secret = env.get("SEMANTIC_API_SECRET") or env.get("CUBEJS_API_SECRET") or None
        refresh = env.get("SEMANTIC_JWKS_REFRESH_SECONDS", "") or str(DEFAULT_REFRESH_SECONDS)
        try:
            refresh_seconds = float(refresh)
        except ValueError:
            raise ValueError(f"SEMANTIC_JWKS_REFRESH_SECONDS={refresh!r}: expected a number of seconds") from None
        if refresh_seconds <= 0:
            raise ValueError(f"SEMANTIC_JWKS_REFRESH_SECONDS={refresh!r}: must be above 0")
        sources = []
        if env.get("SEMANTIC_JWKS_FILE"):
            path = Path(env["SEMANTIC_JWKS_FILE"])
            sources.append(JwksSource("SEMANTIC_JWKS_FILE", str(path), path.read_bytes, refresh_seconds))
        if env.get("SEMANTIC_JWKS_URL"):
            url = env["SEMANTIC_JWKS_URL"]
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"SEMANTIC_JWKS_URL={url!r}: expected an http(s) URL")

            def fetch(url=url) -> bytes:
                reply = httpx.get(url, timeout=5, follow_redirects=True)
                reply.raise_for_status()
                return reply.content

            sources.append(JwksSource("SEMANTIC_JWKS_URL", url, fetch, refresh_seconds))
        if secret is None and not sources:
            raise ValueError("set SEMANTIC_API_SECRET (the HS256 secret that signs API tokens), or a key set: "
                             "SEMANTIC_JWKS_FILE or SEMANTIC_JWKS_URL")
        keys = cls(secret, tuple(sources))
        seen: dict[str, str] = {}
        for source in sources:
            for kid in source.load():
                if kid in seen:
                    raise ValueError(f"{source.where}: kid {kid!r} is also in {seen[kid]}")
                seen[kid] = source.where
        return keys

    def _find(self, kid: str) -> Key | None:
        return next((source.keys[kid] for source in self.sources if kid in source.keys), None)

    def key_for(self, kid: str | None, algorithm: str | None) -> Key:
        """The key a token with this header is verified with; KeyRefused saying why there is none."""
        if kid is None:
            if self.secret is None:
                raise KeyRefused("it names no key (kid), and tokens without one are not accepted here")
            key = Key(None, "HS256", self.secret)
        else:
            for source in self.sources:
                if time.monotonic() - source.read_at > source.refresh_seconds:
                    threading.Thread(target=source.refresh, args=(source.refresh_seconds,), daemon=True).start()
            key = self._find(kid)
            if key is None and any(source.refresh(UNKNOWN_KID_REFRESH_SECONDS) for source in self.sources):
                key = self._find(kid)
            if key is None:
                now = time.time()
                known = sorted(k for source in self.sources for k, held in source.keys.items()
                               if held.expires is None or now < held.expires)
                raise KeyRefused(f"unknown key id (kid) {kid!r}; the current keys are {', '.join(known) or 'none'}")
            if key.expires is not None and time.time() >= key.expires:
                raise KeyRefused(f"key {kid!r} was retired at {_utc(key.expires)} (its exp); sign with a current key")
        if algorithm != key.algorithm:
            raise KeyRefused(f"signed with {algorithm!r}, but key {kid or '(the API secret)'!r} verifies "
                            f"{key.algorithm} only")
        return key
