"""Load YAML config into pydantic models, with errors that point at file, line and field.

Operators edit topology and policy files by hand; an error they cannot locate is an error
they cannot fix. So every failure becomes one `ConfigError` line:

    topology.yaml:57: sites[3].hub: unknown hub 'xyz' (known: gba, jjj, yrd)
    topology.yaml:12: sites[0].lat: must be <= 90 (got 200)

Field checks come from pydantic. Cross-reference checks (an id that names nothing, a
duplicate) live in the models' `model_validator(mode="after")` and raise `PathError`, which
carries the offending field's path relative to the model that raised it; pydantic keeps the
exception object in the error's context, so the loader can join the two paths and find the line.

What no config file needs is refused here, for every loader, before or right after parsing:
a file over `MAX_CONFIG_BYTES`, nesting deeper than `MAX_DEPTH`, aliases that expand to more
than `MAX_VALUES` values (a "billion laughs" document), a character YAML forbids (a NUL byte),
a NaN or infinite number anywhere (YAML's ``.nan``/``.inf``, or text a field reads as one),
and an integer beyond 64 bits. Parsing uses libyaml when PyYAML has it (10x faster).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from computewatch.i18n import N_, _, current_language, restate
from computewatch.redact import is_secret_key, redact

__all__ = [
    "CONFIG_MESSAGES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_LISTED",
    "MAX_VALUES",
    "ConfigError",
    "FieldPath",
    "PathError",
    "format_path",
    "load_yaml_model",
    "load_yaml_model_from_text",
    "message_in_language",
    "suggest_known",
]

T = TypeVar("T", bound=BaseModel)

FieldPath = tuple[str | int, ...]
"""Keys and list indexes from the document root to a value, e.g. ("sites", 3, "hub")."""

_UNSET: Any = object()
_MAX_VALUE_REPR = 80
MAX_LISTED = 12
"""Error messages list at most this many known ids; longer lists shrink to close matches."""
MAX_CONFIG_BYTES = 4 * 2**20
"""4 MiB: a topology listing 40,000 nodes with their accelerators fits; parsing it takes a
few seconds. A larger file is refused before it is read."""
MAX_DEPTH = 64
"""Nesting levels a config document may have (the shipped ones use 5)."""
MAX_VALUES = 1_000_000
"""Values (scalars, lists, mappings) a document may hold once its aliases are expanded."""
_MAX_INT = 2**63 - 1
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_IDENT = re.compile(r"^[A-Za-z0-9_-]+$")


CONFIG_MESSAGES = (
    # the config models' own checks (collectors, bridge, exporter web config, policy,
    # topology) as they word them; first, before the general templates below match them
    N_('a {type} at {address} runs past register 65535'),
    N_('must be one of {units} for {name}'),
    N_('only a counter has a rollover modulus'),
    N_("not supported: Python's TLS verifies every client certificate it asks for; use "
       "VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
    N_("{mode} needs the CA that signs the scrapers' certificates"),
    N_('is above max_version {version}'),
    N_("must be a bcrypt hash ($2y$..., 60 characters; e.g. htpasswd -nBC 10 \"\" | tr "
       "-d ':')"),
    N_("not supported by computewatch (remove it; the TLS defaults of Python's ssl "
       "module apply)"),
    N_('is for SNMPv2c; SNMPv3 authenticates with user and keys'),
    N_('SNMPv3 needs a user'),
    N_('SNMPv3 privacy needs authentication too (auth_protocol, auth_key_env)'),
    N_("is for SNMPv3 (version: '3')"),
    N_('give oid (one OID) or parts (a sum of OIDs), not both and not neither'),
    N_('sum: true belongs on each part that is a table column'),
    N_('a profile reads watts, joules_total or both'),
    N_('needs the sys_object_id prefixes'),
    N_('must be the name of an environment variable that holds the password (letters, '
       'digits and _, e.g. BMC_PASSWORD), not the password itself'),
    N_('required when password_env or password_file is set'),
    N_('needs password_env or password_file (a password is never written in the config)'),
    N_('must not be empty (leave it out for the default)'),
    N_('credentials do not belong in the url: use username and password_env or '
       'password_file'),
    N_('empty or repeated chassis id'),
    N_('a password is never written in the config: put it in an environment variable '
       '(password_env) or a file (password_file)'),
    N_('a webhook target must have a signing secret'),
    N_("{kind} has no request signing; the URL's key is the credential (give it as url: "
       "{{env: ...}})"),
    N_('must be an http:// or https:// URL'),
    N_('a receiver needs at least one target'),
    N_('unknown time zone'),
    N_("must be >= grade {grade}'s {value}"),
    N_('must be >= the {tier} budget ({low})'),
    N_('scope {scope} meters measure at {where}, not {point}'),
    N_("{city} is a demand city; its Chinese name is its demand_cities entry's"),
    N_('a link needs two sites, got {site} twice'),
    N_('duplicate override for {pair}'),
    N_('nodes hold more {vendor} {model} than the site lists ({held} > {listed})'),
    N_('cluster {cluster} belongs to a hub, but the site has none'),
    N_('a site outside the hubs must state its region (east or west)'),
    N_('hub {hub} is in the {region}; leave region out or write {region}'),
    N_("cluster {cluster} belongs to hub {owner}, not to the site's hub {hub}"),
    N_('duplicate node id {node} (also in site {site})'),
    N_("file not found"),
    N_("is a directory, expected a YAML file"),
    N_("not UTF-8 text ({reason} at byte {start})"),
    N_("cannot read: {reason}"),
    N_("file is empty"),
    N_("file is larger than {mib} MiB, the limit for a config file"),
    N_("text is larger than {mib} MiB, the limit for a config file"),
    N_("YAML syntax error: {problem}"),
    N_("YAML error: character {what} is not allowed in a YAML file ({reason})"),
    N_("nested deeper than {levels} levels"),
    N_("an alias refers to the value that contains it"),
    N_("must be a finite number"),
    N_("is out of range (a 64-bit integer at most)"),
    N_("duplicate key {key} (first at line {line})"),
    N_("required field is missing"),
    N_("unknown key {key} (did you mean {close}? allowed: {allowed})"),
    N_("unknown key {key} (allowed: {allowed})"),
    N_("unknown key {key}"),
    N_("must match {pattern}"),
    N_("must be <= {limit}"), N_("must be < {limit}"), N_("must be >= {limit}"),
    N_("must be > {limit}"),
    N_("must be a valid number, unable to parse string as a number"),
    N_("must be a valid integer, unable to parse string as an integer"),
    N_("must be a valid integer, got a number with a fractional part"),
    N_("must be a valid string"),
    N_("must be a valid boolean, unable to interpret input"),
    N_("must be a valid list"),
    N_("must be a valid dictionary"),
    N_("duplicate {what} id {value} (first at {where})"),
    N_("unknown {what} {value} ({known})"),
    # their validators' ValueErrors, as pydantic hands them to the loader
    N_('must be {low} and at most a day (86400 s)'),
    N_('give exactly one of env or file'),
    N_('the bridge requires bearer_token or basic (or both)'),
    N_('must be an http(s)://host:port/path URL, e.g. http://127.0.0.1:4318/v1/metrics'),
    N_('not an http(s)://host:port/path URL: {reason}'),
    N_('unknown register map {value} ({known}); or give a path to a .yaml file'),
    N_('not a modulus: {value} (write e.g. 4294967296, 2**32 or 1e8)'),
    N_('{type} needs {n} registers, got {got}'),
    N_('a map needs watts, joules_total or both'),
    N_('must be https://<bmc host>[:port] (http:// only for a loopback address)'),
    N_('has no host'),
    N_("must be the service's address only, e.g. https://bmc.example; the /redfish/v1 "
       "path is added by the collector"),
    N_('plain http is allowed only to a loopback address (a local mockup or tunnel): '
       'BMC credentials would cross the network in clear text; use https://'),
    N_('the port is not a number between 0 and 65535'),
    N_('not an environment variable name: {value}'),
    N_('unknown SNMP profile {value} ({known}; {auto} to pick by the device; or a path '
       'to a YAML file)'),
    N_("write the OID as a quoted string, e.g. '1.3.6.1.2.1.33.1.4.4.1.4'"),
    N_('not a numeric OID: {value} (dotted numbers such as 1.3.6.1.2.1.33.1.4.4.1.4; '
       'MIB names are not resolved)'),
    N_('unit {value} is not one for {metric} (use {units})'),
    N_('{metric} is a {kind}; a {value} belongs under {other}'),
    N_('{what} {address}: no host (write host:port, e.g. 127.0.0.1:9400)'),
    N_('{what} {address}: port {port} is not a number from {low} to {high}'),
    N_('{what} {address}: expected host:port, e.g. 127.0.0.1:9400'),
    N_('{what} {address}: write [ipv6]:port'),
    N_('{what} {address}: no port after the colon'),
    N_('a duration must be positive, got {value}'),
    N_('a duration must be at most {limit}, got {value}'),
    N_('a duration must be at least {limit} here, got {value}'),
    N_('not a duration: {value} (write e.g. 15s, 2m, 500ms, 7d)'),
    N_('must say where the value comes from'),
    N_('must be a lowercase id matching {pattern}'),
    N_('must be a lowercase host-style id matching {pattern}'),
    N_("must be the place's Chinese name (Chinese characters, no surrounding spaces)"),
    N_('tier distances must satisfy 0 < metro ({metro} km) <= regional ({regional} km)'),
    N_('a link needs two different sites, got {site} twice'),
    N_('unknown link mode {mode} (known: full_mesh, hub_and_spoke)'),
    # the models' general forms, last: the first template that matches is taken
    N_('{name} is a {kind}'),
    N_('duplicate {what} {value}'),
    N_('{one} and {other} go together'),
    N_('give {one} or {other}, not both'),
    N_('set {one} or {other}, not both'),
    N_('{reason} (e.g. 127.0.0.1:9095)'),
)
"""What a config error says, as templates: the loader's own messages, pydantic's common ones
as the loader words them, and the cross-reference checks' unknown and duplicate ids. Names,
paths and values are kept verbatim in every language."""

_KNOWN = (N_("known: {ids}"), N_("did you mean {ids}? {n} known"), N_("{n} known: {ids}, ..."))
_WHAT = {"hub": N_("hub"), "cluster": N_("cluster"), "site": N_("site"),
         "province": N_("province"), "city": N_("city"), "node": N_("node"),
         "region": N_("region"), "target": N_("target"), "meter": N_("meter"),
         "demand city": N_("demand city")}


def _in_language(field: str, text: str) -> str:
    if field == "known":
        return restate(text, _KNOWN) or text
    if field == "what" and text in _WHAT:
        return _(_WHAT[text])
    return text


def message_in_language(message: str) -> str:
    """A config error's message (English, as raised) in the current language where one of
    `CONFIG_MESSAGES` words it; else as raised."""
    if current_language() == "en":
        return message
    return restate(message, CONFIG_MESSAGES, value=_in_language) or message


class ConfigError(Exception):
    """A config file that cannot be used; `str()` is one line: file:line: path: message."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        line: int | None = None,
        path: FieldPath = (),
        value: Any = _UNSET,
    ) -> None:
        self.source = source
        self.line = line
        self.path = tuple(path)
        self.message = message
        self.value = None if value is _UNSET else value
        self.has_value = value is not _UNSET
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        parts = [where]
        if self.path:
            parts.append(format_path(self.path))
        text = message_in_language(self.message)
        if self.has_value and any(is_secret_key(p) for p in self.path):
            # A secret written inline where a reference was expected: never echo it.
            text = _("{message} (the value is not shown: this field holds a secret)").format(
                message=text)
        elif self.has_value:
            shown = _short_repr(self.value)
            # Validators often quote the bad value in the message already; do not say it twice.
            if f"got {shown}" not in self.message and not (isinstance(self.value, str)
                                                           and shown in self.message):
                text = _("{message} (got {value})").format(message=text, value=shown)
        parts.append(text)
        # Credentials in a URL and registered secrets are hidden wherever they appear.
        return redact(": ".join(parts).replace("\n", " "))


