"""Dataset statistics, a team's first look at its data: JSON numbers and PNG plots.

Per split (train, validation, test): rows and contexts; character lengths of context, question and
answer; token lengths of the tokenized examples (max and percentiles, before and after truncation);
sentences per context; answer word counts; how often the answer is found in its context and by
which alignment method. Over all splits: the most frequent special characters (anything that is not
a letter, digit or space) and the counts per special-character class of :mod:`koqa.data.textnorm`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from koqa.data.align import METHODS
from koqa.data.textnorm import SPECIAL_CLASSES
from koqa.files import atomic_path
from koqa.report.plots import new_figure

PERCENTILES = (50, 90, 95, 99)
TOP_SPECIAL_CHARS = 30
# a sentence ends at . ? ! followed by a space or the end (not the point of 3.5)
_SENTENCE_END = re.compile(r"[.?!]+(?=\s|$)")


def summary(values: pd.Series | np.ndarray) -> dict[str, float]:
    """Mean, max and percentiles of a numeric column."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {}
    stats = {"mean": float(values.mean()), "max": float(values.max())}
    stats.update({f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES})
    return {name: round(value, 2) for name, value in stats.items()}


def sentence_count(text: str) -> int:
    """Sentences in a text: sentence-final punctuation marks, plus an unterminated last sentence."""
    ends = list(_SENTENCE_END.finditer(text))
    tail = text[ends[-1].end() :] if ends else text
    return len(ends) + bool(tail.strip())


def answer_words(answers: pd.Series) -> pd.Series:
    """Words per answer."""
    return answers.str.split().str.len()


def split_statistics(
    table: pd.DataFrame, tokens: pd.DataFrame, dropped: pd.DataFrame | None = None
) -> dict:
    """Statistics of one split: its cleaned table, its shards' token counts and the rows the
    tokenize stage dropped (``reason`` column)."""
    reasons = Counter(dropped["reason"]) if dropped is not None else Counter()
    contexts = pd.Series(table["context"].unique())
    stats: dict = {
        "rows": len(table),
        "contexts": len(contexts),
        "chars": {
            "context": summary(contexts.str.len()),
            "question": summary(table["question"].str.len()),
        },
        "sentences_per_context": summary(contexts.map(sentence_count)),
        "tokens": {
            "n_tokens": summary(tokens["n_tokens"]),
            "untruncated_tokens": summary(tokens["untruncated_tokens"]),
            "truncated_rows": int(tokens["context_truncated"].sum()),
            "dropped_rows": sum(reasons.values()),
            "dropped_by_reason": dict(reasons),
        },
    }
    if "answer" in table.columns:
        words = answer_words(table["answer"])
        in_context = [a in c for a, c in zip(table["answer"], table["context"], strict=True)]
        methods = Counter(table["align_method"])
        stats["chars"]["answer"] = summary(table["answer"].str.len())
        stats["answer_words"] = {
            int(k): int(v) for k, v in words.value_counts().sort_index().items()
        }
        stats["answer_in_context"] = {
            "answer_substring": round(float(np.mean(in_context)), 4),
            "aligned": round(float((table["align_method"] != "none").mean()), 4),
            "target_differs_from_answer": round(
                float((table["target"] != table["answer"]).mean()), 4
            ),
            "align_methods": {m: methods.get(m, 0) for m in METHODS},
        }
    return stats


def special_characters(texts: list[str]) -> dict:
    """The most frequent characters that are not letters, digits or spaces, and counts per class."""
    counts = Counter(ch for text in texts for ch in text if not (ch.isalnum() or ch.isspace()))
    # a class's variants and canonical forms; full-width folds into all of ASCII, so only its variants
    by_class = {
        name: sum(
            counts[ch]
            for ch in set(table) | (set() if name == "full_width" else set(table.values()))
        )
        for name, table in SPECIAL_CLASSES.items()
    }
    return {
        "total": sum(counts.values()),
        "top": [
            {"char": ch, "code": f"U+{ord(ch):04X}", "name": unicodedata.name(ch, "?"), "count": n}
            for ch, n in counts.most_common(TOP_SPECIAL_CHARS)
        ],
        "by_class": by_class,
    }


