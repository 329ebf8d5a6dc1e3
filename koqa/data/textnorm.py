"""Text cleaning steps, each a small named function ``str -> str`` applied to every text field.

:func:`build_steps` orders and parameterizes them from the ``clean`` section of the config:
``remove_invisible``, ``unicode_normalize``, one ``special_chars.<class>`` step per special-character
class, ``collapse_whitespace``. Every step is idempotent and so is their chain: cleaning twice
changes nothing. The same steps run over context, question and answer, so the three always agree.

Unicode form: NFKC by default. NFC only composes (it leaves ``㈜``, ``１２３``, ``％`` as they are);
NFKC also folds compatibility characters, which Korean news text is full of, so that an answer typed
one way matches a context written the other way: full-width digits and letters become ASCII
(``１２３`` -> ``123``), ``％`` -> ``%``, ``（`` -> ``(``, ``㈜`` -> ``(주)``, ``㎞`` -> ``km``. It
leaves Hangul syllables alone. It also has two costs, one avoided here and one accepted:

- NFKC turns Hangul compatibility jamo (``ㄱ``, ``ㅏ``, ``ㆍ``: the letters Korean keyboards type)
  into conjoining jamo, which fuse with their neighbours (``ㄱㅏ`` -> ``가``) or render broken
  (``정부ㆍ여당``). koqa's NFKC and NFKD keep compatibility jamo as written.
- Circled and parenthesized list markers become plain numbers (``①`` -> ``1``); choose NFC (and keep
  the ``full_width`` class folding) if that matters for your data.

Special characters: a policy per class, each ``fold`` (variants become one canonical form),
``keep`` (left alone) or ``remove`` (replaced by a space):

=============== ================================================= ===================================
class           variants                                          canonical form
=============== ================================================= ===================================
``full_width``  full-width ASCII ``！``..``～``, ideographic space   ASCII (what NFKC does; for NFC)
``quotes``      ``“ ” „ ‟ 〝 〞 〟`` / ``‘ ’ ‚ ‛``                   ``"`` / ``'``
``brackets``    ``「」 ⟨⟩`` / ``『』 ⟪⟫`` / ``【】 〔〕 〖〗 〘〙``     ``〈〉`` / ``《》`` / ``[]``
``dashes``      ``‐ ‑ ‒ – — ― − ﹣ ⁃``                           ``-``
``tildes``      ``∼ 〜 ⁓ ～``                                     ``~``
``middle_dots`` ``ㆍ ・ ･ ‧ ∙``                                   ``·``
=============== ================================================= ===================================

Quotes fold to ASCII, which the competition metric deletes, so quote style never costs a point.
Corner brackets fold to angle brackets because Korean punctuation rules (2015) make ``「」``/``〈〉``
and ``『』``/``《》`` interchangeable for titles, and the metric treats ``〈〉《》`` as spaces.
``% . , + /`` belong to no class and are never changed; ``~`` and ``-`` are never removed inside
numbers and units: with ``remove``, a dash or tilde next to a digit is folded instead
(``3∼5%`` -> ``3~5%``, ``−3.5%`` -> ``-3.5%``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache, partial

Step = Callable[[str], str]

# Zero-width characters, the BOM, bidi marks and soft hyphens (invisible, and they break substring
# matching), and C0/C1 control characters other than tab and newline (CR is handled first).
_INVISIBLE = re.compile(
    "[\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a-\u202e\u00ad\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
# whitespace that is not already a single plain space: a run of two or more, or a tab, newline, ...
_WHITESPACE_RUN = re.compile(r"\s{2,}|[^\S ]")
_COMPAT_JAMO = re.compile("([\u3131-\u318e]+)")

SPECIAL_CLASSES: dict[str, dict[str, str]] = {
    "full_width": {
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},
        "\u3000": " ",
    },
    "quotes": {**dict.fromkeys("“”„‟〝〞〟", '"'), **dict.fromkeys("‘’‚‛", "'")},
    "brackets": {
        **dict.fromkeys("「⟨\u2329", "〈"),
        **dict.fromkeys("」⟩\u232a", "〉"),
        **dict.fromkeys("『⟪", "《"),
        **dict.fromkeys("』⟫", "》"),
        **dict.fromkeys("【〔〖〘", "["),
        **dict.fromkeys("】〕〗〙", "]"),
    },
    "dashes": dict.fromkeys("‐‑‒–—―−﹣⁃", "-"),
    "tildes": dict.fromkeys("∼〜⁓～", "~"),
    "middle_dots": dict.fromkeys("ㆍ・･‧∙", "·"),
}
# Classes whose characters stay (folded) inside numbers and units even when the action is remove.
_NUMBER_CLASSES = {"dashes", "tildes"}


def remove_invisible(text: str) -> str:
    """Delete zero-width characters, BOMs, soft hyphens and control characters (keeps ``\\n``)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE.sub("", text)


