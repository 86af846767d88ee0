"""`SnmpDevice`: one SNMP meter's settings in the node config, validated at load, no I/O.

Secrets never sit in the model's repr: the community is a `SecretStr`, and SNMPv3 keys are
only ever named by the environment variables that hold them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from computewatch.collectors.snmp._profiles import (
    AUTO,
    FrozenModel,
    is_profile_name,
    shipped_profiles,
)
from computewatch.config import (
    PathError,
    suggest_known,
)
from computewatch.durations import Duration

__all__ = ["AuthProtocol", "PrivProtocol", "SnmpDevice"]

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256"]


class SnmpDevice(FrozenModel):
    """One SNMP meter: where it answers, how to authenticate, which profile reads it
    (``auto``, the default: the collector picks a shipped profile by sysObjectID and by the
    MIBs the device answers).

    Secrets never sit in the model's repr: the community is a `SecretStr`, and SNMPv3 keys
    are only ever named by the environment variables that hold them.
    """

    host: str = Field(min_length=1)
    port: int = Field(161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    community: SecretStr | None = None
    community_env: str | None = None
    user: str | None = None
    auth_protocol: AuthProtocol | None = None
    auth_key_env: str | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key_env: str | None = None
    context: str = ""
    profile: str = Field(AUTO, min_length=1)
    meter: str | None = None
    scope: Literal["facility", "it", "cooling", "other"] = "facility"
    timeout: Duration = 2.0
    retries: int = Field(1, ge=0, le=10)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        """YAML reads ``version: 3`` as a number and people write ``v2c``: both are meant."""
        text = str(value).strip().lower().removeprefix("v") if value is not None else value
        return text if text in ("2c", "3") else value

    @field_validator("community_env", "auth_key_env", "priv_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value

    @field_validator("profile")
    @classmethod
    def _profile_ref(cls, value: str) -> str:
        if is_profile_name(value) and value != AUTO:
            known = list(shipped_profiles())
            if value not in known:
                raise ValueError(f"unknown SNMP profile {value!r} ({suggest_known(value, known)};"
                                 f" '{AUTO}' to pick by the device; or a path to a YAML file)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SnmpDevice:
        if self.community is not None and self.community_env is not None:
            raise PathError(("community_env",), "give community or community_env, not both")
        v3 = ("user", "auth_protocol", "auth_key_env", "priv_protocol", "priv_key_env")
        if self.version == "2c":
            for key in v3:
                if getattr(self, key) is not None:
                    raise PathError((key,), "is for SNMPv3 (version: '3')")
            return self
        if self.community is not None or self.community_env is not None:
            key = "community" if self.community is not None else "community_env"
            raise PathError((key,), "is for SNMPv2c; SNMPv3 authenticates with user and keys")
        if not self.user:
            raise PathError(("user",), "SNMPv3 needs a user")
        for proto, env in (("auth_protocol", "auth_key_env"), ("priv_protocol", "priv_key_env")):
            if (getattr(self, proto) is None) != (getattr(self, env) is None):
                missing = env if getattr(self, env) is None else proto
                raise PathError((missing,), f"{proto} and {env} go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise PathError(("priv_protocol",), "SNMPv3 privacy needs authentication too "
                                                "(auth_protocol, auth_key_env)")
        return self

    @property
    def source(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"snmp://{host}:{self.port}"
