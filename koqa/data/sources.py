"""The training sources of ``data.train``: one file, or several, each with its own settings.

``data.train`` is a path, or a list whose entries are paths or mappings
``{path, name?, format?, encoding?, cap?, weight?}``. An entry's ``format`` and ``encoding`` default
to ``data.format`` and ``data.encoding``; its ``name`` (what the ``source`` column of every row
says) to the file's stem. ``cap`` keeps at most that many of its rows after cleaning (a seeded
sample, see :mod:`koqa.data.clean`); ``weight`` repeats each of its training rows that many times
(see :mod:`koqa.data.split`). Validation rows come from one source only: ``split.validation_source``,
or the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from koqa.data.ingest import InputError


class SourceError(ValueError):
    """``data.train`` or ``split.validation_source`` cannot work; the message names the key."""


@dataclass(frozen=True)
class Source:
    """One training (or test) file and how to read and use it."""

    name: str
    path: str
    format: str
    encoding: str
    cap: int | None = None
    weight: int = 1

    def reading(self) -> dict:
        """What ingesting the file depends on (its path is a tracked input of its own)."""
        return {"name": self.name, "format": self.format, "encoding": self.encoding}


def training_sources(data: Mapping) -> list[Source]:
    """The entries of ``data.train``, completed with their defaults; names must be distinct."""
    entries = data["train"] if isinstance(data["train"], list) else [data["train"]]
    sources: list[Source] = []
    for index, entry in enumerate(entries):
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)
        source = Source(
            name=entry.get("name") or Path(entry["path"]).stem,
            path=entry["path"],
            format=entry.get("format", data["format"]),
            encoding=entry.get("encoding", data["encoding"]),
            cap=entry.get("cap"),
            weight=entry.get("weight", 1),
        )
        earlier = [i for i, s in enumerate(sources) if s.name == source.name]
        if earlier:
            raise SourceError(
                f"data.train[{index}]: source name {source.name!r} is also the name of "
                f"data.train[{earlier[0]}]; give the entries distinct `name`s"
            )
        sources.append(source)
    return sources


def part_sources(data: Mapping, part: str) -> list[Source]:
    """The sources of ``part``: ``train`` (see :func:`training_sources`) or ``test`` (the test file,
    named after its stem, read with ``data.format`` and ``data.encoding``)."""
    if part == "train":
        return training_sources(data)
    path = data["test"]
    return [Source(Path(path).stem, path, data["format"], data["encoding"])]


def validation_source(config: Mapping) -> str:
    """The name of the source validation rows come from: ``split.validation_source`` or the first."""
    names = [source.name for source in training_sources(config["data"])]
    chosen = config["split"].get("validation_source") or names[0]
    if chosen not in names:
        raise SourceError(
            f"split.validation_source: {chosen!r} is not the name of a training source "
            f"(have {names})"
        )
    return chosen


def combine_sources(frames: list[tuple[Source, pd.DataFrame]]) -> pd.DataFrame:
    """The ingested tables of several sources as one, each row with its ``source``; an id used by
    two sources is an error naming both files (scoring finds gold answers by id)."""
    owners: dict[str, tuple[Source, int]] = {}  # id -> the source and row that have it
    for source, frame in frames:
        for row_id, row in zip(frame["id"], frame["source_row"], strict=True):
            if row_id in owners:
                other, other_row = owners[row_id]
                raise InputError(
                    f"{source.path}: row {row}, field 'id': {row_id!r} is also the id of "
                    f"{other.path} row {other_row}; ids must be unique across data.train's files"
                )
            owners[row_id] = (source, row)
    return pd.concat(
        [frame.assign(source=source.name) for source, frame in frames], ignore_index=True
    )


def source_settings(sources: list[Source], key: str) -> dict[str, int]:
    """``{name: value}`` of one setting (``cap`` or ``weight``) for the sources that use it: what the
    clean and split rules take as params, so that other sources' settings rerun nothing."""
    default = next(field.default for field in fields(Source) if field.name == key)
    return {s.name: getattr(s, key) for s in sources if getattr(s, key) != default}
