"""The metrics server and the SQL endpoint with every guard on (the `secured` servers): tokens verified
by kid against a key set (RS256 from a file and from a URL, rotated HS256 secrets, a retired key),
per-token rate limits (429 with Retry-After; SQLSTATE 53400 on a connection that stays open), the audit
log of who asked what and got how many rows, and TLS tried with httpx and psycopg; every bad key set,
key and setting refused by name."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time

import httpx
import jwt
import orjson
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client import REGISTRY

from semantic.audit import AuditLog
from semantic.auth import authenticate, issue_token, token_id
from semantic.client import MetricsClient, MetricsError
from semantic.keys import KeyRefused, KeySet
from semantic.settings import ServingSettings, SettingsError
from tests.conftest import REPO_ROOT
from tests.semantic.conftest import SECRET
from tests.semantic.keyring import public_jwk, secret_jwk
from tests.tls import self_signed

REVENUE = {"measures": ["orders.revenue"], "dimensions": ["orders.tenant"]}


def client(secured, token: str) -> MetricsClient:
    return MetricsClient(secured.rest.url, token, timeout=30, verify=secured.rest.verify)


def load(secured, token: str, query=None) -> httpx.Response:
    return httpx.get(f"{secured.rest.url}/cubejs-api/v1/load", headers={"Authorization": token},
                     params={"query": orjson.dumps(query or REVENUE).decode()}, verify=secured.rest.verify, timeout=30)


def sql_connect(secured, token: str, **options) -> psycopg.Connection:
    options = {"sslmode": "verify-full", "sslrootcert": str(secured.certificate.cert), **options}
    return psycopg.connect(host="127.0.0.1", port=secured.sql.port, user="bi", dbname="metrics", password=token,
                           connect_timeout=60, **options)


def audit_records(secured) -> list[dict]:
    return [json.loads(line) for path in sorted(secured.audit_dir.glob("api-*.jsonl"))
            for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kid", [None, "hs-2026", "idp-file", "idp-url"])
def test_tokens_of_every_configured_key_are_accepted(secured, kid):
    """No kid: the HS256 API secret; hs-2026: a rotated HS256 secret of the key set file; idp-file and
    idp-url: RS256 keys of an identity provider, from the file and from the URL."""
    token = secured.rest.token("t001") if kid is None else secured.keys.token(kid, "t001")
    with client(secured, token) as api:
        rows = api.load(REVENUE).rows
    assert [row["orders.tenant"] for row in rows] == ["t001"]


def _alg_confusion(secured) -> str:
    """An HS256 token 'signed' with the RSA key's public PEM as the secret, naming the RSA key."""
    pem = secured.keys.rsa["idp-file"].public_key().public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    header = jwt.utils.base64url_encode(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "idp-file"}))
    payload = jwt.utils.base64url_encode(orjson.dumps({"tenant_id": "t001", "exp": int(time.time()) + 60}))
    signature = hmac.new(pem, header + b"." + payload, hashlib.sha256).digest()
    return (header + b"." + payload + b"." + jwt.utils.base64url_encode(signature)).decode()


