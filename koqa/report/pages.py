"""Self-contained HTML pages for the Snakemake report, which shows HTML and images but only offers
tables and JSON for download: the leaderboard, the worst predictions, and any nested JSON record
(the cleaning report, the data statistics) as headed sections of tables."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from koqa.files import atomic_path

_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1.5em; color: #1e293b; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #cbd5e1; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f1f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.long { max-width: 40em; font-size: 12px; }
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="ko"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _cell(value: object) -> str:
    """One table cell: numbers right-aligned to 4 decimals, long text in small print."""
    if value is None or (pd.api.types.is_float(value) and pd.isna(value)):
        return "<td></td>"
    if pd.api.types.is_bool(value):
        return f"<td>{value}</td>"
    if pd.api.types.is_integer(value):
        return f'<td class="num">{value}</td>'
    if pd.api.types.is_float(value):
        return f'<td class="num">{f"{value:.4f}".rstrip("0").rstrip(".")}</td>'
    text = escape(str(value))
    return f'<td class="long">{text}</td>' if len(text) > 60 else f"<td>{text}</td>"


def table_html(frame: pd.DataFrame) -> str:
    """An HTML table of ``frame`` (no index), numbers right-aligned, long text in small print."""
    head = "".join(f"<th>{escape(str(column))}</th>" for column in frame.columns)
    rows = "".join(
        "<tr>" + "".join(_cell(value) for value in row) + "</tr>\n"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>"


def _is_scalar(value: object) -> bool:
    return not isinstance(value, dict | list)


def record_html(record: object, level: int = 2) -> str:
    """A nested JSON record as HTML: scalars as key/value tables, a mapping of flat mappings as one
    table (a row per key), lists of scalars inline, anything deeper as headed sections."""
    if _is_scalar(record):
        return f"<p>{escape(str(record))}</p>"
    if isinstance(record, list):
        if all(_is_scalar(item) for item in record):
            return f"<p>{escape(', '.join(map(str, record)))}</p>"
        if all(isinstance(item, dict) and all(map(_is_scalar, item.values())) for item in record):
            return table_html(pd.DataFrame(record))
        return "".join(record_html(item, level) for item in record)
    scalars = {k: v for k, v in record.items() if _is_scalar(v) or _is_flat_list(v)}
    nested = {k: v for k, v in record.items() if k not in scalars}
    parts = []
    if scalars:
        parts.append(
            table_html(
                pd.DataFrame(
                    {
                        "": list(scalars),
                        "value": [
                            ", ".join(map(str, v)) if isinstance(v, list) else v
                            for v in scalars.values()
                        ],
                    }
                )
            )
        )
    if nested and all(
        isinstance(v, dict) and v and all(map(_is_scalar, v.values())) for v in nested.values()
    ):
        rows = pd.DataFrame.from_dict(nested, orient="index")
        parts.append(table_html(rows.rename_axis("").reset_index()))
    else:
        heading = f"h{min(level, 6)}"
        for key, value in nested.items():
            parts.append(
                f"<{heading}>{escape(str(key))}</{heading}>{record_html(value, level + 1)}"
            )
    return "\n".join(parts)


def _is_flat_list(value: object) -> bool:
    return isinstance(value, list) and all(map(_is_scalar, value))


def write_table_page(frame: pd.DataFrame, title: str, path: str | Path) -> None:
    """An HTML page holding ``frame`` as one table."""
    with atomic_path(path) as tmp:
        tmp.write_text(_page(title, table_html(frame)), encoding="utf-8")


def write_record_page(record: dict, title: str, path: str | Path) -> None:
    """An HTML page rendering a nested JSON record (see :func:`record_html`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(_page(title, record_html(record)), encoding="utf-8")
