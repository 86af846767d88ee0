"""TLS and basic auth for the agent's ``/metrics``, in the Prometheus exporter-toolkit's web
configuration file format (what node_exporter's and Prometheus' ``--web.config.file`` read):

```yaml
tls_server_config:
  cert_file: /etc/computewatch/agent.crt
  key_file: /etc/computewatch/agent.key
  client_auth_type: RequireAndVerifyClientCert   # optional: mutual TLS
  client_ca_file: /etc/computewatch/scrapers-ca.crt
  min_version: TLS12                             # TLS10 .. TLS13
basic_auth_users:                                # user: bcrypt hash (htpasswd -nBC 10 "" ...)
  prometheus: $2y$10$...
http_server_config:
  headers: {Strict-Transport-Security: max-age=31536000}
```

The same file passes ``promtool check web-config``. Client certificates: ``NoClientCert``
(default), ``VerifyClientCertIfGiven`` and ``RequireAndVerifyClientCert``; a
``client_ca_file`` alone means the latter. The exporter-toolkit's ``RequestClientCert`` and
``RequireAnyClientCert`` (ask for a certificate and not verify it), ``cipher_suites``,
``curve_preferences`` and ``client_allowed_sans`` are refused by name: Python's TLS cannot
do the first two, and settings silently ignored would be a false sense of security. The
file is read when the exporter starts (`load_web_config`); its certificates are loaded then.
Passwords are checked with bcrypt; a good (user, password) pair is remembered for 10 minutes
so scrapes do not pay bcrypt each time, and an unknown user costs as much as a known one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
import time
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from computewatch.config import PathError, load_yaml_model

__all__ = ["BasicAuth", "TlsServerConfig", "WebConfig", "load_web_config"]

ClientAuth = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
                     "RequestClientCert", "RequireAnyClientCert"]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_UNSUPPORTED = ("cipher_suites", "curve_preferences", "client_allowed_sans",
                "prefer_server_cipher_suites")
_CACHE_S = 600.0
_DUMMY = b"$2b$10$" + b"." * 53  # a well-formed hash that matches no password


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsServerConfig(_Model):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth | None = None
    client_ca_file: Path | None = None
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in _UNSUPPORTED:
                if key in data:
                    raise PathError((key,), "not supported by computewatch (remove it; the "
                                    "TLS defaults of Python's ssl module apply)")
        return data

    @model_validator(mode="after")
    def _client_auth(self) -> TlsServerConfig:
        if self.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
            raise PathError(("client_auth_type",), "not supported: Python's TLS verifies "
                            "every client certificate it asks for; use "
                            "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                            self.client_auth_type)
        if self.effective_client_auth != "NoClientCert" and self.client_ca_file is None:
            raise PathError(("client_ca_file",), f"{self.effective_client_auth} needs the "
                            "CA that signs the scrapers' certificates")
        if _VERSIONS[self.min_version] > _VERSIONS[self.max_version]:
            raise PathError(("min_version",), f"is above max_version {self.max_version}",
                            self.min_version)
        return self

    @property
    def effective_client_auth(self) -> str:
        if self.client_auth_type is not None:
            return self.client_auth_type
        return "RequireAndVerifyClientCert" if self.client_ca_file else "NoClientCert"

    def context(self) -> ssl.SSLContext:
        """The server's TLS context, certificates loaded (a missing file is an OSError)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _VERSIONS[self.min_version]
        ctx.maximum_version = _VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"cannot load tls_server_config cert_file {str(self.cert_file)!r} "
                          f"and key_file {str(self.key_file)!r}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
        auth = self.effective_client_auth
        if auth != "NoClientCert":
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise OSError(f"cannot load tls_server_config client_ca_file "
                              f"{str(self.client_ca_file)!r}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
            ctx.verify_mode = (ssl.CERT_REQUIRED if auth == "RequireAndVerifyClientCert"
                               else ssl.CERT_OPTIONAL)
        return ctx


class HttpServerConfig(_Model):
    http2: bool = True  # the exporter-toolkit's default; /metrics is served over HTTP/1.1
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfig(_Model):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hashes(self) -> WebConfig:
        for user, hashed in self.basic_auth_users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
                raise PathError(("basic_auth_users", user), "must be a bcrypt hash "
                                "($2y$..., 60 characters; e.g. htpasswd -nBC 10 \"\" | "
                                "tr -d ':')")
        return self

    def basic_auth(self) -> BasicAuth | None:
        return BasicAuth(self.basic_auth_users) if self.basic_auth_users else None


class BasicAuth:
    """Checks ``Authorization: Basic ...`` against bcrypt hashes, remembering good pairs."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._good: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<BasicAuth for {len(self._users)} user(s)>"

    def check(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        hashed = self._users.get(user)
        key = hashlib.sha256(f"{user}\x00{password}".encode()).digest()
        now = time.monotonic()
        with self._lock:
            if hashed is not None and self._good.get(key, 0.0) > now:
                return True
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY) and hashed is not None
        if ok:
            with self._lock:
                if len(self._good) > 1024:
                    self._good.clear()
                self._good[key] = now + _CACHE_S
        return ok


def load_web_config(path: Path | str) -> WebConfig:
    """Parse and validate; a problem is a one-line ConfigError (file:line: field: ...).
    Relative file names are relative to the file's folder, as the exporter-toolkit reads
    them."""
    path = Path(path)
    config = load_yaml_model(path, WebConfig)
    tls = config.tls_server_config
    if tls is not None:
        base = path.parent
        tls.cert_file, tls.key_file = base / tls.cert_file, base / tls.key_file
        if tls.client_ca_file is not None:
            tls.client_ca_file = base / tls.client_ca_file
    return config
