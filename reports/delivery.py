"""Deliver reports: email over SMTP with the PDFs attached, and Slack-compatible webhooks.

Every delivery is retried with exponential backoff when the failure may pass (a refused or dropped
connection, an SMTP 4xx, an HTTP 5xx, 408 or 429) and given up at once when it cannot (an invalid
address, an SMTP 5xx, another HTTP 4xx). Nothing here raises for a failed delivery: each attempt is
logged, and the caller gets one `Delivery` per recipient or webhook to report in its run, so a
mail server that is down never fails or blocks the data pipeline.

Settings come from the environment (see `Settings.from_env`); a channel without settings is off.
Webhook URLs carry their secret in the path (Slack's do), so logs and results show the host only.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import httpx

# local@domain, the domain with a dot or `localhost`; stricter checks are the server's to make
ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
RETRYABLE_HTTP = {408, 425, 429}
Log = Callable[[str], None]


class Permanent(Exception):
    """A failure that another attempt cannot mend."""


class Transient(Exception):
    """A failure that may pass: worth another attempt after a wait."""


@dataclass(frozen=True)
class Delivery:
    channel: str  # email, webhook, alert
    target: str  # a recipient address, or a webhook's scheme://host
    ok: bool
    attempts: int
    error: str = ""

    def line(self) -> str:
        outcome = "delivered" if self.ok else f"FAILED: {self.error}"
        return f"{self.channel} to {self.target}: {outcome} ({self.attempts} attempt{'s' * (self.attempts != 1)})"


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    backoff_seconds: float = 2.0  # the first wait; each next one doubles
    timeout_seconds: float = 10.0  # per connection or request


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 25
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = "reports@localhost"
    security: str = "none"  # none, starttls or ssl


@dataclass(frozen=True)
class Settings:
    smtp: Smtp | None = None
    recipients: tuple[str, ...] = ()
    webhook_url: str = ""
    alert_webhook_url: str = ""
    site_url: str = "http://127.0.0.1:3100"
    retry: Retry = Retry()
    # a setting that is wrong, by channel ("email", "webhook", "alert"): that channel reports it instead of sending
    problems: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """REPORTS_SMTP_HOST (email is off without it), REPORTS_SMTP_PORT, REPORTS_SMTP_USER,
        REPORTS_SMTP_PASSWORD, REPORTS_SMTP_SECURITY (none, starttls, ssl), REPORTS_EMAIL_FROM,
        REPORTS_EMAIL_TO (comma-separated), REPORTS_WEBHOOK_URL, REPORTS_ALERT_WEBHOOK_URL,
        REPORTS_SITE_URL (the links), REPORTS_DELIVERY_ATTEMPTS, REPORTS_DELIVERY_BACKOFF_SECONDS,
        REPORTS_DELIVERY_TIMEOUT_SECONDS."""
        problems: dict[str, str] = {}
        smtp = None
        if env.get("REPORTS_SMTP_HOST"):
            security = env.get("REPORTS_SMTP_SECURITY", "none")
            if security not in ("none", "starttls", "ssl"):
                problems["email"] = f"REPORTS_SMTP_SECURITY must be none, starttls or ssl, not {security!r}"
            port = _number(env, "REPORTS_SMTP_PORT", "465" if security == "ssl" else "25", int, problems, "email")
            sender = env.get("REPORTS_EMAIL_FROM", "reports@localhost")
            if not valid_address(sender):
                problems.setdefault("email", f"REPORTS_EMAIL_FROM: {sender!r} is not an email address")
            smtp = Smtp(host=env["REPORTS_SMTP_HOST"], port=port or 25, user=env.get("REPORTS_SMTP_USER", ""),
                        password=env.get("REPORTS_SMTP_PASSWORD", ""), sender=sender, security=security)
            if not env.get("REPORTS_EMAIL_TO", "").strip():
                problems.setdefault("email", "REPORTS_EMAIL_TO is empty: name the recipients, comma-separated")
        for channel, name in (("webhook", "REPORTS_WEBHOOK_URL"), ("alert", "REPORTS_ALERT_WEBHOOK_URL")):
            url = env.get(name, "")
            if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
                problems[channel] = f"{name} must be an http(s) URL with a host, not {redact(url)!r}"
        retry = Retry(
            attempts=_number(env, "REPORTS_DELIVERY_ATTEMPTS", "4", int, problems, "retry") or 4,
            backoff_seconds=_number(env, "REPORTS_DELIVERY_BACKOFF_SECONDS", "2", float, problems, "retry") or 0.0,
            timeout_seconds=_number(env, "REPORTS_DELIVERY_TIMEOUT_SECONDS", "10", float, problems, "retry") or 10.0,
        )
        if "retry" in problems:  # every channel retries: a wrong retry setting stops them all, each naming it
            for channel in ("email", "webhook", "alert"):
                problems.setdefault(channel, problems["retry"])
        recipients = tuple(a.strip() for a in env.get("REPORTS_EMAIL_TO", "").split(",") if a.strip())
        return cls(smtp=smtp, recipients=recipients, webhook_url=env.get("REPORTS_WEBHOOK_URL", ""),
                   alert_webhook_url=env.get("REPORTS_ALERT_WEBHOOK_URL", ""),
                   site_url=env.get("REPORTS_SITE_URL", "http://127.0.0.1:3100").rstrip("/"), retry=retry,
                   problems=problems)


def valid_address(address: str) -> bool:
    _, parsed = parseaddr(address)
    return bool(parsed) and parsed == address.strip() and ADDRESS.match(parsed) is not None


def redact(url: str) -> str:
    """A webhook URL without its path and query, where its secret is."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.scheme and parts.netloc else "<not a URL>"


