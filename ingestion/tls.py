"""TLS for the platform's servers: a certificate and its private key, named by two settings.

Each server reads its own pair (`COLLECTOR_TLS_CERT_FILE`/`COLLECTOR_TLS_KEY_FILE`,
`SEMANTIC_TLS_CERT_FILE`/`SEMANTIC_TLS_KEY_FILE`, ...): with both set it serves TLS only; with
neither, plain TCP (bind it to loopback or put it behind a proxy that terminates TLS). The files are
loaded once when the settings are read, so a missing file or a key that does not belong to the
certificate stops the server at start, naming the setting, rather than failing the first client.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM: the server's certificate, then any intermediates
    key: Path  # PEM: its private key (unencrypted)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context (TLS 1.2 or later) holding the certificate and key."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # no password: an encrypted key fails here rather than OpenSSL prompting on a terminal
        context.load_cert_chain(self.cert, self.key, password=lambda: b"")
        return context

    def uvicorn_options(self) -> dict[str, str]:
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}


def tls_from(env: Mapping[str, str], cert_setting: str, key_setting: str) -> TlsFiles | None:
    """The pair the two settings name, checked by loading it; None when neither is set.
    ValueError naming the setting at fault."""
    cert, key = env.get(cert_setting, "").strip(), env.get(key_setting, "").strip()
    if not cert and not key:
        return None
    if not cert or not key:
        missing, given = (key_setting, cert_setting) if cert else (cert_setting, key_setting)
        raise ValueError(f"{missing} is not set but {given} is: TLS needs both the certificate and its key")
    for setting, path in ((cert_setting, cert), (key_setting, key)):
        if not Path(path).is_file():
            raise ValueError(f"{setting}={path!r}: no such file")
    files = TlsFiles(Path(cert).resolve(), Path(key).resolve())
    try:
        files.server_context()
    except ssl.SSLError as exc:
        raise ValueError(f"{cert_setting}={cert!r} and {key_setting}={key!r} cannot serve TLS: "
                         f"{exc.reason or exc} (a PEM certificate and the unencrypted PEM key that belongs to it)")\
            from None
    except OSError as exc:
        raise ValueError(f"{cert_setting}/{key_setting}: cannot be read ({exc.strerror})") from None
    return files
