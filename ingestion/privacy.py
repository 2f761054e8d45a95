"""Privacy at collection, and the record of erased people that keeps them out afterwards.

What the collector does to each event before it is stored (`Privacy.apply`), as configured:

- **Consent.** An event carries its sender's consent as Segment's consent object
  (`context.consent.categoryPreferences`: `{"Analytics": true, ...}`) or RudderStack's
  (`context.consentManagement`: `allowedConsentIds` / `deniedConsentIds`). Analytics consent is
  given when one of `PRIVACY_CONSENT_CATEGORIES` (default `Analytics`; OneTrust's performance
  category is `C0002`) is true, or allowed and not denied. Without consent an event is not stored
  (`PRIVACY_WITHOUT_CONSENT=drop`, the default) or stored without personal fields (`anonymize`: no
  user id, a one-off visitor id and session instead of the sender's, and of `context` only what
  is not personal: device type, country, locale, library). Profile calls (identify, group, alias)
  are personal by nature: without consent they are never stored. An event with no consent
  information at all is stored as sent, as Segment forwards it, unless `PRIVACY_CONSENT_REQUIRED`.
- **User identifiers** (`user_id`, `anonymous_id`, and the session id when it is one of them) are
  replaced by keyed pseudonyms with `PRIVACY_HASH_USER_IDS=true`: HMAC-SHA256 under
  `PRIVACY_USER_ID_KEY`, scoped to the tenant, so the same person keeps one id across events (and
  an erasure that names the original id finds them) while the id itself is never stored.
- **IP addresses** (`context.ip`) are truncated to their network (`PRIVACY_IP_ADDRESSES=truncate`,
  the default: IPv4 to /24, IPv6 to /48, as analytics tools anonymise them), dropped, or kept.

The pipeline parses the same variables with the same function (`privacy_settings_from`), as an
erasure must find pseudonymised ids. `ErasureLog` is the audit log of erasures: each request, who
asked, what was removed where; a person is recorded only as salted digests of their identifiers
(`subjects`), which the loaders use to keep an erased person's late events out of the warehouse.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ingestion.paths import fsync, write_atomically

WITHOUT_CONSENT = ("drop", "anonymize")
IP_ADDRESSES = ("truncate", "drop", "keep")
# what of an event's context stays when it is anonymized: nothing that identifies a person or device
NEUTRAL_CONTEXT = ("device", "country", "locale", "library", "schema_version", "consent", "consentManagement")
PSEUDONYM_PREFIX = "h:"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
MAX_ID_LENGTH = 256


class PrivacySettingsError(ValueError):
    """A privacy setting that cannot be used; the message names the variable."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise PrivacySettingsError(f"{name}={env[name]!r}: expected true or false")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise PrivacySettingsError(f"{name}={env[name]!r}: expected one of {', '.join(choices)}")
    return raw


@dataclass(frozen=True)
class PrivacySettings:
    consent_categories: tuple[str, ...] = ("Analytics",)
    consent_required: bool = False
    without_consent: str = "drop"
    hash_user_ids: bool = False
    user_id_key: bytes = b""
    ip_addresses: str = "truncate"

    def pseudonym(self, tenant: str, identifier: str) -> str:
        """The stored form of a user identifier when ids are hashed (the id itself otherwise)."""
        if not self.hash_user_ids or identifier.startswith(PSEUDONYM_PREFIX):
            return identifier
        digest = hmac.new(self.user_id_key, f"{tenant}|{identifier}".encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]


