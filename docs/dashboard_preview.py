"""Render a dashboards set's committed JSON into a static HTML preview of its panels, and a PNG.

No Grafana runs here, so this shows what the JSON lays out: each dashboard's title, then every
panel at its grid position (24 columns), with its type, title and the start of its description.
Usage: python docs/dashboard_preview.py zh-CN docs/dashboards-zh-CN-preview.png
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMN, ROW = 46, 26  # pixels per grid column and row


def page(language: str) -> str:
    parts = ["<html><head><meta charset='utf-8'><style>",
             "body{font-family:'Noto Sans CJK SC',sans-serif;background:#111217;color:#ccc;"
             "margin:12px;width:1120px}",
             "h1{font-size:18px;color:#fff;margin:18px 0 6px}",
             ".grid{position:relative}",
             ".p{position:absolute;box-sizing:border-box;border:1px solid #333;"
             "background:#181b1f;border-radius:3px;padding:4px 6px;overflow:hidden}",
             ".t{font-size:12px;color:#fff;font-weight:bold}",
             ".k{font-size:10px;color:#6e9fff}.d{font-size:10px;color:#999}",
             ".row{background:none;border:none;border-bottom:1px solid #444}",
             "</style></head><body>"]
    for path in sorted((ROOT / "dashboards" / "json" / language).glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in model["panels"])
        parts.append(f"<h1>{html.escape(model['title'])}</h1>")
        parts.append(f"<div class='grid' style='height:{bottom * ROW}px'>")
        for p in model["panels"]:
            g = p["gridPos"]
            style = (f"left:{g['x'] * COLUMN}px;top:{g['y'] * ROW}px;"
                     f"width:{g['w'] * COLUMN - 4}px;height:{g['h'] * ROW - 4}px")
            kind = "row" if p["type"] == "row" else "p"
            parts.append(f"<div class='p {kind}' style='{style}'>"
                         f"<div class='t'>{html.escape(p.get('title', ''))}</div>"
                         f"<div class='k'>{html.escape(p['type'])}</div>"
                         f"<div class='d'>{html.escape(p.get('description', '')[:160])}</div>"
                         "</div>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main(language: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        preview = Path(tmp) / "preview.html"
        preview.write_text(page(language), encoding="utf-8")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--screenshot={out.resolve()}",
                        "--window-size=1150,5600", preview.as_uri()],
                       check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
