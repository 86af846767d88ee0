"""One endpoint's HTTP conversation: credentials, login, GET, paging and logout.

Session auth (the default): ``POST /redfish/v1/SessionService/Sessions``, the ``X-Auth-Token``
kept for later requests, one new login when a request answers 401, and the session deleted on
`Client.close`. ``auth: basic`` sends the credentials with every request instead. An
endpoint without ``username`` is read without credentials. The password and the token are
kept as ``SecretStr`` and never logged or shown in a repr. Redirects and links are followed
only within the configured service. Every failure is a `Fail` with one of `ERROR_TYPES`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from pydantic import SecretStr

from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._documents import dig

if TYPE_CHECKING:  # requests is imported when the collector first connects
    import requests

__all__ = ["CONNECTION_CODES", "ERROR_TYPES", "PARSE_CODES", "SERVICE_ROOT", "Client", "Fail",
           "default_session"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

ERROR_TYPES: tuple[str, ...] = (
    "unreachable", "timeout", "tls_error", "auth_failed", "http_error", "invalid_json",
    "missing_field", "unsupported", "error",
)
"""Failure codes; each is counted as ``error_type="redfish_<code>"``."""

SERVICE_ROOT = "/redfish/v1"
_SESSIONS = "/redfish/v1/SessionService/Sessions"
_MAX_PAGES = 1000  # a collection whose nextLink never ends must not loop forever
CONNECTION_CODES = frozenset({"unreachable", "timeout", "tls_error", "auth_failed"})
PARSE_CODES = frozenset({"invalid_json", "missing_field"})
_HEADERS = {"Accept": "application/json", "OData-Version": "4.0"}


class Fail(Exception):
    """One failure of one endpoint; ``code`` is an `ERROR_TYPES` entry."""

    def __init__(self, code: str, message: str, url: str = "", chassis: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.url, self.chassis = code, message, url, chassis


def default_session() -> requests.Session:
    import requests

    return requests.Session()


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception under requests' and urllib3's wrappers."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = exc.__cause__ or exc.__context__
        if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
            nxt = exc.args[0]
        if nxt is None:
            break
        exc = nxt
    return exc


def _describe(exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = getattr(cause, "verify_message", None) or str(cause) or type(cause).__name__
    return re.sub(r"<[^>]* at 0x[0-9a-f]+>: ", "", text)  # urllib3 object reprs say nothing


class Client:
    """One endpoint's HTTP conversation: credentials, login, GET, paging and logout."""

    def __init__(self, ep: RedfishEndpoint,
                 session_factory: Callable[[], requests.Session]) -> None:
        self.ep = ep
        self._factory = session_factory
        self._http: requests.Session | None = None
        self._password: SecretStr | None = None
        self._token: SecretStr | None = None
        self._session_uri: str | None = None

    def __repr__(self) -> str:  # the password and token stay out of every repr
        return f"Client({self.ep.url!r}, auth={self.ep.auth!r}, user={self.ep.username!r})"

    # --- credentials and sessions -------------------------------------------------------

    def _secret(self) -> SecretStr:
        if self._password is None:
            ep = self.ep
            if ep.password_env is not None:
                value = os.environ.get(ep.password_env)
                if value is None:
                    raise Fail("auth_failed", f"the environment variable {ep.password_env} "
                                "(password_env) is not set for the agent")
            else:
                assert ep.password_file is not None  # the config validator ensures one is set
                try:
                    value = ep.password_file.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise Fail("auth_failed", f"cannot read password_file "
                                f"{ep.password_file}: {exc.strerror or exc}") from None
            self._password = SecretStr(value)
        return self._password

    def _login(self) -> None:
        password = self._secret().get_secret_value()
        resp = self._send("POST", _SESSIONS,
                          json={"UserName": self.ep.username, "Password": password})
        url = self.absolute(_SESSIONS)
        if resp.status_code in (401, 403):
            raise Fail("auth_failed", f"session login refused (HTTP {resp.status_code}): check "
                        f"the username {self.ep.username!r} and the password", url)
        if not 200 <= resp.status_code < 300:
            raise Fail("http_error", f"session login: HTTP {resp.status_code} "
                        f"{resp.reason}{_redfish_message(resp)}", url)
        token = resp.headers.get("X-Auth-Token")
        if not token:
            raise Fail("auth_failed", f"session login answered HTTP {resp.status_code} without "
                        "an X-Auth-Token header: the service does not implement Redfish "
                        "sessions; set auth: basic for this endpoint", url)
        self._token = SecretStr(token)
        where = resp.headers.get("Location")
        if not where:  # some services name the new session only in the body
            try:
                body = json.loads(resp.content)
            except ValueError:
                body = None
            oid = body.get("@odata.id") if isinstance(body, dict) else None
            where = oid if isinstance(oid, str) else None
        self._session_uri = where if where and self._same_origin(self.absolute(where)) else None

    def _auth(self) -> dict[str, Any]:
        if not self.ep.username:
            return {}
        if self.ep.auth == "basic":
            return {"auth": (self.ep.username, self._secret().get_secret_value())}
        if self._token is None:
            self._login()
        assert self._token is not None
        return {"headers": {**_HEADERS, "X-Auth-Token": self._token.get_secret_value()}}

    # --- requests -----------------------------------------------------------------------

    def absolute(self, uri: str) -> str:
        return urljoin(self.ep.url + "/", uri)

    def _same_origin(self, url: str) -> bool:
        def origin(u: str) -> tuple[str, str | None, int]:
            p = urlsplit(u)
            return p.scheme, p.hostname, p.port or (443 if p.scheme == "https" else 80)

        try:
            return origin(url) == origin(self.ep.url)
        except ValueError:  # a link with a port that is not a number
            return False

    def _send(self, method: str, uri: str, **kw: Any) -> requests.Response:
        """One request, redirects followed only within the service; transport errors mapped."""
        import requests

        if self._http is None:
            self._http = self._factory()
            if not self.ep.verify_tls and self.ep.url.startswith("https:"):
                log.warning("redfish: %s: TLS certificate verification is off for this "
                            "endpoint (verify_tls: false)", self.ep.source)
        kw.setdefault("headers", _HEADERS)
        url = self.absolute(uri)
        for _hop in range(4):
            if not self._same_origin(url):
                raise Fail("http_error", "refused to follow a link or redirect to another "
                            "host (credentials stay with the configured service)", url)
            try:
                resp = self._http.request(method, url, timeout=self.ep.timeout,
                                          verify=self.ep.verify_tls, allow_redirects=False,
                                          **kw)
            except requests.Timeout:
                raise Fail("timeout", f"no answer within {self.ep.timeout:g} s", url) from None
            except requests.exceptions.SSLError as exc:
                raise Fail("tls_error", _tls_message(_describe(exc)), url) from None
            except requests.ConnectionError as exc:
                raise Fail("unreachable", f"cannot connect: {_describe(exc)}", url) from None
            except requests.RequestException as exc:
                raise Fail("http_error", _describe(exc), url) from None
            if resp.is_redirect and method == "GET" and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                continue
            return resp
        raise Fail("http_error", "too many redirects", url)

    def get(self, uri: str) -> dict[str, Any]:
        """A resource as a JSON object; 401 with a session logs in again, once."""
        auth = self._auth()
        resp = self._send("GET", uri, **auth)
        if resp.status_code == 401 and self.ep.auth == "session" and self.ep.username:
            self._token = None
            resp = self._send("GET", uri, **self._auth())
        url = self.absolute(uri)
        if resp.status_code in (401, 403):
            raise Fail("auth_failed", f"HTTP {resp.status_code}: the credentials of "
                        f"{self.ep.username or 'nobody'!r} were refused", url)
        if not 200 <= resp.status_code < 300:
            raise Fail("http_error", f"HTTP {resp.status_code} "
                        f"{resp.reason}{_redfish_message(resp)}", url)
        try:
            doc = json.loads(resp.content)
        except ValueError as exc:
            start = resp.content[:40].decode("utf-8", "replace")
            raise Fail("invalid_json", f"the answer is not JSON ({exc}; it starts "
                        f"{start!r})", url) from None
        if not isinstance(doc, dict):
            raise Fail("invalid_json", f"expected a JSON object, got {type(doc).__name__}",
                        url)
        return doc

    def members(self, uri: str, first: Mapping[str, Any] | None = None) -> list[str]:
        """The member URIs of a collection, following ``Members@odata.nextLink`` pages."""
        out: list[str] = []
        seen: set[str] = set()
        page_uri: str | None = uri
        doc = first
        while page_uri is not None and page_uri not in seen and len(seen) < _MAX_PAGES:
            seen.add(page_uri)
            if doc is None:
                doc = self.get(page_uri)
            members = doc.get("Members")
            if not isinstance(members, list):
                raise Fail("missing_field", "the collection has no Members list",
                            self.absolute(page_uri))
            for m in members:
                oid = m.get("@odata.id") if isinstance(m, Mapping) else None
                if not isinstance(oid, str):
                    raise Fail("missing_field", f"a collection member has no @odata.id: {m!r}",
                                self.absolute(page_uri))
                out.append(oid)
            nxt = doc.get("Members@odata.nextLink")
            page_uri, doc = (nxt if isinstance(nxt, str) and nxt else None), None
        return out

    def close(self) -> None:
        """Delete the session (best effort) and drop the connection pool."""
        if self._http is None:
            return
        if self._token is not None and self._session_uri:
            try:
                self._send("DELETE", self._session_uri,
                           headers={**_HEADERS, "X-Auth-Token": self._token.get_secret_value()})
            except Fail as exc:
                log.debug("redfish: %s: deleting the session failed: %s", self.ep.source,
                          exc.message)
        self._token = self._session_uri = None
        self._http.close()
        self._http = None


def _redfish_message(resp: requests.Response) -> str:
    """``: <message>`` from a Redfish error body, or nothing."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        return ""
    message = dig(body, ("error", "message")) or dig(
        body, ("error", "@Message.ExtendedInfo", 0, "Message"))
    return f": {message}" if isinstance(message, str) and message else ""


def _tls_message(detail: str) -> str:
    if "certificate" in detail.lower():
        return (f"TLS certificate not trusted ({detail}); install the BMC's CA for the agent "
                "(e.g. REQUESTS_CA_BUNDLE) or set verify_tls: false for this endpoint")
    return f"TLS handshake failed ({detail}); is the service speaking https on this port?"
