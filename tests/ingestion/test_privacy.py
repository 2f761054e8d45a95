"""Privacy at collection: consent (Segment's consent object, RudderStack's consentManagement), hashed
user ids and truncated IP addresses, as configured; and the settings that refuse a bad value naming
the variable. The official SDKs send through a real collector; the rules themselves on small dicts."""

from __future__ import annotations

import base64

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from ingestion.collector.settings import Settings, SettingsError
from ingestion.privacy import (
    ErasureLog,
    Privacy,
    PrivacySettings,
    PrivacySettingsError,
    consent_given,
    privacy_settings_from,
    truncated_ip,
)
from tests.ingestion.collector_process import collector
from tests.ingestion.conftest import wait_landed

KEY = "a-secret-of-sixteen-or-more"


def event(**context) -> dict:
    return {"event_id": "e1", "event_type": "page_view", "timestamp": "2026-10-20T10:00:00Z", "tenant_id": "t001",
            "user_id": "u1", "anonymous_id": "a1", "session_id": "u1", "properties": {"path": "/"},
            "context": {"device": "mobile", "country": "FR", "locale": "fr-FR", "userAgent": "Mozilla/5.0",
                        "traits": {"email": "x@example.com"}, **context}}


def test_consent_is_read_as_segment_and_rudderstack_send_it():
    analytics = ("Analytics",)
    assert consent_given({"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}, analytics)
    assert consent_given({"consent": {"categoryPreferences": {"Analytics": False}}}, analytics) is False
    # present preferences without the category: not given (Segment stores false for it)
    assert consent_given({"consent": {"categoryPreferences": {}}}, analytics) is False
    assert consent_given({"consent": {}}, analytics) is None  # an empty consent object says nothing
    assert consent_given({}, analytics) is None
    rudder = {"consentManagement": {"provider": "custom", "allowedConsentIds": ["Analytics"],
                                    "deniedConsentIds": ["Marketing"]}}
    assert consent_given(rudder, analytics) is True
    assert consent_given({"consentManagement": {"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0002"]}},
                         ("C0002",)) is False  # denied wins
    assert consent_given({"consentManagement": {"allowedConsentIds": [], "deniedConsentIds": ["C0004"]}},
                         ("C0002",)) is False


def test_without_consent_an_event_is_dropped_or_kept_without_personal_fields():
    denied = {"consent": {"categoryPreferences": {"Analytics": False}}, "ip": "198.51.100.7"}
    assert Privacy(PrivacySettings()).apply("event", event(**denied)) is None
    kept = Privacy(PrivacySettings(without_consent="anonymize")).apply("event", event(**denied))
    assert kept["user_id"] is None and kept["anonymous_id"].startswith("anon-") and kept["session_id"] == \
        kept["anonymous_id"]
    assert set(kept["context"]) == {"device", "country", "locale", "consent"}  # no ip, traits or user agent
    assert kept["properties"] == {"path": "/"}
    # a profile call is personal by nature: never stored without consent, whatever the mode
    assert Privacy(PrivacySettings(without_consent="anonymize")).apply("profile", event(**denied)) is None
    # no consent information: stored as sent, unless consent is required
    assert Privacy(PrivacySettings()).apply("event", event())["user_id"] == "u1"
    assert Privacy(PrivacySettings(consent_required=True)).apply("event", event()) is None


def test_user_ids_are_hashed_per_tenant_and_ip_addresses_truncated():
    settings = PrivacySettings(hash_user_ids=True, user_id_key=KEY.encode())
    stored = Privacy(settings).apply("event", event(ip="203.0.113.77"))
    assert stored["user_id"] == settings.pseudonym("t001", "u1") != "u1"
    assert stored["user_id"].startswith("h:") and stored["session_id"] == stored["user_id"]
    assert stored["anonymous_id"] == settings.pseudonym("t001", "a1")
    assert settings.pseudonym("t002", "u1") != stored["user_id"]  # scoped to the tenant
    assert stored["context"]["ip"] == "203.0.113.0"
    assert truncated_ip("2001:db8:85a3:1234::8a2e:370:7334") == "2001:db8:85a3::"
    assert truncated_ip("not an address") is None
    assert "ip" not in Privacy(PrivacySettings()).apply("event", event(ip="localhost"))["context"]
    assert Privacy(PrivacySettings(ip_addresses="drop")).apply("event", event(ip="203.0.113.77"))["context"].get(
        "ip") is None
    assert Privacy(PrivacySettings(ip_addresses="keep")).apply("event", event(ip="203.0.113.77"))["context"][
        "ip"] == "203.0.113.77"


@pytest.mark.parametrize(("env", "variable"), [
    ({"PRIVACY_WITHOUT_CONSENT": "forget"}, "PRIVACY_WITHOUT_CONSENT"),
    ({"PRIVACY_HASH_USER_IDS": "true"}, "PRIVACY_USER_ID_KEY"),
    ({"PRIVACY_HASH_USER_IDS": "maybe"}, "PRIVACY_HASH_USER_IDS"),
    ({"PRIVACY_IP_ADDRESSES": "mask"}, "PRIVACY_IP_ADDRESSES"),
    ({"PRIVACY_CONSENT_CATEGORIES": " , "}, "PRIVACY_CONSENT_CATEGORIES"),
])
def test_a_bad_privacy_setting_is_refused_naming_the_variable(env, variable):
    with pytest.raises(PrivacySettingsError, match=variable):
        privacy_settings_from(env)
    with pytest.raises(SettingsError, match=variable):  # and the collector refuses to start on it
        Settings.from_environment({"COLLECTOR_WRITE_KEYS": "k=t001", **env})


def test_the_official_sdks_consent_reaches_the_landing_zone(tmp_path):
    from ingestion.paths import DataLayout

    layout = DataLayout(tmp_path / "data")
    settings = {"PRIVACY_WITHOUT_CONSENT": "anonymize", "PRIVACY_HASH_USER_IDS": "true", "PRIVACY_USER_ID_KEY": KEY}
    hashed = privacy_settings_from(settings).pseudonym
    with collector(layout, rotate_seconds=0.2, **settings) as running:
        segment = SegmentClient(write_key="key-t001", host=running.url, max_retries=1)
        granted = {"consent": {"categoryPreferences": {"Analytics": True}}, "ip": "203.0.113.77"}
        refused = {"consent": {"categoryPreferences": {"Analytics": False}}, "ip": "203.0.113.78",
                   "traits": {"email": "pat@example.com"}}
        segment.track("pat", "Signed Up", {"plan": "pro"}, context=granted, message_id="pv-granted")
        segment.track("pat", "Signed Up", {"plan": "pro"}, context=refused, message_id="pv-refused")
        segment.identify("pat", {"email": "pat@example.com"}, context=refused, message_id="pv-identify")
        segment.flush()
        rudder = RudderClient(write_key="key-t002", host=running.url, max_retries=1)
        denied = {"consentManagement": {"provider": "custom", "resolutionStrategy": "and",
                                        "allowedConsentIds": [], "deniedConsentIds": ["Analytics"]}}
        rudder.track("sam", "Signed Up", {"plan": "pro"}, context=denied, message_id="pv-rudder-denied")
        rudder.flush()
        # the reply counts what the privacy rules kept out
        auth = "Basic " + base64.b64encode(b"key-t001:").decode()
        reply = httpx.post(f"{running.url}/v1/batch", headers={"Authorization": auth}, json={"batch": [
            {"type": "identify", "userId": "lee", "messageId": "pv-withheld", "context": refused}]})
        assert reply.status_code == 200 and reply.json()["withheld"] == 1, reply.text
        events = {e["event_id"]: e for e in wait_landed(layout.events_dir, "pv-", 3)}
    assert sorted(events) == ["pv-granted", "pv-refused", "pv-rudder-denied"]
    assert events["pv-granted"]["user_id"] == hashed("t001", "pat")
    assert events["pv-granted"]["context"]["ip"] == "203.0.113.0"
    for refused_id in ("pv-refused", "pv-rudder-denied"):
        stored = events[refused_id]
        assert stored["user_id"] is None and stored["anonymous_id"].startswith("anon-")
        assert not {"ip", "traits"} & set(stored["context"])
    assert not list(layout.profiles_dir.glob("*.jsonl"))  # neither identify call was stored
    assert b"pat@example.com" not in b"".join(p.read_bytes() for p in layout.landing.rglob("*.jsonl"))


def test_the_erasure_log_keeps_digests_never_identifiers(tmp_path):
    log = ErasureLog(tmp_path / "privacy")
    subjects = log.subjects("t001", ["u1", "a1"])
    log.append({"id": "x", "status": "erased", "subjects": subjects})
    log.append({"id": "y", "status": "unknown_user", "subjects": log.subjects("t001", ["nobody"])})
    suppression = log.suppression()
    assert suppression.holds("t001", "u1") and suppression.holds("t001", None, "a1")
    assert not suppression.holds("t002", "u1") and not suppression.holds("t001", "nobody")
    assert b"u1" not in log.path.read_bytes()
    assert (tmp_path / "privacy" / "salt").stat().st_mode & 0o777 == 0o600
