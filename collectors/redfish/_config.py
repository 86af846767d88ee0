"""`RedfishEndpoint`: one BMC's settings in the node config, validated at load, no I/O.

Plain ``http://`` is accepted only for a loopback address (a local mockup or tunnel);
credentials in the URL are refused, and so is a password written in the config: it comes from
``password_env`` or ``password_file`` when the collector first connects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from computewatch.config import PathError
from computewatch.durations import Duration

__all__ = ["RedfishEndpoint"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RedfishEndpoint(BaseModel):
    """One Redfish service (a BMC): where it is, how to log in, which chassis to read."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str
    """``https://bmc.example[:port]``; ``http://`` only for a loopback address."""
    username: str = ""
    password_env: str | None = None
    """Name of the environment variable that holds the password (not the password)."""
    password_file: Path | None = None
    """File whose content (trailing newline removed) is the password."""
    auth: Literal["session", "basic"] = "session"
    verify_tls: bool = True
    timeout: Duration = 5.0
    """Per request: connecting, and then each wait for data."""
    chassis: list[str] = []
    """Chassis ids to read; empty: every chassis of the service that reports power."""
    scope: Literal["facility", "it", "cooling", "other"] = "it"
    meter: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_password(cls, data: Any) -> Any:
        """A password written into the config is refused without being echoed."""
        if isinstance(data, Mapping):
            for key in ("password", "pass", "passwd", "secret", "token"):
                if key in data:
                    raise PathError((key,), "a password is never written in the config: put it "
                                    "in an environment variable (password_env) or a file "
                                    "(password_file)")
            url = data.get("url")
            if isinstance(url, str) and "@" in urlsplit(url.strip()).netloc:
                raise PathError(("url",), "credentials do not belong in the url: use username "
                                "and password_env or password_file")
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        """Normalise to ``scheme://host[:port]`` and refuse what would leak credentials."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be https://<bmc host>[:port] (http:// only for a loopback "
                             "address)")
        try:
            parts.port  # noqa: B018 (raises for a port that is not a number)
        except ValueError:
            raise ValueError("the port is not a number between 0 and 65535") from None
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be the service's address only, e.g. https://bmc.example; "
                             "the /redfish/v1 path is added by the collector")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("plain http is allowed only to a loopback address (a local mockup "
                             "or tunnel): BMC credentials would cross the network in clear "
                             "text; use https://")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _check_credentials(self) -> RedfishEndpoint:
        # PathError without a value: these fields may hold a pasted password, never echo one.
        if self.password_env is not None and self.password_file is not None:
            raise PathError(("password_file",), "set password_env or password_file, not both")
        if self.password_env is not None and not _ENV_NAME.match(self.password_env):
            raise PathError(("password_env",), "must be the name of an environment variable "
                            "that holds the password (letters, digits and _, e.g. "
                            "BMC_PASSWORD), not the password itself")
        has_password = self.password_env is not None or self.password_file is not None
        if has_password and not self.username:
            raise PathError(("username",), "required when password_env or password_file "
                            "is set")
        if self.username and not has_password:
            raise PathError(("username",), "needs password_env or password_file (a password "
                            "is never written in the config)")
        seen: set[str] = set()
        for i, cid in enumerate(self.chassis):
            if not cid or cid in seen:
                raise PathError(("chassis", i), "empty or repeated chassis id", cid)
            seen.add(cid)
        if self.meter is not None and not self.meter.strip():
            raise PathError(("meter",), "must not be empty (leave it out for the default)")
        return self

    @property
    def source(self) -> str:
        """The ``source`` label: ``host:port``, the port made explicit."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
