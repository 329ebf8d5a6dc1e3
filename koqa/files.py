"""Atomic file output: a file is either fully written or not there at all."""

from __future__ import annotations

import fcntl
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
    The temporary lives in a folder ``.{name}.XXXXXXXX`` beside ``path``, with a lock file that the
    writer holds until it is done. A writer killed outright (SIGKILL, out of memory, a node lost)
    leaves the folder behind; the next atomic write of the same path removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = folder / path.name
    try:
        with open(folder / f"{path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the system releases it when this process ends
            yield tmp
            if path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary folders that killed writers of ``path`` left beside it.

    A folder is one of them when its name is ``.{name}.`` and a suffix without dots (as
    :func:`tempfile.mkdtemp` makes it), it holds nothing but ``name`` and ``name.lock``, and no
    process holds its lock. So another path's temporaries never match (``.train_extra.x`` is not
    ``.train.`` and a suffix), nor does a folder someone else keeps there, nor a live writer's, in
    this process, another one, or on another node of a shared file system (NFS honours flock).
    A writer is exposed only between creating its folder and locking it: two writers of one path
    at once, which Snakemake never runs, could then remove the other's folder, which then fails
    rather than write a partial output.
    """
    ours = {path.name, f"{path.name}.lock"}
    for folder in path.parent.iterdir():
        if folder.name.rpartition(".")[0] != f".{path.name}" or not folder.is_dir():
            continue
        try:
            stale = set(os.listdir(folder)) <= ours and not _held(folder / f"{path.name}.lock")
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def _held(lock: Path) -> bool:
    """Whether a live process holds the lock file ``lock`` (False when there is none: a folder
    from before koqa locked them, or from a writer killed before it locked)."""
    try:
        fd = os.open(lock, os.O_WRONLY)  # NFS grants an exclusive lock to writers only
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


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
