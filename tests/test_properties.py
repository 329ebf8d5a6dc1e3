"""Properties that must hold for any input, checked with hypothesis: cleaning is idempotent, the
metric symmetric and bounded, and alignment finds an answer where a noisy variant of a real context
holds it (a span known by construction, not read back from the aligner's output)."""

import random
import re
from pathlib import Path

import pandas as pd
from hypothesis import event, given, settings
from hypothesis import strategies as st

from koqa.config import load_config
from koqa.data.align import Aligner
from koqa.data.clean import clean_synonyms, clean_table
from koqa.data.numbers import NUMBER
from koqa.data.synonyms import load_synonyms
from koqa.data.textnorm import SPECIAL_CLASSES, build_steps, clean_text
from koqa.score.metric import char_f1

# Characters real Korean news text and its noise are made of, and the troublemakers of Unicode.
ALPHABET = st.one_of(
    st.sampled_from("한빛전자는억천만원조가나다의을를에서 "),
    st.sampled_from("0123456789.,%~-+/"),
    st.sampled_from("ㄱㅏㆍㅋ㈜①㎞％１２（）“”‘’「」『』【】–—−∼〜・\u3000"),
    st.sampled_from("\n\r\t\u200b\ufeff\u00ad\x07\u0301\u0338=<"),
    st.characters(codec="utf-8"),
)
TEXT = st.text(ALPHABET, max_size=40)
OPTIONS = st.fixed_dictionaries(
    {
        "unicode_form": st.sampled_from(["NFC", "NFKC", "NFD", "NFKD"]),
        "special_chars": st.fixed_dictionaries(
            {
                name: st.sampled_from(
                    ["fold", "keep"] if name == "full_width" else ["fold", "keep", "remove"]
                )
                for name in SPECIAL_CLASSES
            }
        ),
        "keep_newlines": st.booleans(),
    }
)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, options=OPTIONS)
def test_cleaning_is_idempotent(text: str, options: dict) -> None:
    steps = build_steps(options)
    once = clean_text(text, steps)
    assert clean_text(once, steps) == once


