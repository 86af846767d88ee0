"""The alert bridge's configuration (YAML), validated at load and free of I/O.

Secrets (bearer token, basic-auth password, robot signing keys, webhook URLs that carry an
access token) are never written in the file itself: each is ``{env: NAME}`` or
``{file: PATH}`` and is read by `resolve_secrets` when the bridge starts, so a config can be
committed and an error message never shows a secret. A minimal file:

```yaml
auth:
  bearer_token: {env: BRIDGE_TOKEN}
targets:
  noc-dingtalk:
    kind: dingtalk
    url: {env: DINGTALK_URL}        # https://oapi.dingtalk.com/robot/send?access_token=...
    secret: {env: DINGTALK_SECRET}  # the robot's SEC... signing key
receivers:
  noc: [noc-dingtalk]               # Alertmanager posts to /alertmanager/noc
```
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from computewatch.addresses import parse_listen
from computewatch.config import ConfigError, FieldPath, PathError, load_yaml_model, suggest_known
from computewatch.durations import Duration
from computewatch.redact import register_secret

__all__ = [
    "KIND_DEFAULTS",
    "AuthConfig",
    "BasicAuth",
    "BridgeConfig",
    "DeliveryConfig",
    "KindDefaults",
    "RateLimit",
    "SecretRef",
    "ServerConfig",
    "TargetConfig",
    "load_bridge_config",
    "resolve_secrets",
]

Kind = Literal["dingtalk", "wecom", "feishu", "slack", "webhook"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DAY_S = 86_400.0


def _seconds(value: float, *, zero: bool = False) -> float:
    """A duration the bridge can wait: finite, positive (or zero where allowed), at most a
    day; NaN and infinities load in YAML (``.nan``, ``.inf``) but would fail at start."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero) or value > _DAY_S:
        low = "0" if zero else "more than 0"
        raise ValueError(f"must be {low} and at most a day (86400 s)")
    return value


class SecretRef(_Model):
    """Where a secret lives: an environment variable or a file (one of the two)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self, source: str, path: FieldPath) -> str:
        """The secret's value, registered with `computewatch.redact` so that no later log
        line or error shows it; a missing variable or file is a ConfigError naming it."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(source, f"environment variable {self.env!r} is not set "
                                  f"or empty", path=(*path, "env"))
            register_secret(value)
            return value
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(source, f"cannot read secret file {str(self.file)!r}: "
                              f"{exc.strerror}", path=(*path, "file")) from None
        if not value:
            raise ConfigError(source, f"secret file {str(self.file)!r} is empty",
                              path=(*path, "file"))
        register_secret(value)
        return value


class RateLimit(_Model):
    """At most ``messages`` sends in any window of ``per`` (a sliding window, not a bucket)."""

    messages: int = Field(ge=1, le=1_000_000)
    per: Duration

    _per = field_validator("per")(lambda v: _seconds(v))


class BasicAuth(_Model):
    username: str = Field(min_length=1)
    password: SecretRef


class AuthConfig(_Model):
    """What Alertmanager must present: a bearer token, basic auth, or either of the two."""

    bearer_token: SecretRef | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _something(self) -> AuthConfig:
        if self.bearer_token is None and self.basic is None:
            raise ValueError("the bridge requires bearer_token or basic (or both)")
        return self


class DeliveryConfig(_Model):
    timeout: Duration = 5.0
    max_attempts: int = Field(5, ge=1, le=50)
    backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    shutdown_grace: Duration = 10.0

    _positive = field_validator("timeout", "backoff", "max_backoff")(lambda v: _seconds(v))
    _grace = field_validator("shutdown_grace")(lambda v: _seconds(v, zero=True))


class ServerConfig(_Model):
    """How the HTTP side protects itself: every limit a refusal is counted under."""

    max_connections: int = Field(1000, ge=1, le=100_000)  # more: 503 and closed at once
    backlog: int = Field(2048, ge=16, le=65_535)  # connections the kernel queues
    header_timeout: Duration = 10.0  # the request line and headers, from connect or last reply
    body_timeout: Duration = 30.0  # the whole body, from the end of the headers
    keep_alive: Duration = 5.0  # an idle connection between requests
    max_json_depth: int = Field(32, ge=4, le=1_000)  # nesting of arrays and objects
    shutdown_timeout: Duration = 2.0  # for requests in flight when the bridge stops

    _durations = field_validator("header_timeout", "body_timeout", "keep_alive",
                                 "shutdown_timeout")(lambda v: _seconds(v))


class KindDefaults(BaseModel):
    """What a kind of target takes unless its config says otherwise."""

    max_bytes: int | None
    rate_limits: tuple[RateLimit, ...]
    format: Literal["markdown", "text"]


KIND_DEFAULTS: dict[str, KindDefaults] = {
    # DingTalk: 20 messages per robot per minute (exceeding it mutes the robot for 10 min);
    # the brief's 20,000-byte message limit.
    "dingtalk": KindDefaults(max_bytes=20_000, rate_limits=(RateLimit(messages=20, per=60.0),),
                             format="markdown"),
    # WeCom group robot: 20 messages per minute; markdown content 4,096 bytes, text 2,048.
    "wecom": KindDefaults(max_bytes=None, rate_limits=(RateLimit(messages=20, per=60.0),),
                          format="markdown"),
    # Feishu custom bot: 100 per minute and 5 per second; the request body at most 20 KB.
    "feishu": KindDefaults(max_bytes=20 * 1024,
                           rate_limits=(RateLimit(messages=5, per=1.0),
                                        RateLimit(messages=100, per=60.0)),
                           format="markdown"),
    # Slack incoming webhooks: about one message per second; text up to 40,000 characters.
    "slack": KindDefaults(max_bytes=40_000, rate_limits=(RateLimit(messages=1, per=1.0),),
                          format="markdown"),
    "webhook": KindDefaults(max_bytes=None, rate_limits=(), format="markdown"),
}
WECOM_LIMITS = {"markdown": 4096, "text": 2048}


