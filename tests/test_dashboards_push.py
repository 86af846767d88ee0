"""`computewatch dashboards push` against a fake Grafana at the HTTP boundary.

No Grafana runs here (no package), so a small HTTP server on loopback answers the endpoints
grafana-client calls, with Grafana's semantics: bearer-token auth (401 otherwise), folders by
uid and title, ``POST /api/dashboards/db`` refusing an existing uid unless ``overwrite``, and
versions that grow with each save. The tests check idempotency by uid, folder placement and
the errors a user sees.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from servers import free_port
from typer.testing import CliRunner

from computewatch.cli import app
from computewatch.dashboards import (
    GrafanaAuthError,
    GrafanaUnreachable,
    PushError,
    build_dashboards,
    push_dashboards,
)
from computewatch.policy import load_policy
from computewatch.status import ExitStatus
from computewatch.topology import load_topology

TOKEN = "glsa_test_token_123"


class FakeGrafana:
    """Grafana's folder and dashboard API, in memory."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {dashboard, folderUid, ...}
        self.requests: list[tuple[str, str]] = []
        self.saves: list[dict[str, Any]] = []
        self._next_id = 1
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                fake.requests.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"message": "invalid API key"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, reply = fake.route(method, self.path.split("?")[0], body)
                self._reply(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/folders":
            return 200, [{"id": f["id"], "uid": u, "title": f["title"]}
                         for u, f in self.folders.items()]
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            return 200, {"uid": uid, **self.folders[uid]}
        if method == "POST" and path == "/api/folders":
            uid = body.get("uid")
            if uid in self.folders or any(f["title"] == body["title"]
                                          for f in self.folders.values()):
                return 409, {"message": "a folder with the same name or uid already exists"}
            self.folders[uid] = {"id": self._id(), "title": body["title"]}
            return 200, {"uid": uid, **self.folders[uid]}
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            held = self.dashboards[uid]
            return 200, {"dashboard": held["dashboard"],
                         "meta": {"folderUid": held["folderUid"], "url": held["url"],
                                  "version": held["dashboard"]["version"]}}
        if method == "POST" and path == "/api/dashboards/db":
            return self.save(body)
        return 404, {"message": f"no route {method} {path}"}

    def save(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.saves.append(body)
        model = dict(body["dashboard"])
        uid, folder = model["uid"], body.get("folderUid", "")
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        held = self.dashboards.get(uid)
        if held is not None and not body.get("overwrite"):
            return 412, {"status": "version-mismatch", "message": "The dashboard has been "
                         "changed by someone else"}
        model["id"] = held["dashboard"]["id"] if held else self._id()
        model["version"] = held["dashboard"]["version"] + 1 if held else 1
        url = f"/d/{uid}/{model['title'].lower().replace(' ', '-')}"
        self.dashboards[uid] = {"dashboard": model, "folderUid": folder, "url": url}
        return 200, {"id": model["id"], "uid": uid, "url": url, "status": "success",
                     "version": model["version"]}

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def dashboards():
    topology = load_topology()
    return build_dashboards(topology, load_policy(topology=topology))


@pytest.fixture
def grafana():
    with FakeGrafana() as g:
        yield g


def test_push_creates_the_folder_and_every_dashboard_in_it(grafana, dashboards):
    fuid, results = push_dashboards(dashboards, grafana.url, TOKEN, folder="NOC Views")
    assert fuid == "noc-views"
    assert grafana.folders[fuid]["title"] == "NOC Views"
    assert {r.uid: r.action for r in results} == {uid: "created" for uid in dashboards}
    for uid, model in dashboards.items():
        held = grafana.dashboards[uid]
        assert held["folderUid"] == fuid
        assert held["dashboard"]["panels"] == model["panels"]
    assert all(s["overwrite"] is True and s["dashboard"]["id"] is None for s in grafana.saves)


def test_a_second_push_changes_nothing(grafana, dashboards):
    push_dashboards(dashboards, grafana.url, TOKEN)
    versions = {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()}
    saves = len(grafana.saves)
    _, results = push_dashboards(dashboards, grafana.url, TOKEN)
    assert {r.action for r in results} == {"unchanged"}
    assert len(grafana.saves) == saves
    assert {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()} == versions
    assert len(grafana.folders) == 1


def test_an_edited_or_moved_dashboard_is_overwritten_by_uid(grafana, dashboards):
    fuid, _ = push_dashboards(dashboards, grafana.url, TOKEN)
    edited, moved = sorted(dashboards)[:2]
    grafana.dashboards[edited]["dashboard"]["title"] = "edited in the UI"
    grafana.folders["elsewhere"] = {"id": 99, "title": "Elsewhere"}
    grafana.dashboards[moved]["folderUid"] = "elsewhere"
    _, results = push_dashboards(dashboards, grafana.url, TOKEN)
    actions = {r.uid: r.action for r in results}
    assert actions.pop(edited) == actions.pop(moved) == "updated"
    assert set(actions.values()) == {"unchanged"}
    assert grafana.dashboards[edited]["dashboard"]["title"] == dashboards[edited]["title"]
    assert grafana.dashboards[edited]["dashboard"]["version"] == 2
    assert grafana.dashboards[moved]["folderUid"] == fuid
    assert len(grafana.dashboards) == len(dashboards)


def test_an_existing_folder_is_found_by_title(grafana, dashboards):
    grafana.folders["abc123"] = {"id": 7, "title": "computewatch"}
    fuid, _ = push_dashboards(dashboards, grafana.url, TOKEN)
    assert fuid == "abc123"
    assert list(grafana.folders) == ["abc123"]
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"abc123"}


def test_a_wrong_token_is_a_clear_401(grafana, dashboards):
    with pytest.raises(GrafanaAuthError, match="401 Unauthorized") as err:
        push_dashboards(dashboards, grafana.url, "not-the-token")
    assert grafana.url in str(err.value)
    assert "not-the-token" not in str(err.value)
    assert not grafana.dashboards


def test_unreachable_grafana_is_named(dashboards):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GrafanaUnreachable, match=f"cannot reach Grafana at {url}"):
        push_dashboards(dashboards, url, TOKEN, timeout_s=2)


