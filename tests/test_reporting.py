"""Report material: the figures are valid SVG showing the right series, the HTML pages hold the data."""

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from browser import require_chromium

from koqa.report.check import ReportCheckError, check_report, probe_report
from koqa.report.pages import record_html, write_record_page, write_table_page
from koqa.report.plots import plot_f1_by_length, plot_f1_by_variant, plot_loss_curves, plot_snapping

SVG = "{http://www.w3.org/2000/svg}"
BOARD = pd.DataFrame(
    {
        "variant": ["ensemble", "lora", "zeroshot"],
        "f1": [0.61, 0.55, 0.02],
        "em": [0.4, 0.3, 0.0],
        "snap": [None, True, False],
        "f1_unsnapped": [None, 0.5, 0.02],
        "f1_snapped": [None, 0.55, 0.01],
    }
)


def _texts(path: Path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return " ".join("".join(node.itertext()) for node in root.iter(f"{SVG}text"))


def test_f1_by_variant_and_snapping_figures(tmp_path: Path) -> None:
    plot_f1_by_variant(BOARD, tmp_path / "f1.svg")
    texts = _texts(tmp_path / "f1.svg")
    assert all(name in texts for name in BOARD["variant"])
    assert "0.610" in texts and "0.400" in texts

    plot_snapping(BOARD, tmp_path / "snap.svg")
    texts = _texts(tmp_path / "snap.svg")
    assert "ensemble" not in texts  # the ensemble is not snapped, only variants are shown
    assert "(uses snapped)" in texts and "(uses as generated)" in texts


def test_f1_by_length_figure_labels_buckets_with_row_counts(tmp_path: Path) -> None:
    records = {
        "lora": {"by_length": {"1-3": {"f1": 0.9, "n": 4}, "7-10": {"f1": 0.4, "n": 2}}},
        "full": {"by_length": {"1-3": {"f1": 0.7, "n": 4}, "7-10": {"f1": 0.2, "n": 2}}},
    }
    plot_f1_by_length(records, tmp_path / "length.svg")
    texts = _texts(tmp_path / "length.svg")
    assert "1-3" in texts and "(4 rows)" in texts and "(2 rows)" in texts and "lora" in texts


def test_loss_curves_skip_variants_without_steps(tmp_path: Path) -> None:
    metrics = {
        "zeroshot": pd.DataFrame(columns=["step", "loss"]),
        "lora": pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5]}),
    }
    plot_loss_curves(metrics, tmp_path / "loss.svg")
    texts = _texts(tmp_path / "loss.svg")
    assert "lora" in texts and "zeroshot" not in texts


def test_table_page_escapes_and_keeps_every_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "answer": ["<script>", "「타임」"], "f1": [0.5, 1.0]})
    write_table_page(frame, "Worst", tmp_path / "t.html")
    html = (tmp_path / "t.html").read_text(encoding="utf-8")
    assert html.count("<tr>") == 3
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "「타임」" in html and '<td class="num">0.5</td>' in html


def test_nested_record_becomes_headed_tables(tmp_path: Path) -> None:
    record = {
        "max_seq_len": 384,
        "splits": {
            "train": {
                "rows": 188,
                "chars": {
                    "context": {"mean": 290.76, "max": 348},
                    "answer": {"mean": 5.2, "max": 11},
                },
            }
        },
        "steps": ["nfkc", "spaces"],
    }
    html = record_html(record)
    assert "<h2>splits</h2>" in html and "<h3>train</h3>" in html and "<h4>chars</h4>" in html
    assert "<th>mean</th><th>max</th>" in html  # a mapping of flat mappings is one table
    assert "nfkc, spaces" in html
    write_record_page(record, "Statistics", tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def _data_uri(mime: str, content: bytes) -> str:
    return f"data:{mime};charset=utf8;filename=x;base64,{base64.b64encode(content).decode()}"


def test_the_report_check_catches_an_image_that_does_not_render(tmp_path: Path) -> None:
    """A stand-in for a Snakemake report (its `results` and `app` globals): the check must pass the
    good image and page and name the broken image."""
    browser = require_chromium()
    plot_loss_curves(
        {"lora": pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.0]})}, tmp_path / "a.svg"
    )
    write_table_page(pd.DataFrame({"a": [1, 2]}), "t", tmp_path / "t.html")
    results = {
        "good.svg": {
            "mime_type": "image/svg+xml",
            "data_uri": _data_uri("image/svg+xml", (tmp_path / "a.svg").read_bytes()),
        },
        "page.html": {
            "mime_type": "text/html",
            "data_uri": _data_uri("text/html", (tmp_path / "t.html").read_bytes()),
        },
        "broken.png": {"mime_type": "image/png", "data_uri": _data_uri("image/png", b"not a png")},
    }
    report = tmp_path / "report.html"
    report.write_text(
        "<html><body><script>var results = "
        + json.dumps(results)
        + "; let app = {setView() {}};</script></body></html>",
        encoding="utf-8",
    )
    found = probe_report(report, browser)
    assert found["good.svg"]["width"] > 0 and found["page.html"]["table_rows"] == 3
    with pytest.raises(ReportCheckError, match=r"did not render: \{'broken.png'"):
        check_report(report, browser)