class TargetConfig(_Model):
    kind: Kind
    url: str | SecretRef
    secret: SecretRef | None = None  # signing key: DingTalk/Feishu "sign", webhook HMAC
    language: Literal["zh", "zh-CN", "en"] = "zh"
    """zh (or zh-CN): the catalogue's Chinese, the rules' zh annotations, Chinese place names;
    en: English."""
    format: Literal["markdown", "text"] | None = None
    rate_limit: RateLimit | list[RateLimit] | None = None  # one window or several
    max_bytes: int | None = Field(None, ge=256)
    timezone: str | None = None  # how times are shown; default Asia/Shanghai (zh), UTC (en)

    @model_validator(mode="after")
    def _kind_rules(self) -> TargetConfig:
        if self.kind == "webhook" and self.secret is None:
            raise PathError(("secret",), "a webhook target must have a signing secret")
        if self.kind in ("wecom", "slack") and self.secret is not None:
            raise PathError(("secret",), f"{self.kind} has no request signing; the URL's key "
                            f"is the credential (give it as url: {{env: ...}})")
        if isinstance(self.url, str) and not self.url.startswith(("http://", "https://")):
            raise PathError(("url",), "must be an http:// or https:// URL", self.url)
        return self

    @property
    def effective_format(self) -> str:
        return self.format or KIND_DEFAULTS[self.kind].format

    @property
    def effective_rate_limits(self) -> tuple[RateLimit, ...]:
        if self.rate_limit is None:
            return KIND_DEFAULTS[self.kind].rate_limits
        if isinstance(self.rate_limit, RateLimit):
            return (self.rate_limit,)
        return tuple(self.rate_limit)

    @property
    def effective_max_bytes(self) -> int | None:
        if self.max_bytes is not None:
            return self.max_bytes
        if self.kind == "wecom":
            return WECOM_LIMITS[self.effective_format]
        return KIND_DEFAULTS[self.kind].max_bytes

    @property
    def effective_timezone(self) -> str:
        return self.timezone or ("UTC" if self.language == "en" else "Asia/Shanghai")


class BridgeConfig(_Model):
    listen: str = "127.0.0.1:9095"
    auth: AuthConfig
    max_body_bytes: int = Field(1 << 20, ge=1024)
    external_url: str | None = None  # link base for messages, instead of Alertmanager's own
    topology: Path | None = None
    """The topology whose Chinese place names Chinese messages show (default: the shipped
    one)."""
    dead_letter: Path = Path("var/alert-bridge/dead-letter.jsonl")
    delivery: DeliveryConfig = DeliveryConfig()
    server: ServerConfig = ServerConfig()
    targets: dict[str, TargetConfig] = Field(min_length=1)
    receivers: dict[str, list[str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> BridgeConfig:
        known = sorted(self.targets)
        for receiver, names in self.receivers.items():
            if not names:
                raise PathError(("receivers", receiver), "a receiver needs at least one target")
            for i, name in enumerate(names):
                if name not in self.targets:
                    raise PathError(("receivers", receiver, i),
                                    f"unknown target {name!r} ({suggest_known(name, known)})",
                                    name)
        try:
            parse_listen(self.listen, "address")
        except ValueError as exc:
            raise PathError(("listen",), f"{exc} (e.g. 127.0.0.1:9095)") from None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        for name, target in self.targets.items():
            try:
                ZoneInfo(target.effective_timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise PathError(("targets", name, "timezone"), "unknown time zone",
                                target.timezone) from None
        return self


def load_bridge_config(path: Path) -> BridgeConfig:
    """Parse and validate; every problem is a one-line ConfigError (file:line: field: ...)."""
    return load_yaml_model(Path(path), BridgeConfig)


class ResolvedSecrets:
    """The secrets a running bridge needs, read once at start; never logged or repr'd."""

    def __init__(self) -> None:
        self.bearer_token: str | None = None
        self.basic: tuple[str, str] | None = None
        self.urls: dict[str, str] = {}
        self.signing: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"<ResolvedSecrets for {len(self.urls)} targets>"


def resolve_secrets(config: BridgeConfig, source: str) -> ResolvedSecrets:
    """Read every ``{env}``/``{file}`` reference; the first that fails is a ConfigError."""
    out = ResolvedSecrets()
    if config.auth.bearer_token is not None:
        out.bearer_token = config.auth.bearer_token.resolve(source, ("auth", "bearer_token"))
    if config.auth.basic is not None:
        out.basic = (config.auth.basic.username,
                     config.auth.basic.password.resolve(source, ("auth", "basic", "password")))
    for name, target in config.targets.items():
        url = target.url
        if isinstance(url, SecretRef):
            url = url.resolve(source, ("targets", name, "url"))
            if not url.startswith(("http://", "https://")):
                raise ConfigError(source, "the URL it holds is not http:// or https://",
                                  path=("targets", name, "url"))
        out.urls[name] = url
        out.signing[name] = (target.secret.resolve(source, ("targets", name, "secret"))
                             if target.secret is not None else None)
    return out