@pytest.mark.parametrize(("case", "message"), [
    ("unknown kid", "unknown key id (kid) 'no-such-key'; the current keys are hs-2026, idp-file, idp-url"),
    ("retired key", "key 'hs-retired' was retired at"),
    ("expired token", "Invalid token: expired"),
    ("forged with another RSA key", "Invalid token: wrong signature"),
    ("alg confusion", "signed with 'HS256', but key 'idp-file' verifies RS256 only"),
    ("alg none", "signed with 'none', but key"),
])
def test_tokens_with_a_bad_key_are_refused_with_403_saying_why(secured, case, message):
    keys = secured.keys
    token = {
        "unknown kid": lambda: jwt.encode({"tenant_id": "t001", "exp": int(time.time()) + 60},
                                          keys.secrets["hs-2026"], "HS256", headers={"kid": "no-such-key"}),
        "retired key": lambda: keys.token("hs-retired"),
        "expired token": lambda: keys.token("idp-url", ttl_seconds=-30),
        "forged with another RSA key": lambda: jwt.encode(
            {"tenant_id": "t001", "exp": int(time.time()) + 60}, keys.add_rsa("attacker"), "RS256",
            headers={"kid": "idp-file"}),
        "alg confusion": lambda: _alg_confusion(secured),
        "alg none": lambda: jwt.encode({"tenant_id": "t001", "exp": int(time.time()) + 60}, None, "none",
                                       headers={"kid": "idp-file"}),
    }[case]()
    reply = load(secured, token)
    assert reply.status_code == 403, reply.text
    assert message in reply.json()["error"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed") as refused:
        sql_connect(secured, token)
    assert message in str(refused.value)


def test_keys_rotate_without_a_restart(secured):
    """A new key added to the key set file is used as soon as a token names it; a key removed from it
    stops being accepted once the file is read again (every SEMANTIC_JWKS_REFRESH_SECONDS, here 1)."""
    keys = secured.keys
    keys.secrets["hs-2027"] = "the-next-hs256-secret-after-the-rotation!!"
    path = keys.directory / "jwks.json"
    before = path.read_text()
    try:
        keys.write("jwks.json", keys.jwks("idp-file", "hs-2026", "hs-2027"))
        deadline = time.monotonic() + 10  # read again within a second, later on a busy machine
        while (reply := load(secured, keys.token("hs-2027"))).status_code != 200:
            assert time.monotonic() < deadline, f"the added key is still refused: {reply.text}"
            time.sleep(0.3)
        keys.write("jwks.json", keys.jwks("idp-file", "hs-2027"))  # hs-2026 retired by removal
        deadline = time.monotonic() + 10
        while load(secured, keys.token("hs-2026")).status_code == 200:
            assert time.monotonic() < deadline, "the removed key is still accepted"
            time.sleep(0.3)
        reply = load(secured, keys.token("hs-2026"))
        assert reply.status_code == 403 and "unknown key id (kid) 'hs-2026'" in reply.json()["error"]
    finally:
        path.write_text(before)


def test_a_token_past_its_rate_limit_gets_429_with_retry_after_other_tokens_do_not(secured):
    token, other = secured.keys.token("idp-file"), secured.keys.token("idp-file")
    statuses = [load(secured, token).status_code for _ in range(8)]
    assert statuses == [200] * 8
    refused = load(secured, token)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["type"] == "RateLimitError"
    assert "rate limit of 8 per 1 minute reached" in refused.json()["error"]
    assert load(secured, other).status_code == 200
    assert httpx.get(f"{secured.rest.url}/readyz", verify=secured.rest.verify).status_code == 200  # not limited


def test_a_sql_token_past_its_rate_limit_gets_53400_and_the_connection_stays_open(secured):
    with sql_connect(secured, secured.keys.token("idp-url")) as conn:
        for _ in range(8):
            conn.execute("select 1").fetchall()
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded) as refused:
            conn.execute("select 1")
        assert "too many statements for this token: rate limit of 8 per 1 minute reached" in str(refused.value)
        assert refused.value.diag.message_hint.startswith("retry after ")
        assert not conn.closed
        conn.rollback()
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):  # answered again, not dropped
            conn.execute("select 2")
        assert not conn.closed
    with sql_connect(secured, secured.keys.token("idp-url")) as conn:  # another token has its own count
        assert conn.execute("select revenue from orders").fetchone() is not None


def test_the_audit_log_records_who_asked_which_query_and_how_many_rows(secured):
    rest_token, sql_token = secured.keys.token("idp-file", "t002"), secured.keys.token("hs-2026", role="admin",
                                                                                       tenant_id=None)
    query = {"measures": ["orders.revenue"], "dimensions": ["orders.tenant", "orders.user__country"]}
    rows = load(secured, rest_token, query).json()["data"]
    assert load(secured, "not-a-token").status_code == 403
    with sql_connect(secured, sql_token) as conn:
        got = conn.execute("select tenant, revenue from orders order by tenant").fetchall()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table")
    with pytest.raises(psycopg.OperationalError):
        sql_connect(secured, "not-a-token")
    records = audit_records(secured)
    rest = [r for r in records if r.get("token_id") == token_id(rest_token)]
    assert rest == [{**rest[0], "api": "rest", "client": "127.0.0.1", "tenant": "t002", "role": "tenant",
                     "kid": "idp-file", "authenticated": True, "route": "/cubejs-api/v1/load", "method": "GET",
                     "query": query, "status": 200, "rows": len(rows)}]
    refused = [r for r in records if r.get("token_id") == token_id("not-a-token")]
    assert {r["api"] for r in refused} == {"rest", "sql"} and not any(r["authenticated"] for r in refused)
    assert all("Invalid token" in r["error"] for r in refused)
    sql = [r for r in records if r.get("token_id") == token_id(sql_token)]
    assert [(r["query"], r.get("rows"), r.get("sqlstate")) for r in sql] == [
        ("select tenant, revenue from orders order by tenant", len(got), None),
        ("select * from no_such_table", None, "42P01")]
    assert all(r["role"] == "admin" and r["tenant"] is None and r["user"] == "bi" for r in sql)
    assert not any(rest_token in line or sql_token in line
                   for path in secured.audit_dir.glob("*") for line in path.read_text().splitlines())