class PathError(ValueError):
    """Raised by model validators: `path` is relative to the model whose validator raised it.

    A ValueError subclass so pydantic turns it into a validation error; the loader recovers
    the object (and its path) from the error context.
    """

    def __init__(self, path: FieldPath, message: str, value: Any = _UNSET) -> None:
        self.path = tuple(path)
        self.message = message
        self.value = value
        hidden = any(is_secret_key(p) for p in self.path)
        shown = "" if value is _UNSET or hidden else f" (got {_short_repr(value)})"
        super().__init__(redact(f"{format_path(self.path)}: {message}{shown}"))


def format_path(path: FieldPath) -> str:
    """Render ("sites", 3, "hub") as "sites[3].hub"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def load_yaml_model(path: Path, model: type[T], *, context: dict[str, Any] | None = None) -> T:
    """Read, parse and validate one YAML file; every failure is a `ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as f:  # read at most one byte past the limit: /dev/zero ends
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), f"file is larger than {MAX_CONFIG_BYTES // 2**20} MiB, "
                              "the limit for a config file")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    return load_yaml_model_from_text(text, model, source_name=str(path), context=context)


def load_yaml_model_from_text(
    text: str,
    model: type[T],
    *,
    source_name: str,
    context: dict[str, Any] | None = None,
) -> T:
    """Like `load_yaml_model` for text already in memory; `source_name` labels errors."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source_name, f"text is larger than {MAX_CONFIG_BYTES // 2**20} MiB, "
                          "the limit for a config file")
    data, lines = _parse(text, source_name)
    if data is None:
        raise ConfigError(source_name, "file is empty", line=1)
    _check_numbers(data, (), lines, source_name)
    try:
        result = model.model_validate(data, context=context)
    except ValidationError as exc:
        raise _to_config_error(exc, data, lines, source_name, model) from None
    _check_numbers(result, (), lines, source_name)  # what a field read as a number ("inf")
    return result


def suggest_known(value: str, known: list[str]) -> str:
    """All known ids when few; otherwise the close ones, so the message stays one short line."""
    if len(known) <= MAX_LISTED:
        return f"known: {', '.join(known)}"
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    if close:
        return f"did you mean {', '.join(close)}? {len(known)} known"
    return f"{len(known)} known: {', '.join(known[:MAX_LISTED])}, ..."


# --- YAML with line numbers -------------------------------------------------------------


def _parse(text: str, source: str) -> tuple[Any, dict[FieldPath, int]]:
    """Compose the YAML node graph, build plain data from it and map each path to its line."""
    loader = None
    try:
        loader = _LOADER(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_shape(node, source)
        # Constructing first lets SafeConstructor flatten merge keys (<<) into the node itself.
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An error "at end of input" sits past the last line; point at the last line instead.
        last = max(1, len(text.splitlines()))
        line = min(mark.line + 1, last) if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if exc.context:
            started = exc.context_mark
            at = f" (from line {started.line + 1})" if started is not None else ""
            problem = f"{exc.context}{at}: {problem}"
        raise ConfigError(source, f"YAML syntax error: {problem}", line=line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        at = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        what = (f"U+{exc.character:04X}" if isinstance(exc.character, int)
                else repr(exc.character))
        raise ConfigError(source, f"YAML error: character {what} is not allowed in a YAML "
                          f"file ({exc.reason})", line=at) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"YAML error: {exc}".replace("\n", " ")) from None
    except UnicodeError as exc:  # text with a lone surrogate: not UTF-8 encodable
        raise ConfigError(source, f"not valid Unicode text ({exc})") from None
    except RecursionError:  # the pure-Python composer, on nesting libyaml would refuse
        raise ConfigError(source, f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[FieldPath, int] = {}
    _index_lines(node, (), node.start_mark.line + 1, lines, source, set())
    return data, lines


def _check_shape(root: yaml.Node, source: str) -> None:
    """Refuse nesting deeper than `MAX_DEPTH`, an alias that contains itself, and aliases
    that expand to more than `MAX_VALUES` values; one pass, no recursion."""
    size: dict[int, int] = {}  # expanded values under each node, memoized by node
    # (node, depth, None) to visit; (node, depth, its children) once they are done
    stack: list[tuple[yaml.Node, int, list[yaml.Node] | None]] = [(root, 1, None)]
    open_: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done is not None:
            open_.discard(key)
            total = 1 + sum(size[id(c)] for c in done)
            if total > MAX_VALUES:
                raise ConfigError(source, f"the document expands to more than {MAX_VALUES:,} "
                                  "values (aliases repeated too often)",
                                  line=node.start_mark.line + 1)
            size[key] = total
            continue
        if key in size:
            continue
        if key in open_:
            raise ConfigError(source, "an alias refers to the value that contains it",
                              line=node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise ConfigError(source, f"nested deeper than {MAX_DEPTH} levels",
                              line=node.start_mark.line + 1)
        children = _children(node)
        if not children:  # a scalar (most nodes) or an empty collection: done at once
            size[key] = 1
            continue
        open_.add(key)
        stack.append((node, depth, children))
        stack.extend((c, depth + 1, None) for c in children)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_numbers(value: Any, path: FieldPath, lines: Mapping[FieldPath, int],
                   source: str) -> None:
    """Refuse NaN, infinities and integers beyond 64 bits anywhere in ``value`` (plain data
    or a validated model); the error names the field, its line and the value."""
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(source, "must be a finite number", line=_line_for(path, lines),
                              path=path, value=value)
    elif isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ConfigError(source, "is out of range (a 64-bit integer at most)",
                              line=_line_for(path, lines), path=path,
                              value=value if abs(value) < 10**30 else f"{float(value):.3g}")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _check_numbers(getattr(value, name), (*path, name), lines, source)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_numbers(k, path, lines, source)
            _check_numbers(v, (*path, k), lines, source)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            _check_numbers(v, (*path, i), lines, source)


def _index_lines(
    node: yaml.Node,
    path: FieldPath,
    line: int,
    lines: dict[FieldPath, int],
    source: str,
    seen: set[int],
) -> None:
    """Record `line` for `path`; entries of a mapping take their key's line."""
    lines.setdefault(path, line)
    if id(node) in seen:  # anchors/aliases can share (and, in theory, cycle) nodes
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _scalar_key(key_node)
            key_line = key_node.start_mark.line + 1
            if key is None:
                continue
            if key in first_line:
                raise ConfigError(
                    source,
                    f"duplicate key {key!r} (first at line {first_line[key]})",
                    line=key_line,
                    path=(*path, key),
                )
            first_line[key] = key_line
            _index_lines(value_node, (*path, key), key_line, lines, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), item.start_mark.line + 1, lines, source, seen)


def _scalar_key(node: yaml.Node) -> str | int | None:
    """The Python key a scalar key node constructs to (strings and ints are all we index)."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == "tag:yaml.org,2002:int":
        try:
            return int(node.value.replace("_", ""), 0)
        except ValueError:
            return node.value
    return node.value


def _line_for(path: FieldPath, lines: Mapping[FieldPath, int]) -> int | None:
    """The line of `path`, or of its nearest ancestor present in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


# --- pydantic errors -> ConfigError ------------------------------------------------------


def _to_config_error(
    exc: ValidationError,
    data: Any,
    lines: Mapping[FieldPath, int],
    source: str,
    model: type[BaseModel],
) -> ConfigError:
    """Turn the first pydantic error into a one-line ConfigError."""
    errors = exc.errors()
    err = errors[0]
    if err["type"] == "missing":
        # A misspelt key shows up as "missing" plus "unknown key"; the unknown key says why.
        parent = err["loc"][:-1]
        err = next(
            (e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent),
            err,
        )
    path = _data_path(err["loc"], data)
    value: Any = err.get("input", _UNSET)
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, PathError):
        path = path + cause.path
        return ConfigError(
            source, cause.message, line=_line_for(path, lines), path=path, value=cause.value
        )
    kind = err["type"]
    if kind == "missing" or (kind == "extra_forbidden" and isinstance(value, dict | list)):
        value = _UNSET  # the parent mapping, or a whole block: too long to be useful
    message = _message(err, model, path)
    return ConfigError(source, message, line=_line_for(path, lines), path=path, value=value)


def _data_path(loc: tuple[Any, ...], data: Any) -> FieldPath:
    """Keep the parts of a pydantic `loc` that name real keys/indexes (drop union tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if part == "[key]":
            continue
        if _has(current, part):
            path.append(part)
            current = current[part]
        elif isinstance(current, Mapping) and isinstance(part, str) and _IDENT.match(part):
            path.append(part)  # a missing field: name it, nothing below it exists
            break
    return tuple(path)


def _has(container: Any, part: Any) -> bool:
    if isinstance(container, Mapping):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


_BOUNDS = {
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
}


def _message(err: Mapping[str, Any], model: type[BaseModel], path: FieldPath) -> str:
    """Short, operator-facing wording for the common pydantic error types."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        return f"must be {op} {_number(ctx[key])}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        allowed = _allowed_keys(model, path[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = f" ({hint}allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {key!r}{known}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    msg = str(err["msg"])
    return (
        "must be " + msg.removeprefix("Input should be ")
        if msg.startswith("Input should be ")
        else msg
    )


def _allowed_keys(model: type[BaseModel], path: FieldPath) -> list[str]:
    """Field names of the model at `path`, to suggest the right spelling of an unknown key."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            current = _item_type(current)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fields = {f.alias or name: f for name, f in current.model_fields.items()}
        if part not in fields:
            return []
        current = _strip_optional(fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return []


def _item_type(annotation: Any) -> Any:
    """The element type of list[X] / tuple[X, ...]."""
    args = get_args(annotation)
    return _strip_optional(args[0]) if args else None


def _strip_optional(annotation: Any) -> Any:
    """X | None -> X; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _number(value: Any) -> Any:
    """90.0 -> 90, so limits read as the file wrote them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_REPR else text[: _MAX_VALUE_REPR - 3] + "..."