def dataset_statistics(
    tables: dict[str, pd.DataFrame],
    tokens: dict[str, pd.DataFrame],
    max_seq_len: int,
    dropped: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Statistics of every split (with the rows tokenizing dropped, when given), plus the special
    characters of all their text."""
    dropped = dropped or {}
    texts = [
        text
        for table in tables.values()
        for column in ("context", "question", "answer")
        if column in table.columns
        for text in table[column].unique()
    ]
    return {
        "max_seq_len": max_seq_len,
        "splits": {
            name: split_statistics(tables[name], tokens[name], dropped.get(name)) for name in tables
        },
        "special_characters": special_characters(texts),
    }


def _save(figure: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def plot_token_lengths(tokens: dict[str, pd.DataFrame], max_seq_len: int, path: str | Path) -> None:
    """Histogram of the tokens each example needs uncut, per split, with the ``max_seq_len`` cut."""
    figure, axis = new_figure()
    longest = max(int(t["untruncated_tokens"].max()) for t in tokens.values())
    bins = np.linspace(0, max(longest, max_seq_len) + 1, 40)
    for name, table in tokens.items():
        axis.hist(
            table["untruncated_tokens"], bins=bins, histtype="step", linewidth=1.5, label=name
        )
    axis.axvline(max_seq_len, color="black", linestyle="--", label=f"max_seq_len {max_seq_len}")
    axis.set(xlabel="tokens per example (uncut)", ylabel="examples", title="Token lengths")
    axis.legend()
    _save(figure, path)


def plot_answer_words(tables: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Bar chart of words per answer, per labelled split."""
    labelled = {name: t for name, t in tables.items() if "answer" in t.columns}
    counts = pd.DataFrame(
        {name: answer_words(t["answer"]).value_counts() for name, t in labelled.items()}
    )
    counts = counts.fillna(0).sort_index()
    figure, axis = new_figure()
    width = 0.8 / max(1, len(counts.columns))
    for i, name in enumerate(counts.columns):
        axis.bar(counts.index + i * width, counts[name], width=width, label=name)
    axis.set(xlabel="words per answer", ylabel="answers", title="Answer length in words")
    axis.set_xticks(counts.index + width * (len(counts.columns) - 1) / 2, counts.index.astype(int))
    axis.legend()
    _save(figure, path)


def plot_sentences(tables: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Histogram of sentences per context, per split."""
    figure, axis = new_figure()
    sentences = {n: pd.Series(t["context"].unique()).map(sentence_count) for n, t in tables.items()}
    bins = np.arange(0, max(int(s.max()) for s in sentences.values()) + 2) - 0.5
    for name, values in sentences.items():
        axis.hist(values, bins=bins, histtype="step", linewidth=1.5, label=name)
    axis.set(xlabel="sentences per context", ylabel="contexts", title="Sentences per context")
    axis.legend()
    _save(figure, path)


def plot_special_characters(special: dict, path: str | Path) -> None:
    """Horizontal bars of the most frequent special characters (named, so no font is needed)."""
    top = special["top"][::-1]
    figure, axis = new_figure(8, 0.25 * len(top) + 1.5)
    axis.barh(
        [f"{entry['code']} {entry['name'].lower()}" for entry in top],
        [entry["count"] for entry in top],
    )
    axis.set(xlabel="occurrences", title="Most frequent special characters (cleaned text)")
    _save(figure, path)


def plot_alignment(tables: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Stacked bars of how answers were aligned to their contexts, per labelled split."""
    labelled = {name: t for name, t in tables.items() if "align_method" in t.columns}
    figure, axis = new_figure()
    bottom = np.zeros(len(labelled))
    for method in METHODS:
        shares = np.array([(t["align_method"] == method).mean() for t in labelled.values()])
        axis.bar(list(labelled), shares, bottom=bottom, label=method)
        bottom += shares
    axis.set(ylabel="share of rows", title="How answers were found in their contexts")
    axis.legend(loc="center left", bbox_to_anchor=(1, 0.5))
    _save(figure, path)
