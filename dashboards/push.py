"""Upload the dashboards to a Grafana through its HTTP API, idempotently, into one folder.

`push_dashboards` finds the folder by title (or creates it with a uid derived from the
title), then for each dashboard reads what Grafana holds under its uid: an identical copy in
the right folder is left alone, anything else is saved with ``overwrite`` so the uid, not the
title, identifies a dashboard. Pushing twice changes nothing the second time. Errors name the
Grafana URL and what went wrong; the token never appears in a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "GrafanaAuthError",
    "GrafanaUnreachable",
    "PushError",
    "PushResult",
    "folder_uid",
    "push_dashboards",
]

MESSAGE = "computewatch dashboards push"


class PushError(RuntimeError):
    """Grafana answered, but not as a push needs (an error status, a malformed reply)."""


class GrafanaUnreachable(PushError):
    """No answer from Grafana: wrong URL, Grafana down, or a timeout."""


class GrafanaAuthError(PushError):
    """Grafana refused the token (401) or the token may not write dashboards (403)."""


@dataclass(frozen=True)
class PushResult:
    uid: str
    title: str
    action: Literal["created", "updated", "unchanged"]
    url: str


def folder_uid(title: str) -> str:
    """A stable folder uid from its title (Grafana allows 40 of ``[A-Za-z0-9_-]``)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", title.strip().lower()).strip("-")
    if not slug:
        raise PushError(f"folder name {title!r} has no letters or digits to make a uid from")
    return slug[:40]


def _same(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """Whether Grafana's copy holds our model (it adds id and version, which we ignore)."""
    return all(existing.get(k) == v for k, v in ours.items() if k not in ("id", "version"))


class _Session:
    """grafana-client calls with its exceptions turned into ours, naming the URL."""

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        from grafana_client import GrafanaApi

        from computewatch.redact import redact_url

        self.api = GrafanaApi.from_url(url.rstrip("/"), credential=token, timeout=timeout_s)
        self.url = redact_url(url.rstrip("/"))  # what messages show: no password

    def call(self, doing: str, fn: Any, *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
        import niquests
        from grafana_client.client import (
            GrafanaClientError,
            GrafanaException,
            GrafanaServerError,
            GrafanaTimeoutError,
            GrafanaUnauthorizedError,
        )

        try:
            return fn(*args, **kw)
        except GrafanaUnauthorizedError:
            raise GrafanaAuthError(
                f"Grafana at {self.url} refused the token while {doing} (401 Unauthorized): "
                "pass a valid service-account token with --token, --token-file or "
                "GRAFANA_TOKEN") from None
        except GrafanaClientError as exc:
            if exc.status_code == 404 and missing_ok:
                return None
            if exc.status_code == 403:
                raise GrafanaAuthError(
                    f"Grafana at {self.url} forbade {doing} (403 Forbidden): the token's "
                    "service account needs the Editor role or dashboards:write on the "
                    "folder") from None
            raise PushError(f"Grafana at {self.url}: {doing} failed: {exc.message}") from None
        except GrafanaServerError as exc:
            raise PushError(f"Grafana at {self.url}: {doing} failed: {exc.message}") from None
        except (GrafanaTimeoutError, GrafanaException, niquests.exceptions.RequestException,
                OSError) as exc:
            raise GrafanaUnreachable(
                f"cannot reach Grafana at {self.url} while {doing}: {_reason(exc)}") from None
        except ValueError as exc:  # a body that is not JSON
            raise PushError(f"the server at {self.url} does not answer like Grafana while "
                            f"{doing}: {_reason(exc)}; check --url") from None


def _shaped(s: _Session, doing: str, value: Any, kind: type) -> Any:
    """``value`` if Grafana's answer has the JSON shape a push expects, else a PushError
    (a server that is not Grafana answers HTML or other JSON)."""
    if not isinstance(value, kind):
        shown = repr(value)[:120]
        raise PushError(f"the server at {s.url} does not answer like Grafana while {doing}: "
                        f"expected a JSON {'list' if kind is list else 'object'}, got "
                        f"{shown}; check --url") from None
    return value


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _ensure_folder(s: _Session, title: str) -> str:
    folders = _shaped(s, "listing folders",
                      s.call("listing folders", s.api.folder.get_all_folders) or [], list)
    for f in folders:
        f = _shaped(s, "listing folders", f, dict)
        if f.get("title") == title and "uid" in f:
            return str(f["uid"])
    uid = folder_uid(title)
    if s.call(f"reading folder {uid!r}", s.api.folder.get_folder, uid, missing_ok=True):
        return uid  # our uid, renamed in Grafana: keep using it
    created = s.call(f"creating folder {title!r}", s.api.folder.create_folder, title, uid=uid)
    if not isinstance(created, dict) or "uid" not in created:
        raise PushError(f"Grafana at {s.url}: creating folder {title!r} answered {created!r}")
    return str(created["uid"])


def push_dashboards(dashboards: Mapping[str, Mapping[str, Any]], url: str, token: str, *,
                    folder: str = "computewatch",
                    timeout_s: float = 10.0) -> tuple[str, list[PushResult]]:
    """Upload every dashboard (by uid) into ``folder``; returns the folder uid and what
    happened to each dashboard."""
    if not token:
        raise GrafanaAuthError("no Grafana token: pass --token, --token-file or set "
                               "GRAFANA_TOKEN")
    s = _Session(url, token, timeout_s)
    fuid = _ensure_folder(s, folder)
    results = []
    for uid, model in dashboards.items():
        title = str(model.get("title", uid))
        held = s.call(f"reading dashboard {uid!r}", s.api.dashboard.get_dashboard, uid,
                      missing_ok=True)
        if held:
            held = _shaped(s, f"reading dashboard {uid!r}", held, dict)
        if held and held.get("meta", {}).get("folderUid") == fuid \
                and _same(held.get("dashboard", {}), model):
            results.append(PushResult(uid, title, "unchanged", held["meta"].get("url", "")))
            continue
        body = {"dashboard": {**model, "id": None}, "folderUid": fuid, "overwrite": True,
                "message": MESSAGE}
        saved = s.call(f"saving dashboard {uid!r}", s.api.dashboard.update_dashboard, body)
        if not isinstance(saved, dict) or saved.get("uid") != uid:
            raise PushError(f"Grafana at {s.url}: saving dashboard {uid!r} answered {saved!r}")
        results.append(PushResult(uid, title, "updated" if held else "created",
                                  str(saved.get("url", ""))))
    return fuid, results