def with_retries(send: Callable[[], object], retry: Retry, log: Log, what: str) -> tuple[int, str]:
    """Call `send` until it succeeds, fails permanently or runs out of attempts, waiting
    `backoff * 2**n` between attempts. Returns the attempts made and the last error ("" if sent)."""
    error = ""
    for attempt in range(1, retry.attempts + 1):
        try:
            send()
            return attempt, ""
        except Permanent as failure:
            log(f"{what}: attempt {attempt} failed for good: {failure}")
            return attempt, str(failure)
        except Transient as failure:
            error = str(failure)
            if attempt == retry.attempts:
                log(f"{what}: attempt {attempt} of {retry.attempts} failed: {error}; giving up")
                break
            wait = retry.backoff_seconds * 2 ** (attempt - 1)
            log(f"{what}: attempt {attempt} of {retry.attempts} failed: {error}; retrying in {wait:g} s")
            time.sleep(wait)
    return retry.attempts, error


def send_email(settings: Settings, subject: str, body: str, attachments: Sequence[Path], log: Log) -> list[Delivery]:
    """One message to every valid recipient; one `Delivery` per recipient named in the settings."""
    if settings.smtp is None:
        return []
    if "email" in settings.problems:
        return [Delivery("email", ", ".join(settings.recipients) or "(no recipients)", False, 0,
                         settings.problems["email"])]
    invalid = [a for a in settings.recipients if not valid_address(a)]
    results = [Delivery("email", address, False, 0, f"REPORTS_EMAIL_TO: {address!r} is not an email address")
               for address in invalid]
    for result in results:
        log(f"email: {result.error}; not sent to it")
    valid = [a for a in settings.recipients if a not in invalid]
    if not valid:
        return results
    message = _message(settings.smtp.sender, valid, subject, body, attachments)
    refused: dict[str, tuple[int, bytes]] = {}

    def send() -> None:
        refused.clear()
        refused.update(_smtp_send(settings.smtp, message, valid, settings.retry.timeout_seconds))

    server = f"{settings.smtp.host}:{settings.smtp.port}"
    attempts, error = with_retries(send, settings.retry, log, f"email via {server}")
    for address in valid:
        if error:
            results.append(Delivery("email", address, False, attempts, f"via {server}: {error}"))
        elif address in refused:
            code, reason = refused[address]
            results.append(Delivery("email", address, False, attempts,
                                    f"the server refused this recipient: {code} {reason.decode(errors='replace')}"))
        else:
            results.append(Delivery("email", address, True, attempts))
    return results


def post_webhook(url: str, payload: dict, retry: Retry, log: Log, channel: str = "webhook") -> Delivery:
    """POST `payload` as JSON; any 2xx is delivered."""
    target = redact(url)

    def send() -> None:
        try:
            response = httpx.post(url, json=payload, timeout=retry.timeout_seconds)
        except httpx.HTTPError as error:  # refused, unreachable, timed out, dropped
            raise Transient(f"{type(error).__name__}: {error}") from error
        if response.is_success:
            return
        failure = f"HTTP {response.status_code} {response.reason_phrase}: {response.text[:200]}".rstrip(": ")
        if response.status_code >= 500 or response.status_code in RETRYABLE_HTTP:
            raise Transient(failure)
        raise Permanent(failure)

    attempts, error = with_retries(send, retry, log, f"{channel} to {target}")
    return Delivery(channel, target, not error, attempts, error)


def _message(sender: str, recipients: list[str], subject: str, body: str, attachments: Sequence[Path]) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(recipients), subject
    message["Date"], message["Message-ID"] = formatdate(localtime=True), make_msgid(domain="reports.local")
    message.set_content(body)
    for path in attachments:
        message.add_attachment(path.read_bytes(), maintype="application", subtype="pdf", filename=path.name)
    return message


def _smtp_send(smtp: Smtp, message: EmailMessage, recipients: list[str], timeout: float) -> dict:
    """Send once; returns the recipients the server refused (when it took the others)."""
    try:
        if smtp.security == "ssl":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password)
            return client.send_message(message, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as error:  # every recipient refused
        codes = [code for code, _ in error.recipients.values()]
        reasons = "; ".join(f"{a}: {c} {r.decode(errors='replace')}" for a, (c, r) in error.recipients.items())
        raise (Transient if any(400 <= c < 500 for c in codes) else Permanent)(
            f"the server refused every recipient ({reasons})") from error
    except smtplib.SMTPAuthenticationError as error:
        raise Permanent(f"login as REPORTS_SMTP_USER {smtp.user!r} refused: {error.smtp_code} "
                        f"{error.smtp_error.decode(errors='replace')}") from error
    except smtplib.SMTPConnectError as error:
        raise Transient(f"the server refused the connection: {error.smtp_code} "
                        f"{error.smtp_error.decode(errors='replace')}") from error
    except smtplib.SMTPResponseException as error:
        reason = f"{error.smtp_code} {error.smtp_error.decode(errors='replace')}"
        raise (Permanent if error.smtp_code >= 500 else Transient)(f"the server answered {reason}") from error
    except (smtplib.SMTPException, OSError) as error:  # refused, unreachable, timed out, disconnected
        raise Transient(f"{type(error).__name__}: {error}".rstrip(": ")) from error


def _number(env: Mapping[str, str], name: str, default: str, kind: type, problems: dict[str, str], channel: str):
    value = env.get(name, default)
    try:
        number = kind(value)
    except ValueError:
        problems.setdefault(channel, f"{name} must be {'a whole number' if kind is int else 'a number'}, "
                                     f"not {value!r}")
        return None
    if number < 0 or (kind is int and number == 0 and name.endswith("ATTEMPTS")):
        problems.setdefault(channel, f"{name} must be positive, not {value!r}")
        return None
    return number