def privacy_settings_from(env: Mapping[str, str]) -> PrivacySettings:
    """The privacy settings of the collector and of the pipeline: the one parser of PRIVACY_*."""
    categories = tuple(c.strip() for c in (env.get("PRIVACY_CONSENT_CATEGORIES") or "Analytics").split(",")
                       if c.strip())
    if not categories:
        raise PrivacySettingsError("PRIVACY_CONSENT_CATEGORIES: name at least one consent category")
    hashing = _flag(env, "PRIVACY_HASH_USER_IDS", False)
    key = (env.get("PRIVACY_USER_ID_KEY") or "").encode()
    if hashing and len(key) < 16:
        raise PrivacySettingsError("PRIVACY_USER_ID_KEY: set a secret of at least 16 characters to hash user ids "
                                   "with (PRIVACY_HASH_USER_IDS is on)")
    return PrivacySettings(
        consent_categories=categories,
        consent_required=_flag(env, "PRIVACY_CONSENT_REQUIRED", False),
        without_consent=_choice(env, "PRIVACY_WITHOUT_CONSENT", WITHOUT_CONSENT),
        hash_user_ids=hashing,
        user_id_key=key,
        ip_addresses=_choice(env, "PRIVACY_IP_ADDRESSES", IP_ADDRESSES),
    )


def consent_given(context: dict, categories: tuple[str, ...]) -> bool | None:
    """Whether the event's context grants one of `categories`; None when it says nothing of consent.

    Segment: an empty consent object says nothing, but present preferences without the category
    mean it was not given. RudderStack: a denied id wins over an allowed one."""
    consent = context.get("consent")
    if type(consent) is dict and type(preferences := consent.get("categoryPreferences")) is dict:
        return any(preferences.get(category) is True for category in categories)
    management = context.get("consentManagement")
    if type(management) is dict and management:
        denied, allowed = management.get("deniedConsentIds"), management.get("allowedConsentIds")
        denied = denied if type(denied) is list else []
        allowed = allowed if type(allowed) is list else []
        return any(c in allowed and c not in denied for c in categories)
    return None


def truncated_ip(value) -> str | None:
    """An IPv4 address with its last octet zeroed, an IPv6 one cut to its /48; None when not an address."""
    if type(value) is not str:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


class Privacy:
    """What the collector applies to each mapped record before storing it (see the module's docstring)."""

    def __init__(self, settings: PrivacySettings):
        self.settings = settings
        self.categories = settings.consent_categories
        self.anonymize = settings.without_consent == "anonymize"

    def apply(self, kind: str, record: dict) -> dict | None:
        """The record to store (changed in place), or None when it must not be stored."""
        context = record.get("context")
        if type(context) is not dict:
            context = {}
        # most events say nothing of consent: the two key lookups spare a call per event (measured:
        # 4% of a batch's validation and mapping)
        given = (consent_given(context, self.categories)
                 if "consent" in context or "consentManagement" in context else None)
        if given is False or given is None and self.settings.consent_required:
            if kind != "event" or not self.anonymize:
                return None
            self._anonymized(record, context)
            return record
        if self.settings.hash_user_ids:
            self._pseudonymized(kind, record)
        if "ip" in context:
            self._ip(context)
        return record

    def _ip(self, context: dict) -> None:
        mode = self.settings.ip_addresses
        if mode == "keep":
            return
        truncated = truncated_ip(context["ip"]) if mode == "truncate" else None
        if truncated is None:
            del context["ip"]
        else:
            context["ip"] = truncated

    @staticmethod
    def _anonymized(record: dict, context: dict) -> None:
        # a visitor of one event: counts of events, pages, orders and revenue stay right, users and
        # sessions cannot be told apart (which is what not consenting to analytics means)
        visitor = "anon-" + hashlib.blake2b(str(record["event_id"]).encode(), digest_size=8).hexdigest()
        record["user_id"], record["anonymous_id"], record["session_id"] = None, visitor, visitor
        kept = {key: context[key] for key in NEUTRAL_CONTEXT if key in context}
        if type(segment := context.get("segment")) is dict:
            kept["segment"] = {k: v for k, v in segment.items() if k != "device"}
        if type(kept.get("device")) is not str:
            kept.pop("device", None)
        record["context"] = kept

    def _pseudonymized(self, kind: str, record: dict) -> None:
        tenant = record.get("tenant_id") or ""
        fields = ("user_id", "anonymous_id") if kind == "event" else ("user_id", "anonymous_id", "previous_id")
        originals = {}
        for field in fields:
            value = record.get(field)
            if type(value) is str:
                originals[value] = record[field] = self.settings.pseudonym(tenant, value)
        if kind == "event" and record.get("session_id") in originals:
            record["session_id"] = originals[record["session_id"]]


