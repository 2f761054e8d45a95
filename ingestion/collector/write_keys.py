"""Write keys: which tenant a key writes for, kept as hashes, never as the keys themselves.

The settings name each key by its SHA-256 (`sha256:<64 hex digits>`); a key an SDK sends is hashed
and looked up. A write key is a random secret (`new_key`: 256 bits), not a password a person
chooses, so one SHA-256 is enough to make a leaked configuration useless to an attacker, and costs
a microsecond per request where a password hash (bcrypt, scrypt) would cost tens of milliseconds.
A key given in plain text is still accepted (`make dev` makes `dev-<tenant>` keys) and hashed when
read; the collector warns at start that it should be stored as its hash.

    COLLECTOR_WRITE_KEYS="sha256:<hex>=t001,sha256:<hex>=t002"
    COLLECTOR_WRITE_KEYS_FILE=keys.json   {"sha256:<hex>": "t001",
                                           "sha256:<hex>": {"tenant": "t002", "rate_limit": "5000/second"}}

A key's own `rate_limit` (file form only) replaces `COLLECTOR_RATE_LIMIT` for that key.

    python -m ingestion.collector.write_keys new t001    a new key for tenant t001, and its setting entry
    python -m ingestion.collector.write_keys hash KEY    the entry of an existing key (reads stdin without KEY)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ingestion.rate_limits import Rates, parse_rates

PREFIX = "sha256:"
HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")


def digest(key: str) -> str:
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "wk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class WriteKey:
    digest: str  # also the identity its rate limit is counted under
    tenant: str
    rates: Rates | None = None  # None: the collector's default (COLLECTOR_RATE_LIMIT)


@dataclass(frozen=True)
class WriteKeys:
    by_digest: Mapping[str, WriteKey]
    plain: int = 0  # how many the settings held in plain text

    def find(self, key: str) -> WriteKey | None:
        return self.by_digest.get(digest(key))

    def __len__(self) -> int:
        return len(self.by_digest)


def _entry(key: str, value, where: str) -> tuple[WriteKey, bool]:
    """A settings entry as (WriteKey, whether it was in plain text); ValueError naming `where`."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{where}: a key must be a non-empty string")
    key = key.strip()
    hashed = key.startswith(PREFIX)
    if hashed and not HASHED.match(key):
        raise ValueError(f"{where}: {key[:15]}...: a hashed key is 'sha256:' and 64 lowercase hex digits "
                         "(python -m ingestion.collector.write_keys hash KEY)")
    shown = key[:15] + "..." if hashed else "a key in plain text"
    rates = None
    if isinstance(value, dict):
        unknown = set(value) - {"tenant", "rate_limit"}
        if unknown:
            raise ValueError(f"{where}: {shown}: unknown field {sorted(unknown)[0]!r} (tenant, rate_limit)")
        if "rate_limit" in value:
            if not isinstance(value["rate_limit"], str):
                raise ValueError(f"{where}: {shown}: rate_limit must be a string such as '1000/second'")
            rates = parse_rates(value["rate_limit"], f"{where}: {shown}: rate_limit")
        value = value.get("tenant")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {shown}: expected a tenant id (or {{\"tenant\": ..., \"rate_limit\": ...}})")
    return WriteKey(key if hashed else digest(key), value.strip(), rates), not hashed


def write_keys_from(env: Mapping[str, str]) -> WriteKeys:
    """The keys COLLECTOR_WRITE_KEYS_FILE or COLLECTOR_WRITE_KEYS names; ValueError naming the setting."""
    entries: list[tuple[str, object, str]] = []
    if env.get("COLLECTOR_WRITE_KEYS_FILE"):
        path = env["COLLECTOR_WRITE_KEYS_FILE"]
        where = f"COLLECTOR_WRITE_KEYS_FILE ({path})"
        try:
            loaded = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"{where}: cannot be read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{where}: expected a JSON object of key hash -> tenant")
        entries = [(key, value, where) for key, value in loaded.items()]
    else:
        for i, pair in enumerate(p for p in env.get("COLLECTOR_WRITE_KEYS", "").split(",") if p.strip()):
            key, sep, tenant = pair.strip().partition("=")
            if not sep or not key or not tenant:
                raise ValueError(f"COLLECTOR_WRITE_KEYS entry {i + 1}: expected <key hash or key>=<tenant>")
            entries.append((key, tenant, f"COLLECTOR_WRITE_KEYS entry {i + 1}"))
    if not entries:
        raise ValueError("no write keys: set COLLECTOR_WRITE_KEYS=sha256:<hex>=tenant[,...] or "
                         "COLLECTOR_WRITE_KEYS_FILE")
    keys, plain = {}, 0
    for key, value, where in entries:
        entry, was_plain = _entry(key, value, where)
        if entry.digest in keys:
            raise ValueError(f"{where}: the same key is listed twice")
        keys[entry.digest] = entry
        plain += was_plain
    return WriteKeys(keys, plain)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make write keys and the hashes the collector's settings hold.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="a new random key for a tenant; shown once, only its hash is stored")
    new.add_argument("tenant")
    hashed = commands.add_parser("hash", help="the hash of an existing key (reads it from stdin when omitted)")
    hashed.add_argument("key", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "new":
        key = new_key()
        print(f"write key (give it to the sender; it is not stored): {key}")
        print(f"setting entry: {digest(key)}={args.tenant}")
    else:
        key = args.key if args.key is not None else sys.stdin.readline().strip()
        print(digest(key))


if __name__ == "__main__":
    main()