def test_tls_with_real_clients_and_plaintext_refused(secured):
    token = secured.rest.admin
    assert httpx.get(f"{secured.rest.url}/readyz", verify=secured.rest.verify).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(secured.rest.url.replace("https", "http") + "/readyz", timeout=5)
    for mode in ("require", "verify-full"):
        with sql_connect(secured, token, sslmode=mode) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("select count(*) from orders").fetchone()[0] >= 0
    with pytest.raises(psycopg.OperationalError, match="accepts TLS connections only"):
        sql_connect(secured, token, sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        sql_connect(secured, token, sslmode="verify-full", sslrootcert=str(self_signed(
            secured.audit_dir.parent / "other-ca", "other").cert))


def _settings(tmp_path, **env) -> ServingSettings:
    return ServingSettings.from_environment({"PLATFORM_DATA_DIR": str(tmp_path), **env})


def test_bad_key_sets_are_refused_at_start_naming_the_setting_the_key_and_its_kid(tmp_path, secured):
    rsa_key = public_jwk(secured.keys.rsa["idp-file"], "k1")
    path = tmp_path / "jwks.json"
    where = f"SEMANTIC_JWKS_FILE ({path})"
    for content, message in [
        ("{not json", f"{where}: not valid JSON"),
        ('{"keys": {}}', f'{where}: expected a JWKS, a JSON object with a "keys" list'),
        ('{"keys": []}', f"{where}: the key set holds no signing key"),
        (json.dumps({"keys": [{k: v for k, v in rsa_key.items() if k != "kid"}]}), f'{where}: keys[0]: no "kid"'),
        (json.dumps({"keys": [rsa_key, rsa_key]}), f"{where}: keys[1] (kid 'k1'): a second key with this kid"),
        (json.dumps({"keys": [{**rsa_key, "n": "!!not-base64!!"}]}),
         f"{where}: keys[0] (kid 'k1'): 'n' is not base64url"),
        (json.dumps({"keys": [{**rsa_key, "n": "AQAB"}]}), f"{where}: keys[0] (kid 'k1'): not a usable RSA key"),
        (json.dumps({"keys": [{**rsa_key, "kty": "XYZ"}]}), "keys[0] (kid 'k1'): kty 'XYZ' is not supported"),
        (json.dumps({"keys": [{**rsa_key, "alg": "none"}]}), "keys[0] (kid 'k1'): alg 'none' is not accepted"),
        (json.dumps({"keys": [{**rsa_key, "d": "private"}]}), "keys[0] (kid 'k1'): holds a private key"),
        (json.dumps({"keys": [{**rsa_key, "exp": "tomorrow"}]}), "keys[0] (kid 'k1'): exp must be a number"),
        (json.dumps({"keys": [secret_jwk("s", "h1") | {"k": ""}]}), "keys[0] (kid 'h1'): a oct key needs 'k'"),
    ]:
        path.write_text(content)
        with pytest.raises(SettingsError) as refused:
            _settings(tmp_path, SEMANTIC_JWKS_FILE=str(path))
        assert message in str(refused.value)
    with pytest.raises(SettingsError, match=r"SEMANTIC_JWKS_FILE \(/nonexistent.json\): cannot be read"):
        _settings(tmp_path, SEMANTIC_JWKS_FILE="/nonexistent.json")
    with pytest.raises(SettingsError, match=r"SEMANTIC_JWKS_URL \(http://127.0.0.1:9/jwks\): cannot be read"):
        _settings(tmp_path, SEMANTIC_JWKS_URL="http://127.0.0.1:9/jwks")
    # one kid in two key sets: which key would verify its tokens is ambiguous
    path.write_text(json.dumps({"keys": [public_jwk(secured.keys.rsa["idp-url"], "idp-url")]}))
    with pytest.raises(SettingsError) as refused:
        _settings(tmp_path, SEMANTIC_JWKS_FILE=str(path), SEMANTIC_JWKS_URL=secured.jwks_url)
    assert f"SEMANTIC_JWKS_URL ({secured.jwks_url}): kid 'idp-url' is also in {where}" in str(refused.value)
    with pytest.raises(SettingsError, match="set SEMANTIC_API_SECRET .* or a key set"):
        _settings(tmp_path)


@pytest.mark.parametrize(("env", "message"), [
    ({"SEMANTIC_RATE_LIMIT": "lots"}, "SEMANTIC_RATE_LIMIT='lots': not a rate limit; write it as '100/second'"),
    ({"SEMANTIC_RATE_LIMIT": "-5/minute"}, "SEMANTIC_RATE_LIMIT='-5/minute'"),
    ({"SEMANTIC_JWKS_REFRESH_SECONDS": "soon"}, "SEMANTIC_JWKS_REFRESH_SECONDS='soon': expected a number"),
    ({"SEMANTIC_SQL_METRICS_PORT": "http"}, "SEMANTIC_SQL_METRICS_PORT='http': expected a int"),
    ({"SEMANTIC_TLS_KEY_FILE": "/k.pem"}, "SEMANTIC_TLS_CERT_FILE is not set but SEMANTIC_TLS_KEY_FILE is"),
])
def test_bad_settings_are_refused_naming_them(tmp_path, env, message):
    with pytest.raises(SettingsError) as refused:
        _settings(tmp_path, SEMANTIC_API_SECRET=SECRET, **env)
    assert message in str(refused.value)


def test_the_servers_do_not_start_on_a_bad_setting(tmp_path):
    for module, name in (("semantic.server", "metrics server"), ("semantic.pgwire", "SQL endpoint")):
        refused = subprocess.run([sys.executable, "-m", module, "--port", "0"], cwd=REPO_ROOT, capture_output=True,
                                 text=True, timeout=120,
                                 env={"PATH": "/usr/bin:/bin", "PLATFORM_DATA_DIR": str(tmp_path),
                                      "SEMANTIC_API_SECRET": SECRET, "SEMANTIC_RATE_LIMIT": "5 per fortnight"})
        assert refused.returncode != 0
        assert f"{name}: SEMANTIC_RATE_LIMIT='5 per fortnight': not a rate limit" in refused.stderr


def test_the_python_client_says_why_over_tls(secured):
    with client(secured, "not-a-token") as api, pytest.raises(MetricsError) as refused:
        api.meta()
    assert refused.value.status == 403


def test_a_key_set_that_cannot_be_read_again_keeps_the_keys_held(tmp_path, caplog, secured):
    """A JWKS file (or URL) broken after start: tokens of the keys read before are still verified, and
    the failure is logged naming the setting, not answered as a server error."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(secured.keys.rsa["idp-file"], "idp-file")]}))
    keys = KeySet.from_environment({"SEMANTIC_JWKS_FILE": str(path), "SEMANTIC_JWKS_REFRESH_SECONDS": "0.01"})
    path.write_text("{truncated")
    time.sleep(0.05)
    token = secured.keys.token("idp-file")
    assert authenticate(token, keys).tenant_id == "t001"  # and the stale file is read again, in the background
    deadline = time.monotonic() + 10
    while "keeping the 1 keys already read" not in caplog.text:
        assert time.monotonic() < deadline, "the key set was not read again"
        time.sleep(0.05)
    assert f"SEMANTIC_JWKS_FILE ({path}): not valid JSON" in caplog.text
    assert authenticate(token, keys).tenant_id == "t001"
    with pytest.raises(KeyRefused, match=r"unknown key id \(kid\) 'new-key'; the current keys are idp-file"):
        keys.key_for("new-key", "RS256")


def test_an_audit_record_that_cannot_be_written_is_counted_and_the_request_still_answered(tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the audit folder should be")
    before = REGISTRY.get_sample_value("semantic_audit_errors_total") or 0
    AuditLog(blocked).write({"api": "rest", "route": "/cubejs-api/v1/load"})  # does not raise
    assert REGISTRY.get_sample_value("semantic_audit_errors_total") == before + 1
    assert f"audit record not written to {blocked}" in caplog.text


def test_the_mcp_servers_token_is_a_setting_read_once_and_never_printed(tmp_path):
    token = issue_token("a-secret-that-is-long-enough-for-hs256-tokens", "t001")
    settings = _settings(tmp_path, SEMANTIC_API_SECRET="s" * 32, SEMANTIC_MCP_TOKEN=token)
    assert settings.mcp_token == token and token not in repr(settings)
    assert _settings(tmp_path, SEMANTIC_API_SECRET="s" * 32).mcp_token is None
