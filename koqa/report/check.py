"""Check that a Snakemake report renders in a real browser (headless Chromium).

    python -m koqa.report.check results/report.html [--screenshots DIR]

The report is a single-page app whose items are embedded as data URIs. A copy of it gets a script
that loads every embedded image in the browser (an image that cannot be drawn fails to load or has
no size) and parses every embedded HTML page, then writes what it found into the page; Chromium's
``--dump-dom`` hands that back. With ``--screenshots`` each item is
also opened in the report's own viewer and photographed, for a person to look at.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
_MARKER = "koqa-report-check"
_PROBE = """
<script>
// Runs while the page is parsed: every embedded image becomes an <img>, so the window's load event
// waits until each has loaded or failed; the handler then only reads results (nothing async).
const probeImages = {};
for (const [path, entry] of Object.entries(results)) {
  if (entry.mime_type.startsWith("image/")) {
    const image = document.createElement("img");
    image.style.display = "none";
    image.onerror = () => { image.dataset.failed = "1"; };
    image.src = entry.data_uri;
    document.body.appendChild(image);
    probeImages[path] = image;
  }
}
window.addEventListener("load", () => {
  const found = {};
  for (const [path, entry] of Object.entries(results)) {
    const item = { mime: entry.mime_type };
    try {
      if (path in probeImages) {
        const image = probeImages[path];
        if (image.dataset.failed) throw new Error("the image did not load");
        Object.assign(item, { width: image.naturalWidth, height: image.naturalHeight });
      } else if (entry.mime_type === "text/html") {
        const bytes = Uint8Array.from(atob(entry.data_uri.split("base64,")[1]), (c) => c.charCodeAt(0));
        const page = new DOMParser().parseFromString(new TextDecoder().decode(bytes), "text/html");
        item.table_rows = page.querySelectorAll("tr").length;
      }
    } catch (error) {
      item.error = String(error);
    }
    found[path] = item;
  }
  const show = new URLSearchParams(location.search).get("show");
  if (show) {
    const entry = results[show];
    const content = entry.mime_type.startsWith("image/") ? "img" : "html";
    app.setView({ content: content, contentPath: entry.data_uri, resultPath: show });
  }
  const out = document.createElement("pre");
  out.id = "MARKER";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>
""".replace("MARKER", _MARKER)


class ReportCheckError(RuntimeError):
    """The report did not render as expected; the message says which item and why."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, if any."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _chromium(browser: str, *args: str, timeout: float = 120) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # containers and CI often run as root
        "--disable-gpu",
        "--allow-file-access-from-files",
        "--virtual-time-budget=20000",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ReportCheckError(f"{browser} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def probe_report(report: Path, browser: str, screenshots: Path | None = None) -> dict[str, dict]:
    """What Chromium finds for each report item: image size, HTML table rows, or an error."""
    page = report.read_text(encoding="utf-8")
    if "var results = " not in page or "</body>" not in page:
        raise ReportCheckError(f"{report}: not a Snakemake report (no embedded results)")
    with tempfile.TemporaryDirectory() as scratch:
        probed = Path(scratch) / "report.html"
        end = page.rindex("</body>")  # the last one: scripts in the page contain the string too
        probed.write_text(page[:end] + _PROBE + page[end:], encoding="utf-8")
        dom = _chromium(browser, "--dump-dom", probed.as_uri())
        match = re.search(rf'<pre id="{_MARKER}">(.*?)</pre>', dom, re.S)
        if not match:
            raise ReportCheckError(f"{report}: the report's scripts did not run to the end")
        found = json.loads(html.unescape(match.group(1)))
        if screenshots:
            screenshots.mkdir(parents=True, exist_ok=True)
            for path in (p for p, item in found.items() if _viewable(item)):
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path) + ".png"
                _chromium(
                    browser,
                    "--window-size=1400,1000",
                    f"--screenshot={screenshots / name}",
                    f"{probed.as_uri()}?show={quote(path)}",
                )
    return found


def _viewable(item: dict) -> bool:
    """Images and HTML pages are what the report's viewer shows (tables and JSON download)."""
    return item["mime"].startswith("image/") or item["mime"] == "text/html"


def check_report(report: Path, browser: str, screenshots: Path | None = None) -> dict[str, dict]:
    """Probe the report; raise :class:`ReportCheckError` if an image or page did not render."""
    found = probe_report(report, browser, screenshots)
    broken = {
        path: item
        for path, item in found.items()
        if "error" in item
        or (item["mime"].startswith("image/") and not (item["width"] and item["height"]))
        or (item["mime"] == "text/html" and not item["table_rows"])
    }
    if broken:
        raise ReportCheckError(f"{report}: items that did not render: {broken}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m koqa.report.check", description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument(
        "--screenshots", type=Path, help="also save a screenshot of every item here"
    )
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        found = check_report(args.report, browser, args.screenshots)
    except ReportCheckError as err:
        print(err, file=sys.stderr)
        return 1
    for path, item in found.items():
        print(path, {k: v for k, v in item.items() if k != "mime"}, item["mime"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
