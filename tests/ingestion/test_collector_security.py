"""The collector's security, on a real collector (two workers, the landing process) over HTTPS:
write keys kept as hashes, per-write-key rate limits counted across workers (429 with Retry-After,
nothing stored), TLS with a self-signed certificate, and every bad setting refused at start by name."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import orjson
import pytest

from ingestion.collector import write_keys
from ingestion.collector.settings import Settings, SettingsError
from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT
from tests.ingestion.collector_process import collector, collector_env, output
from tests.ingestion.conftest import landed, wait_landed
from tests.tls import self_signed

LIMITED, OWN_LIMIT, PLAIN = "limited-key-of-t001", "own-limit-key-of-t002", "plain-key-of-t002"


def events(prefix: str, count: int) -> bytes:
    """Segment track calls (the tenant is the write key's)."""
    return orjson.dumps({"batch": [
        {"type": "track", "event": "Signed Up", "messageId": f"{prefix}-{i}", "userId": "u1",
         "properties": {"plan": "pro"}, "timestamp": "2026-11-20T10:00:00Z"} for i in range(count)]})


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A collector over HTTPS whose keys file holds two hashed keys (one with a rate limit of its own)
    and one in plain text; the default limit is 10 events a minute per key."""
    root = tmp_path_factory.mktemp("secured-collector")
    certificate = self_signed(root / "tls")
    keys = {write_keys.digest(LIMITED): "t001",
            write_keys.digest(OWN_LIMIT): {"tenant": "t002", "rate_limit": "1000/minute"},
            PLAIN: "t002"}
    (root / "keys.json").write_text(json.dumps(keys))
    layout = DataLayout(root / "data")
    settings = {"COLLECTOR_WRITE_KEYS_FILE": str(root / "keys.json"), "COLLECTOR_RATE_LIMIT": "10/minute",
                **certificate.env("COLLECTOR")}
    with collector(layout, rotate_seconds=0.2, **settings) as running:
        yield layout, running, certificate, root


def post(secured, key: str, body: bytes) -> httpx.Response:
    _, running, certificate, _ = secured
    # a new connection per request: the kernel spreads them over both workers (SO_REUSEPORT)
    return httpx.post(f"{running.url}/v1/batch", content=body, auth=(key, ""), verify=certificate.client_context())


def test_write_keys_are_stored_as_hashes_and_the_cli_makes_them(secured, capsys):
    layout, running, certificate, root = secured
    assert LIMITED not in (root / "keys.json").read_text()
    write_keys.main(["new", "t001"])
    printed = capsys.readouterr().out
    key = re.search(r"\(give it to the sender; it is not stored\): (\S+)", printed).group(1)
    entry = re.search(r"setting entry: (sha256:[0-9a-f]{64})=t001", printed).group(1)
    assert entry == write_keys.digest(key) and key not in entry
    write_keys.main(["hash", LIMITED])
    assert capsys.readouterr().out.strip() == write_keys.digest(LIMITED)
    # the hash itself is not a key: sending it is refused like any unknown key
    refused = post(secured, write_keys.digest(LIMITED), events("hash-as-key", 1))
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    # a key still configured in plain text works, and the collector said at start to store its hash
    assert post(secured, PLAIN, events("plain", 1)).status_code == 200
    assert "1 write keys are configured in plain text" in output(running.process)


def test_a_write_key_past_its_rate_limit_gets_429_with_retry_after_and_nothing_is_stored(secured):
    layout, running, _, _ = secured
    assert [post(secured, LIMITED, events(f"rate-{n}", 4)).status_code for n in range(2)] == [200, 200]
    refused = post(secured, LIMITED, events("rate-2", 4))  # 12 events in the minute: over 10
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["code"] == "rate_limited"
    assert "rate limit of 10 per 1 minute" in refused.json()["message"]
    # what was admitted is stored; nothing of the refused request is, not even in the quarantine
    assert len(wait_landed(layout.events_dir, "rate-", 8)) == 8
    assert landed(layout.events_dir, "rate-2") == [] and landed(layout.quarantine_dir, "rate-2") == []
    # a batch larger than the limit ever admits is refused as too large, not to be retried
    too_big = post(secured, LIMITED, events("rate-big", 11))
    assert too_big.status_code == 413 and "send less at a time" in too_big.json()["message"]
    # another key is counted on its own, against its own limit
    assert post(secured, OWN_LIMIT, events("own", 30)).status_code == 200
    metrics = httpx.get(f"{running.url}/metrics", verify=secured[2].client_context()).text
    assert 'collector_rate_limited_events_total{tenant="t001"} 15.0' in metrics
    assert 'collector_errors_total{code="rate_limited"} 1.0' in metrics
    assert 'collector_requests_total{route="/v1/batch",status="429"} 1.0' in metrics


def test_tls_is_served_and_plain_http_is_not(secured):
    _, running, certificate, _ = secured
    with httpx.Client(verify=certificate.client_context()) as client:
        reply = client.get(f"{running.url}/health")
        assert reply.status_code == 200 and reply.http_version == "HTTP/1.1"
    with pytest.raises(httpx.HTTPError):
        httpx.get(running.url.replace("https://", "http://") + "/health", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{running.url}/health")  # a client that does not trust the certificate refuses it


@pytest.mark.parametrize(("settings", "message"), [
    ({"COLLECTOR_RATE_LIMIT": "ten per fortnight"}, "COLLECTOR_RATE_LIMIT='ten per fortnight': not a rate limit"),
    ({"COLLECTOR_RATE_LIMIT": "0/second"}, "COLLECTOR_RATE_LIMIT='0/second': 0 per 1 second admits nothing"),
    ({"COLLECTOR_WRITE_KEYS": "sha256:abc=t001"}, "COLLECTOR_WRITE_KEYS entry 1: sha256:abc...: a hashed key is"),
    ({"COLLECTOR_WRITE_KEYS": "k1"}, "COLLECTOR_WRITE_KEYS entry 1: expected <key hash or key>=<tenant>"),
    ({"COLLECTOR_TLS_CERT_FILE": "/nonexistent.crt"}, "COLLECTOR_TLS_KEY_FILE is not set but COLLECTOR_TLS_CERT_FILE"),
    ({"COLLECTOR_TLS_CERT_FILE": "/nonexistent.crt", "COLLECTOR_TLS_KEY_FILE": "/nonexistent.key"},
     "COLLECTOR_TLS_CERT_FILE='/nonexistent.crt': no such file"),
])
def test_each_bad_setting_is_refused_naming_it(settings, message):
    env = {"COLLECTOR_WRITE_KEYS": "key=t001", **settings}
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment(env)
    assert message in str(refused.value)


def test_bad_keys_files_and_certificates_are_refused_naming_the_file(tmp_path):
    keys = tmp_path / "keys.json"
    for content, message in [
        ("{not json", "not valid JSON"),
        ('["k"]', "expected a JSON object"),
        (json.dumps({write_keys.digest("k"): {"tenant": "t001", "rate_limit": "lots"}}),
         "rate_limit='lots': not a rate limit"),
        (json.dumps({write_keys.digest("k"): {"tenant": "t001", "burst": 5}}), "unknown field 'burst'"),
        (json.dumps({"k": 7}), "a key in plain text: expected a tenant id"),
    ]:
        keys.write_text(content)
        with pytest.raises(SettingsError, match=re.escape(f"COLLECTOR_WRITE_KEYS_FILE ({keys})")) as refused:
            Settings.from_environment({"COLLECTOR_WRITE_KEYS_FILE": str(keys)})
        assert message in str(refused.value)
    one, other = self_signed(tmp_path / "one"), self_signed(tmp_path / "other")
    with pytest.raises(SettingsError, match="cannot serve TLS") as refused:
        Settings.from_environment({"COLLECTOR_WRITE_KEYS": "key=t001", "COLLECTOR_TLS_CERT_FILE": str(one.cert),
                                   "COLLECTOR_TLS_KEY_FILE": str(other.key)})
    assert "COLLECTOR_TLS_CERT_FILE" in str(refused.value) and "COLLECTOR_TLS_KEY_FILE" in str(refused.value)


def test_the_collector_does_not_start_on_a_bad_setting(tmp_path):
    env = collector_env(DataLayout(tmp_path / "data"), COLLECTOR_RATE_LIMIT="100/fortnight")
    refused = subprocess.run([sys.executable, "-m", "ingestion.collector", "--port", "0"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "collector: COLLECTOR_RATE_LIMIT='100/fortnight': not a rate limit" in refused.stderr


def test_the_collector_uses_the_platforms_data_directory(tmp_path):
    """PLATFORM_DATA_DIR as the pipeline reads it (`ingestion.paths`), the same default: the collector lands
    where the loaders look."""
    from ingestion.paths import data_dir_from

    assert Settings.from_environment({"COLLECTOR_WRITE_KEYS": "key=t001"}).data_dir == data_dir_from({})
    assert Settings().data_dir == data_dir_from({})
    relative = Settings.from_environment({"COLLECTOR_WRITE_KEYS": "key=t001", "PLATFORM_DATA_DIR": "data"})
    assert relative.data_dir == data_dir_from({"PLATFORM_DATA_DIR": "data"}) and relative.data_dir.is_absolute()