def unicode_normalize(text: str, form: str = "NFKC") -> str:
    """Apply a Unicode normalization form; NFKC/NFKD keep Hangul compatibility jamo as written."""
    if unicodedata.is_normalized(form, text):  # the usual case, and a fast check
        return text
    if form in ("NFKC", "NFKD") and _COMPAT_JAMO.search(text):
        pieces = _COMPAT_JAMO.split(text)  # odd indices are the jamo runs
        return "".join(
            piece if index % 2 else unicodedata.normalize(form, piece)
            for index, piece in enumerate(pieces)
        )
    return unicodedata.normalize(form, text)


@cache
def _class_pattern(name: str, action: str) -> re.Pattern[str]:
    """The characters a class's action touches: its variants, and for remove its canonical forms."""
    table = SPECIAL_CLASSES[name]
    chars = set(table) | (set(table.values()) if action == "remove" else set())
    return re.compile("[" + "".join(re.escape(ch) for ch in sorted(chars)) + "]")


def special_chars(text: str, name: str, action: str, form: str = "NFKC") -> str:
    """Apply one special-character class's policy (see the module docstring) to ``text``.

    A replaced character may compose with a combining mark after it (``＝`` + U+0338 -> ``≠``), so
    the result is normalized again (to ``form``) in the rare case that it is no longer normalized.
    """
    if action == "keep":
        return text
    table, pattern = SPECIAL_CLASSES[name], _class_pattern(name, action)

    def replace(match: re.Match[str]) -> str:
        if action == "fold":
            return table.get(match[0], match[0])
        start, end = match.span()
        in_number = name in _NUMBER_CLASSES and (
            text[start - 1 : start].isdigit() or text[end : end + 1].isdigit()
        )
        return table.get(match[0], match[0]) if in_number else " "

    result = pattern.sub(replace, text)
    if result == text or unicodedata.is_normalized(form, result):
        return result
    return unicode_normalize(result, form)


def collapse_whitespace(text: str, keep_newlines: bool = False) -> str:
    """Collapse each whitespace run to one space, or to one newline if it holds a newline and
    ``keep_newlines``; strip both ends."""
    if not keep_newlines:
        return _WHITESPACE_RUN.sub(" ", text).strip()
    return _WHITESPACE_RUN.sub(lambda m: "\n" if "\n" in m[0] else " ", text).strip()


def build_steps(options: dict) -> list[tuple[str, Step]]:
    """The cleaning steps in order, configured from the ``clean`` config section."""
    steps: list[tuple[str, Step]] = [
        ("remove_invisible", remove_invisible),
        ("unicode_normalize", partial(unicode_normalize, form=options["unicode_form"])),
    ]
    for name in SPECIAL_CLASSES:  # a fixed order: full_width first, whatever the config's order
        action = options["special_chars"][name]
        if action != "keep":
            steps.append(
                (
                    f"special_chars.{name}",
                    partial(special_chars, name=name, action=action, form=options["unicode_form"]),
                )
            )
    steps.append(
        (
            "collapse_whitespace",
            partial(collapse_whitespace, keep_newlines=options["keep_newlines"]),
        )
    )
    return steps


def clean_text(text: str, steps: list[tuple[str, Step]]) -> str:
    """Run every step over one string."""
    for _, step in steps:
        text = step(text)
    return text
