"""Text cleaning steps, each a small named function ``str -> str`` applied to every text field.

:func:`build_steps` orders and parameterizes them from the ``clean`` section of the config. Each step is idempotent, so cleaning twice changes nothing.

Unicode form: NFKC by default. It folds compatibility characters that real Korean news text is full
of, so that context, question and answer agree: full-width digits and letters become ASCII
(``１２３`` -> ``123``), ``％`` -> ``%``, ``（`` -> ``(``, ``㈜`` -> ``(주)``, while Hangul syllables
are untouched (NFC would keep all of these as they are, and answers typed with the other form would
never match the context).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import partial

Step = Callable[[str], str]

# Zero-width characters, the BOM and bidi marks: invisible, and they break substring matching.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a-\u202e\u00ad]")
# C0/C1 control characters other than tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newline
_NEWLINES = re.compile(r" *\n[\s]*")


def unicode_normalize(text: str, form: str = "NFKC") -> str:
    """Apply a Unicode normalization form (NFKC, NFC, ...)."""
    return unicodedata.normalize(form, text)


def remove_invisible(text: str) -> str:
    """Delete zero-width characters, BOMs, soft hyphens and control characters (keeps ``\\n``)."""
    return _CONTROL.sub("", _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))


def collapse_whitespace(text: str, keep_newlines: bool = False) -> str:
    """Collapse runs of spaces and tabs to one space; newlines kept (one per run) or joined."""
    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n" if keep_newlines else " ", text)
    return _SPACES.sub(" ", text).strip()


def build_steps(options: dict) -> list[tuple[str, Step]]:
    """The cleaning steps in order, configured from the ``clean`` config section."""
    return [
        ("unicode_normalize", partial(unicode_normalize, form=options["unicode_form"])),
        ("remove_invisible", remove_invisible),
        (
            "collapse_whitespace",
            partial(collapse_whitespace, keep_newlines=options["keep_newlines"]),
        ),
    ]