# -- erased people ---------------------------------------------------------------------------------
def subject(salt: str, tenant: str, identifier: str) -> str:
    """How the audit log and the loaders know one identifier of an erased person: a salted digest,
    never the identifier itself (DuckDB computes the same with `sha256(salt || '|' || ...)`)."""
    return hashlib.sha256(f"{salt}|{tenant}|{identifier}".encode()).hexdigest()


class ErasureRequestError(ValueError):
    """An erasure request that cannot be taken; the message names the field."""


class ErasureLog:
    """The append-only audit log of erasure requests (`erasures.jsonl`), the installation's salt, and
    the requests queued for the pipeline to run (`requests/<id>.json`, removed once run).

    One JSON line per request, fsync'd before the request is answered: its id, when and by whom it
    was asked, the tenant, the digests of the person's identifiers, what was removed where (or that
    the person was unknown)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / "erasures.jsonl"
        self.requests_dir = directory / "requests"

    def queue(self, tenant, user, requested_by: str) -> dict:
        """Queue a request (the metrics server's admin API does; a Dagster sensor runs it)."""
        for name, value in (("tenant", tenant), ("user", user)):
            if not isinstance(value, str) or not value.strip():
                raise ErasureRequestError(f"{name}: expected a non-empty string")
            if len(value) > MAX_ID_LENGTH:
                raise ErasureRequestError(f"{name}: longer than {MAX_ID_LENGTH} characters")
        request = {"id": uuid.uuid4().hex, "tenant": tenant, "user": user, "requested_by": requested_by,
                   "requested_at": datetime.now(UTC).isoformat()}
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.requests_dir / f"{request['id']}.json", orjson.dumps(request))
        fsync(self.requests_dir)
        return request

    def queued(self) -> list[str]:
        return sorted(p.stem for p in self.requests_dir.glob("*.json")) if self.requests_dir.is_dir() else []

    def request(self, request_id: str) -> dict:
        if not REQUEST_ID.fullmatch(request_id):
            raise ErasureRequestError(f"request id {request_id!r}: not an erasure request id")
        return orjson.loads((self.requests_dir / f"{request_id}.json").read_bytes())

    def done(self, request_id: str) -> None:
        if REQUEST_ID.fullmatch(request_id):
            (self.requests_dir / f"{request_id}.json").unlink(missing_ok=True)

    def status(self, request_id: str) -> dict | None:
        """What became of a request: its audit record (without the digests), "queued", or None."""
        if not REQUEST_ID.fullmatch(request_id):
            return None
        for record in reversed(self.records()):
            if record.get("id") == request_id:
                return {k: v for k, v in record.items() if k != "subjects"}
        if (self.requests_dir / f"{request_id}.json").exists():
            return {"id": request_id, "status": "queued"}
        return None

    @property
    def salt(self) -> str:
        """The installation's salt, made on first use (mode 0600). Never changes once made: it is
        what ties a digest in the log to the identifier."""
        path = self.directory / "salt"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return path.read_text().strip()

    def subjects(self, tenant: str, identifiers: Iterable[str]) -> list[str]:
        salt = self.salt
        return sorted({subject(salt, tenant, identifier) for identifier in identifiers})

    def append(self, record: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(orjson.dumps(record) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        fsync(self.directory)

    def records(self) -> list[dict]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    def suppression(self) -> Suppression:
        """What the loaders hold back: every identifier of every person erased so far."""
        erased = [r for r in self.records() if r.get("status") == "erased"]
        if not erased:
            return Suppression("", frozenset())
        return Suppression(self.salt, frozenset(s for r in erased for s in r.get("subjects", [])))


@dataclass(frozen=True)
class Suppression:
    """Identifiers of erased people, as digests: a loader drops their rows before they are stored."""

    salt: str
    subjects: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.subjects)

    def holds(self, tenant, *identifiers) -> bool:
        if not self.subjects or type(tenant) is not str:
            return False
        return any(type(i) is str and subject(self.salt, tenant, i) in self.subjects for i in identifiers)