# -- alignment on noisy variants of real contexts -------------------------------------------------
ROOT = Path(__file__).parents[1]
CLEAN = load_config(ROOT / "config.yaml")["clean"]  # the shipped cleaning and alignment settings
STEPS = build_steps(CLEAN)
SYNONYMS = load_synonyms(ROOT / CLEAN["synonyms"])
CLEAN_SYNONYMS = clean_synonyms(SYNONYMS, STEPS)
# private-use characters around the answer's characters in a noisy context: where cleaning leaves
# them is where the answer must be found
OPEN, CLOSE = "\ue100", "\ue101"
# characters and the variants of them that the shipped cleaning folds back (NFKC, then the
# special-character classes): full-width forms, curly quotes, dashes, tildes, middle dots
FOLDS = {
    **{c: chr(ord(c) + 0xFEE0) for c in "0123456789%(),.ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    '"': "“”",
    "'": "‘’",
    "-": "‐–—−",
    "~": "∼〜",
    "·": "・ㆍ",
    " ": "\u3000",
}
GROUPS = {"(주)": "㈜", "km": "㎞"}  # several characters that NFKC folds back from one
# the characters above that a special-character class folds (the others: NFKC)
CLASS_FOLDED = "\"'-~·"
INVISIBLE = "\u200b\ufeff\u00ad\u200e"
SPACE_RUNS = ["", "  ", "\t", "\n", " \n\t "]  # "": the space is dropped
# the synonym table's groups: a canonical form and its variants (공정거래위원회, 공정위)
SYNONYM_GROUPS = [
    {canonical, *(v for v, c in SYNONYMS.items() if c == canonical)}
    for canonical in sorted(set(SYNONYMS.values()))
]
# the groups an answer may be reworded with: not where one form holds another (서울대 ~ 서울대학교:
# an answer 서울대 is then an exact span of the context's 서울대학교)
SWAPPABLE = [g for g in SYNONYM_GROUPS if not any(a != b and a in b for a in g for b in g)]


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _synonyms_elsewhere(context: str, start: int, end: int) -> bool:
    """Whether a term of a synonym group the answer uses occurs outside the answer too (where
    ``normalized`` alignment would find it first)."""
    answer, outside = context[start:end], context[:start] + "\0" + context[end:]
    return any(
        any(t in answer for t in group) and any(t in outside for t in group)
        for group in SYNONYM_GROUPS
    )


def _cuts_a_number(context: str, start: int, end: int) -> bool:
    """Whether [start, end) cuts a number of the context (with its unit) in two: ``normalized``
    alignment reads numbers whole (``1조`` is not a part of ``1조 1천억``)."""
    return any(
        m.start() < start < m.end() or m.start() < end < m.end() for m in NUMBER.finditer(context)
    )


def _candidates() -> dict[str, list[tuple[str, int, int]]]:
    """Answers in the sample's real contexts, ``(context, start, end)``: the sample's own answers
    where they are a span of the context, and every span of one to three whole words. ``unique``:
    the answer's cleaned, space-free text occurs once in the context's; ``foldable``: among those,
    the answers holding a quote, dash, tilde or middle dot, or a group of characters that NFKC
    folds into one (``㈜``); ``rewordable``: among the unique ones,
    the answers holding a number with thousands separators, a percentage or a synonym (used nowhere
    else in the context), that cut no number in two; ``later``: spans at a later occurrence of their text (only
    ``answer_start`` can find those)."""
    frame = pd.read_csv(ROOT / "resources/sample/train.csv").dropna()
    found = set()
    for context, answer in zip(frame["context"], frame["answer"], strict=True):
        start = context.find(answer)
        if start >= 0:
            found.add((context, start, start + len(answer)))
    for context in frame["context"].unique():
        words = [m.span() for m in re.finditer(r"\S+", context)]
        for i in range(len(words)):
            for j in range(i, min(i + 3, len(words))):
                found.add((context, words[i][0], words[j][1]))
    pools: dict[str, list[tuple[str, int, int]]] = {
        "unique": [],
        "foldable": [],
        "rewordable": [],
        "later": [],
    }
    cleaned = {context: _squeeze(clean_text(context, STEPS)) for context, _, _ in found}
    synonym_terms = re.compile("|".join(sorted(set().union(*SWAPPABLE))))
    for context, start, end in sorted(found):
        answer = context[start:end]
        key = _squeeze(clean_text(answer, STEPS))
        count = cleaned[context].count(key)
        if answer != answer.strip() or len(key) < 2:
            continue
        if count == 1:
            pools["unique"].append((context, start, end))
            if any(c in answer for c in CLASS_FOLDED) or any(g in answer for g in GROUPS):
                pools["foldable"].append((context, start, end))
            if _cuts_a_number(context, start, end) or _synonyms_elsewhere(context, start, end):
                continue
            if re.search(r"\d,\d{3}|%", answer) or synonym_terms.search(answer):
                pools["rewordable"].append((context, start, end))
        elif start > context.find(answer):
            pools["later"].append((context, start, end))
    return pools


CANDIDATES = _candidates()
NOISE = st.fixed_dictionaries(
    {
        "fold": st.booleans(),
        "invisible": st.booleans(),
        "space_runs": st.booleans(),
        "word_breaks": st.booleans(),  # spaces put between syllables ("unique" pool)
        "rate": st.sampled_from([0.05, 0.3, 1.0]),
    }
)


def _noisy(text: str, noise: dict, rng: random.Random) -> str:
    """``text`` with the kinds of noise switched on in ``noise``, each at ``noise["rate"]``."""
    rate, out, i = noise["rate"], [], 0
    while i < len(text):
        group = next((g for g in GROUPS if text.startswith(g, i)), None)
        if group and noise["fold"] and rng.random() < rate:
            out.append(GROUPS[group])
            i += len(group)
            continue
        char = text[i]
        if char == " " and noise["space_runs"] and rng.random() < rate:
            out.append(rng.choice(SPACE_RUNS))
        elif char in FOLDS and noise["fold"] and rng.random() < rate:
            out.append(rng.choice(FOLDS[char]))
        else:
            out.append(char)
        following = text[i + 1 : i + 2]
        if following and not (char + following).isspace() and " " not in char + following:
            if noise["invisible"] and rng.random() < rate:
                out.append(rng.choice(INVISIBLE))
            elif noise["word_breaks"] and "가" <= char <= "힣" and "가" <= following <= "힣":
                out.append(" " if rng.random() < rate / 2 else "")
        i += 1
    return "".join(out)


def _reworded(text: str, rng: random.Random) -> str:
    """``text`` with its numbers written another way (3,300억 -> 3300억, % -> 퍼센트) and its
    synonyms swapped (공정위 <-> 공정거래위원회), each at random."""
    if rng.random() < 0.5:
        text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    if rng.random() < 0.5:
        text = text.replace("%", "퍼센트")
    for group in SWAPPABLE:
        term = next((t for t in sorted(group, key=len, reverse=True) if t in text), None)
        if term:
            text = text.replace(term, rng.choice(sorted(group)))
    return text


@settings(max_examples=150, deadline=None)
@given(
    pool=st.sampled_from(list(CANDIDATES)),
    pick=st.integers(0, 10**9),
    noise=NOISE,
    seed=st.integers(0, 2**32 - 1),
)
def test_alignment_finds_the_answer_where_a_noisy_context_holds_it(
    pool: str, pick: int, noise: dict, seed: int
) -> None:
    """A real context and an answer span of it, both made noisy independently (as a gold answer is
    typed apart from its article): invisible characters, full-width and compatibility forms, curly
    quotes, dashes, runs of spaces and dropped spaces (every "foldable" answer gets folded
    characters); for answers found once, also spaces put inside words ("unique" pool), or numbers
    written another way and synonyms swapped ("rewordable"). The cleaned, noisy context must give the answer at the span that holds the
    original answer's characters, which the noisy context carries between two markers; the method
    must be the first one that can work there. Cleaning the training table
    with the raw noisy offset (as KorQuAD gives it) finds the same span, even where the answer also
    occurs earlier in the context."""
    context, start, end = CANDIDATES[pool][pick % len(CANDIDATES[pool])]
    rng, unique = random.Random(seed), pool != "later"
    if pool != "unique":  # spaces inside numbers and units are not ignored
        noise = {**noise, "word_breaks": False}
    if pool == "foldable":
        noise = {**noise, "fold": True, "rate": max(noise["rate"], 0.3)}
    if pool == "later":  # a span found at its given offset only: no noise that outlives cleaning
        noise = {**noise, "space_runs": False}
    region, answer = context[start:end], context[start:end]
    if pool == "rewordable" and rng.random() < 0.5:
        region = _reworded(region, rng)
    elif pool == "rewordable":
        answer = _reworded(answer, rng)
    before, region, after = (
        _noisy(t, noise, rng) for t in (context[:start], region, context[end:])
    )
    answer = _noisy(answer, noise, rng)
    marked = clean_text(before + OPEN + region + CLOSE + after, STEPS)
    cleaned = clean_text(before + region + after, STEPS)
    assert marked.replace(OPEN, "").replace(CLOSE, "") == cleaned, "the markers changed cleaning"
    expected = (marked.index(OPEN), marked.index(CLOSE) - 1)
    surface, target = cleaned[slice(*expected)], clean_text(answer, STEPS)
    if surface == target:
        method = "exact"
    elif _squeeze(surface) == _squeeze(target):
        method = "whitespace"
    else:
        method = "normalized"
    event(f"{pool}, {method}")  # --hypothesis-show-statistics

    if unique:
        alignment = Aligner(CLEAN_SYNONYMS, CLEAN["min_align_f1"])(cleaned, target)
        assert (alignment.start, alignment.end, alignment.method) == (*expected, method)

    frame = pd.DataFrame(
        {
            "id": ["r"],
            "context": [before + region + after],
            "question": ["질문"],
            "answer": [answer],
            "answer_start": pd.array([len(before)], dtype="Int64"),
        }
    )
    (row,) = clean_table(frame, CLEAN, labelled=True, synonyms=SYNONYMS).kept.itertuples()
    assert (row.answer_start, row.answer_start + len(row.target)) == expected
    assert row.align_method == ("given" if method == "exact" else method)


@settings(max_examples=300, deadline=None)
@given(a=TEXT, b=TEXT)
def test_metric_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert char_f1(a, b) == char_f1(b, a)
    assert 0.0 <= char_f1(a, b) <= 1.0
    assert char_f1(a, a) in (0.0, 1.0)
