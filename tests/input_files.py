"""Writing small raw input files for the ingest and clean tests."""

import csv
import io
from pathlib import Path


def write_file(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """``text`` written to ``path`` in ``encoding``; returns ``path``."""
    path.write_bytes(text.encode(encoding))
    return path


def csv_text(rows: list[dict]) -> str:
    """``rows`` as CSV text with a header of the first row's keys."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
