"""Korean numbers and units for answer matching: ``1억8천만원`` ~ ``1억 8천만 원`` ~ ``180,000,000원``.

A number is digits (with optional thousands separators and decimals) followed by any of the numeral
units ``십 백 천 만 억 조 경``; after a unit, a space and more digits continue the same number
(``1억 8천만``, ``3억 5,000만``). Its value is computed the Korean way: within each group of four
powers of ten the small units (십 백 천) add up, a large unit (만 억 조 경) multiplies the group.
A unit written after the number (``%``, ``퍼센트``, ``%포인트``) is read with it and given one
canonical spelling.

Matching only: cleaned text keeps its numbers as written.
"""

from __future__ import annotations

import re
from decimal import Decimal

_DIGITS = r"\d+(?:,\d{3})*(?:\.\d+)?"
_UNITS = "십백천만억조경"
_SMALL_UNITS = {"십": 10, "백": 100, "천": 1000}
_LARGE_UNITS = {"만": 10**4, "억": 10**8, "조": 10**12, "경": 10**16}
# written unit -> canonical unit (longest first, so 퍼센트포인트 wins over 퍼센트)
UNIT_SYNONYMS = {
    "퍼센트포인트": "%p",
    "%포인트": "%p",
    "퍼센트": "%",
    "%p": "%p",
    "%": "%",
}
NUMBER = re.compile(
    rf"(?P<number>{_DIGITS}[{_UNITS}]*(?:(?<=[{_UNITS}])\s*{_DIGITS}[{_UNITS}]*)*)"
    rf"(?:\s*(?P<unit>{'|'.join(re.escape(unit) for unit in UNIT_SYNONYMS)}))?"
)
_TOKEN = re.compile(rf"({_DIGITS})|([{_UNITS}])")


def number_value(text: str) -> Decimal:
    """The value of a Korean number such as ``1억 8천만``, ``3,500억`` or ``1.8억``."""
    total = group = Decimal(0)
    current: Decimal | None = None
    for digits, unit in _TOKEN.findall(text):
        if digits:
            current = Decimal(digits.replace(",", ""))
        elif unit in _SMALL_UNITS:
            group += (1 if current is None else current) * _SMALL_UNITS[unit]
            current = None
        else:
            group += 0 if current is None else current
            total += (group or 1) * _LARGE_UNITS[unit]
            group, current = Decimal(0), None
    return total + group + (current or 0)


def canonical_number(match: re.Match[str]) -> str:
    """A match of :data:`NUMBER` as its value in plain digits plus its canonical unit."""
    value = format(number_value(match["number"]).normalize(), "f")
    return value + (UNIT_SYNONYMS[match["unit"]] if match["unit"] else "")
