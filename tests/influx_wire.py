"""A stand-in for InfluxDB 2's HTTP API, for the InfluxDB store's rollup tests.

No InfluxDB 2 server can run here, so this local server keeps what ``/api/v2/write``
receives (line protocol, gzip or not; a point with the same measurement, tags, field and
time overwrites, as in InfluxDB) and answers ``/api/v2/query`` in Flux annotated CSV for
the few query shapes the store sends, read from their text: every value in a range
(``keep`` of time, field, value and tags), the first and last time (``yield``), a count,
and ``aggregateWindow`` / whole-range aggregates (mean, sum, count, min, max, last, and
``quantile`` with ``exact_mean``, as `computewatch.store._flux` documents them) over the
groups the query names. Filters: the measurement, ``r._field == "..."``, ``r._field =~
/^prefix/`` and ``r["tag"] == "..."`` alternatives. ``/api/v2/delete`` deletes a
measurement's points in [start, stop]. Any other shape is answered 400 with its text, so a
test sees a query it did not expect. It is a model of the documented semantics, written here;
it was not checked against a live InfluxDB.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

_UNIT = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def parse_line_protocol(body: str, precision: str) -> list[tuple]:
    """(measurement, tags tuple, field, time ns, value) of every value in ``body``
    (numeric fields only: what the store writes)."""
    out = []
    for line in body.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, fields, stamp = _split_unescaped(line, " ")
        name, *tags = _split_unescaped(head, ",")
        tag_pairs = tuple(sorted(tuple(t.split("=", 1)) for t in tags))
        t = int(stamp) * _UNIT[precision]
        for kv in _split_unescaped(fields, ","):
            key, value = kv.rsplit("=", 1)
            out.append((name, tag_pairs, key, t, float(value.rstrip("i"))))
    return out


def _ns(text: str) -> int:
    return pd.Timestamp(text).value


def annotated_csv(frame: pd.DataFrame, types: dict[str, str], result: str = "_result") -> str:
    """``frame`` as one Flux table in annotated CSV (``types``: column -> Flux type; a
    ``dateTime`` column in nanoseconds since the epoch; a null as an empty cell)."""
    cols = list(frame.columns)
    head = ["#datatype,string,long," + ",".join(types[c] for c in cols),
            "#group,false,false," + ",".join("false" for _ in cols),
            f"#default,{result},," + ",".join("" for _ in cols),
            ",result,table," + ",".join(cols)]
    cells = pd.DataFrame({"": "", "result": "", "table": "0"}, index=frame.index)
    for c in cols:
        if types[c].startswith("dateTime"):
            cells[c] = pd.to_datetime(frame[c].astype("int64"), unit="ns", utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
        elif types[c] == "double":
            cells[c] = frame[c].astype("float64").map(repr).where(frame[c].notna(), "")
        else:
            cells[c] = frame[c].astype("object").where(frame[c].notna(), "").astype("str")
    body = cells.to_csv(header=False, index=False, lineterminator="\n") if len(cells) else ""
    return "\n".join(head) + "\n" + body + "\n"


class FakeInflux2(ThreadingHTTPServer):
    """The server; ``points`` maps (bucket, measurement) to {(tags, field, time ns): value},
    ``queries`` records the Flux texts asked, ``writes`` the (bucket, body) posted."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.points: dict[tuple[str, str], dict[tuple, float]] = {}
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self.queries: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def frame(self, bucket: str, measurement: str) -> pd.DataFrame:
        """The measurement's values: time (ns), field, value and a column per tag."""
        key = (bucket, measurement)
        with self.lock:
            if key in self._frames:
                return self._frames[key]
            items = list(self.points.get(key, {}).items())
        tagsets = list({k[0]: None for k, _ in items})  # few: one per series
        code = {tags: i for i, tags in enumerate(tagsets)}
        df = pd.DataFrame({"_time": np.array([k[2] for k, _ in items], dtype=np.int64),
                           "_field": [k[1] for k, _ in items],
                           "_value": np.array([v for _, v in items], dtype=float)})
        tags = pd.DataFrame([dict(t) for t in tagsets])
        if len(tags.columns):
            rows = tags.iloc[[code[k[0]] for k, _ in items]].reset_index(drop=True)
            df = pd.concat([df, rows], axis=1)
        with self.lock:
            self._frames[key] = df
        return df

    def put(self, bucket: str, points: list[tuple]) -> None:
        with self.lock:
            for m, tags, f, t, v in points:
                self.points.setdefault((bucket, m), {})[(tags, f, t)] = v
                self._frames.pop((bucket, m), None)

    def delete(self, bucket: str, measurement: str, lo: int, hi: int) -> None:
        with self.lock:
            kept = self.points.get((bucket, measurement), {})
            for key in [k for k in kept if lo <= k[2] <= hi]:
                del kept[key]
            self._frames.pop((bucket, measurement), None)

    def answer(self, text: str) -> str:
        bucket = re.search(r'from\(bucket: "([^"]+)"\)', text).group(1)
        start, stop = re.search(r"range\(start: (\S+), stop: (\S+)\)", text).groups()
        name = re.search(r'r\._measurement == "([^"]+)"', text).group(1)
        df = self.frame(bucket, name)
        if len(df):
            df = df[(df._time >= _ns(start)) & (df._time < _ns(stop))]
        fields = re.findall(r'r\._field == "([^"]+)"', text)
        prefixes = re.findall(r"r\._field =~ /\^([^/]+)/", text)
        if (fields or prefixes) and len(df):
            df = df[df._field.isin(fields) | np.logical_or.reduce(
                [df._field.str.startswith(p) for p in prefixes] + [np.zeros(len(df), bool)])]
        for line in text.splitlines():
            if 'r["' in line and "filter" in line:
                alternatives = re.findall(r'r\["([^"]+)"\] == "([^"]*)"', line)
                keep = np.zeros(len(df), bool)
                for tag, value in alternatives:
                    have = df[tag].fillna("") if tag in df.columns else pd.Series("", df.index)
                    keep |= (have == value).to_numpy()
                df = df[keep]
        if 'yield(name: "first")' in text:
            if not len(df):
                return ""
            return "".join(annotated_csv(pd.DataFrame({"_time": [f(df._time)]}),
                                         {"_time": "dateTime:RFC3339"}, r)
                           for r, f in (("first", min), ("last", max)))
        if text.rstrip().endswith("|> count()"):
            return annotated_csv(pd.DataFrame({"_value": [len(df)]}), {"_value": "long"})
        keep = re.search(r"keep\(columns: \[([^\]]*)\]\)", text)
        cols = re.findall(r'"([^"]+)"', keep.group(1)) if keep else []
        tags = [c for c in cols if not c.startswith("_")]
        for t in tags:
            if t not in df.columns:
                df[t] = None
        if "aggregateWindow" in text or re.search(r"\|> (mean|sum|count|min|max|last|"
                                                   r"quantile)\(", text):
            df = self._aggregate(text, df, tags)
        else:
            df = df.sort_values("_time")
        types = {"_time": "dateTime:RFC3339", "_field": "string", "_value": "double",
                 **{t: "string" for t in tags}}
        return annotated_csv(df[[c for c in ["_time", "_field", "_value", *tags]
                                 if c in df.columns]], types)

    @staticmethod
    def _aggregate(text: str, df: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
        window = re.search(r"aggregateWindow\(every: (\d+)us, offset: (\d+)us, fn: (\w+|\()",
                           text)
        quantile = re.search(r"quantile\(q: ([0-9.]+)", text)
        df = df.assign(_orig_time=df._time)
        if window is not None:
            every, offset = int(window.group(1)) * 1000, int(window.group(2)) * 1000
            fn = window.group(3)
            df = df.assign(_time=(df._time - offset) // every * every + offset)
        else:
            fn = re.search(r"\|> (mean|sum|count|min|max|last|quantile)\(", text).group(1)
            df = df.assign(_time=0)
        by = ["_time", *groups, "_field"]
        df = df.assign(**{g: df[g].fillna("") for g in groups})
        if quantile is not None:
            q = float(quantile.group(1))
            out = df.groupby(by)._value.quantile(q, interpolation="linear")
        elif fn == "last":
            df = df.sort_values("_orig_time", kind="stable")
            out = df.groupby(by)._value.last()
        else:
            out = df.groupby(by)._value.agg(fn)
        out = out.reset_index()
        return out.assign(**{g: out[g].replace("", None) for g in groups})


class _Handler(BaseHTTPRequestHandler):
    server: FakeInflux2

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        status, payload, kind = 204, b"", "text/plain"
        try:
            if url.path == "/api/v2/write":
                body = raw.decode()
                self.server.writes.append((params["bucket"], body))
                self.server.put(params["bucket"],
                                parse_line_protocol(body, params.get("precision", "ns")))
            elif url.path == "/api/v2/delete":
                spec = json.loads(raw)
                name = re.fullmatch(r'_measurement="([^"]+)"', spec["predicate"]).group(1)
                self.server.delete(params["bucket"], name, _ns(spec["start"]),
                                   _ns(spec["stop"]))
            elif url.path == "/api/v2/query":
                text = json.loads(raw)["query"]
                self.server.queries.append(text)
                status, kind = 200, "text/csv"
                payload = self.server.answer(text).encode()
            else:
                status, payload = 404, b"not here"
        except Exception as exc:  # a shape not modelled: named to the test
            status, kind = 400, "application/json"
            payload = json.dumps({"code": "invalid", "message": f"not modelled: {exc!r}"}
                                 ).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def fake_influx2() -> Iterator[FakeInflux2]:
    srv = FakeInflux2()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
