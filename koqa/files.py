"""Atomic file output: a file is either fully written or not there at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Works for files and directories alike (the block creates whatever it wants at the yielded path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(data: object, path: str | Path) -> None:
    """Write pretty, UTF-8 JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> dict:
    """Read a UTF-8 JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(frame: pd.DataFrame, path: str | Path, sep: str = ",") -> None:
    """Write a UTF-8 CSV (no index; ``sep="\t"`` for TSV) atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", sep=sep)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a Parquet file (no index) atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
