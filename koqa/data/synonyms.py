"""The user-editable table of answer variants: ``variant<TAB>canonical``, one pair a line.

Alignment treats a variant and its canonical form as the same text, wherever either occurs, so an
answer written ``공정위`` is found in a context that says ``공정거래위원회``. Blank lines and lines
starting with ``#`` are ignored. A variant listed twice, a canonical form that is itself listed as
a variant, or a line that is not two non-empty tab-separated fields is an error naming the line.
"""

from __future__ import annotations

from pathlib import Path

from koqa.data.ingest import InputError, read_text


def parse_synonyms(path: str | Path, text: str) -> dict[str, str]:
    """Variant -> canonical form, from the text of a synonyms TSV file."""
    table: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise InputError(
                f"{path}: line {line_no}: expected 'variant<TAB>canonical', found {line!r}"
            )
        variant, canonical = fields
        if variant in table:
            raise InputError(
                f"{path}: line {line_no}: variant {variant!r} already listed on line {lines[variant]}"
            )
        table[variant], lines[variant] = canonical, line_no
    for variant, canonical in table.items():
        if canonical in table:
            raise InputError(
                f"{path}: line {lines[variant]}: canonical form {canonical!r} is itself a variant "
                f"(line {lines[canonical]}); map every variant straight to the canonical form"
            )
    return table


def load_synonyms(path: str | Path | None) -> dict[str, str]:
    """Read a synonyms TSV file (``None``: no synonyms)."""
    return {} if path is None else parse_synonyms(path, read_text(Path(path)))