def test_an_error_status_names_what_was_being_done(grafana, dashboards):
    grafana.route_before = grafana.route

    def broken(method, path, body):
        if path == "/api/dashboards/db":
            return 500, {"message": "database is locked"}
        return grafana.route_before(method, path, body)

    grafana.route = broken
    with pytest.raises(PushError, match=r"saving dashboard .* failed: .*database is locked"):
        push_dashboards(dashboards, grafana.url, TOKEN)


def test_cli_push_with_token_file_and_env(grafana, tmp_path, monkeypatch):
    runner = CliRunner()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    first = runner.invoke(app, ["dashboards", "push", "--url", grafana.url,
                                "--token-file", str(token_file), "--folder", "NOC"])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 5
    assert "5 dashboards in folder 'NOC' (uid noc)" in first.output
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    second = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--folder", "NOC"])
    assert second.exit_code == 0, second.output
    assert second.output.count("unchanged") == 5


def test_cli_push_errors_exit_with_their_codes(grafana, tmp_path, monkeypatch, capsys):
    from computewatch.cli import main

    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    for argv, code, text in (
        (["--url", grafana.url, "--token", "wrong"], ExitStatus.BAD_INPUT, "401"),
        (["--url", grafana.url, "--token-file", str(tmp_path / "missing")],
         ExitStatus.BAD_INPUT, "--token-file"),
        (["--url", f"http://127.0.0.1:{free_port()}", "--token", TOKEN, "--timeout", "2"],
         ExitStatus.ERROR, "cannot reach Grafana"),
    ):
        monkeypatch.setattr("sys.argv", ["computewatch", "dashboards", "push", *argv])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == code, argv
        assert text in capsys.readouterr().err
