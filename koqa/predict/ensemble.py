"""The ensemble: a majority vote over chosen variants' answers (the contest's 2nd-place scheme).

For each question every member casts its answer; answers that character F1 cannot tell apart (the
same characters in the same order after :func:`koqa.score.metric.normalize_answer`, spaces ignored:
``2015년 8월`` and ``2015년8월``) count as one. The answer with most votes wins. A tie is
broken by the answer whose summed character F1 against all members' answers is highest, then by
member order. Answers that normalize to nothing (empty, ``?``, ``-``: they score 0 whatever the
gold) abstain (an answer is better than none); if every member abstains the ensemble's answer is
empty.

The likelihood ensemble (``ensemble.method: likelihood``) picks, for each question, among the
distinct answers of its members (those that do not abstain), the one the members find most likely:
the highest mean over members of each member's mean log-probability per answer token
(:mod:`koqa.predict.likelihood`); ties go to the earliest member's answer. ``both`` is the vote
with ties broken by that likelihood instead of character F1. With ``auto`` all three are built and
the one with the highest validation F1 is used (the first of equals, in that order).

Members are chosen on validation (``ensemble.select: greedy``) by greedy forward selection: start
with the best member alone, then add, one at a time, the member whose addition gives the highest
validation F1, while that F1 rises. Members vote in the order they were chosen, so ties go to the
stronger one, and the ensemble is never worse than its best member on validation.

The ensemble is scored, ranked and submittable like any variant, under the name ``ensemble``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from koqa.score.metric import answer_chars, char_f1, score

NAME = "ensemble"
SELECTIONS = ("greedy", "all")
METHODS = ("vote", "likelihood", "both", "auto")


class EnsembleError(ValueError):
    """The ensemble settings cannot work; the message names the key."""


def ensemble_members(config: dict) -> list[str]:
    """The members from ``ensemble.members`` (``all`` = every variant); [] when the ensemble is off.

    Checked before any job starts: unknown or repeated members, a variant named ``ensemble`` (the
    name of the ensemble's outputs and rule, enabled or not), and ``submission.variant: ensemble``
    without an ensemble are errors.
    """
    variants = list(config["variants"])
    if NAME in variants:
        raise EnsembleError(f"variants.{NAME}: the name is reserved for the ensemble; rename it")
    members = config["ensemble"]["members"]
    members = variants if members == "all" else list(members)
    unknown = sorted(set(members) - set(variants))
    if unknown:
        raise EnsembleError(f"ensemble.members: {unknown} are not variants (have {variants})")
    if len(set(members)) != len(members):
        raise EnsembleError(f"ensemble.members: {members} names a variant twice")
    enabled = len(members) >= 2
    if not enabled and config["submission"]["variant"] == NAME:
        raise EnsembleError(
            f"submission.variant: {NAME!r} needs ensemble.members to name at least 2 variants"
        )
    return members if enabled else []


def vote(answers: list[str], tie_break: Callable[[str], float] | None = None) -> str:
    """The ensemble's answer from the members' answers (in member order); see the module docstring.
    ``tie_break`` (an answer's score, e.g. its likelihood) replaces the summed character F1."""
    cast = [answer for answer in answers if answer_chars(answer)]
    if not cast:
        return ""
    groups: dict[str, list[str]] = {}
    for answer in cast:
        groups.setdefault("".join(answer_chars(answer)), []).append(answer)
    most = max(len(group) for group in groups.values())
    tied = [group[0] for group in groups.values() if len(group) == most]
    if len(tied) == 1:
        return tied[0]
    # max() keeps the first of equal keys: the earliest member's answer wins a remaining tie.
    return max(
        tied, key=tie_break or (lambda answer: sum(char_f1(answer, other) for other in cast))
    )


# Member answers: variant -> (id -> answer), every member with the same ids.
MemberAnswers = Mapping[str, Mapping[str, str]]
# Likelihood scores: variant -> (id, candidate answer) -> mean log-probability per answer token.
Likelihoods = Mapping[str, Mapping[tuple[str, str], float]]
# How a set of members (in order) answers: their names -> id -> answer.
Combine = Callable[[list[str]], dict[str, str]]


def member_answers(tables: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """``variant -> id -> answer`` of the members' ``id,answer`` tables (keyed by variant; same ids,
    in the first member's order)."""
    (first_name, first), *_ = tables.items()
    answers = {}
    for name, frame in tables.items():
        if frame["id"].duplicated().any():
            raise EnsembleError(f"ensemble member {name}: repeated ids")
        if set(frame["id"]) != set(first["id"]):
            differing = sorted(set(frame["id"]) ^ set(first["id"]))
            raise EnsembleError(
                f"ensemble member {name}: ids differ from {first_name}'s, e.g. {differing[:5]}"
            )
        column = frame.set_index("id")["answer"].fillna("").astype(str)
        answers[name] = {row_id: column[row_id] for row_id in first["id"]}
    return answers


def read_member_answers(names: Sequence[str], paths: Sequence[str]) -> dict[str, dict[str, str]]:
    """:func:`member_answers` of the members' ``id,answer`` CSV files."""
    return member_answers(
        {
            name: pd.read_csv(path, dtype=str, keep_default_na=False)
            for name, path in zip(names, paths, strict=True)
        }
    )


def voter(answers: MemberAnswers, likelihoods: Likelihoods | None = None) -> Combine:
    """The majority vote of any members of ``answers``, row by row; with ``likelihoods``, a tie
    goes to the answer the members find most likely (the method ``both``)."""

    def combine(members: list[str]) -> dict[str, str]:
        result = {}
        for row_id in answers[members[0]]:
            tie_break = (
                None if likelihoods is None else _likelihood_of(likelihoods, members, row_id)
            )
            result[row_id] = vote([answers[m][row_id] for m in members], tie_break)
        return result

    return combine


def _likelihood_of(
    likelihoods: Likelihoods, members: list[str], row_id: str
) -> Callable[[str], float]:
    """An answer's summed likelihood under ``members`` (their mean, times their count)."""
    return lambda answer: sum(likelihoods[m][(row_id, answer)] for m in members)


def likelihood_chooser(answers: MemberAnswers, likelihoods: Likelihoods) -> Combine:
    """For any members of ``answers``, row by row: their candidate the members find most likely."""

    def combine(members: list[str]) -> dict[str, str]:
        result = {}
        for row_id in answers[members[0]]:
            cast = dict.fromkeys(
                answers[m][row_id] for m in members if answer_chars(answers[m][row_id])
            )
            result[row_id] = max(cast, key=_likelihood_of(likelihoods, members, row_id), default="")
        return result

    return combine


def read_likelihoods(names: Sequence[str], paths: Sequence[str]) -> dict[str, dict]:
    """:data:`Likelihoods` from the members' likelihood tables (``id, candidate, logprob``)."""
    likelihoods = {}
    for name, path in zip(names, paths, strict=True):
        table = pd.read_parquet(path, columns=["id", "candidate", "logprob"])
        keys = zip(table["id"], table["candidate"], strict=True)
        likelihoods[name] = dict(zip(keys, table["logprob"].tolist(), strict=True))
    return likelihoods


def ensemble_methods(
    method: str, answers: MemberAnswers, likelihoods: Likelihoods | None
) -> dict[str, Combine]:
    """The ways to combine members that ``ensemble.method`` lets validation choose from."""
    if method not in METHODS:
        raise EnsembleError(f"ensemble.method: {method!r} is not one of {METHODS}")
    combines = {}
    if method in ("vote", "auto"):
        combines["vote"] = voter(answers)
    if method != "vote" and likelihoods is None:
        raise EnsembleError(f"ensemble.method: {method} needs the members' likelihoods")
    if method in ("likelihood", "auto"):
        combines["likelihood"] = likelihood_chooser(answers, likelihoods)
    if method in ("both", "auto"):
        combines["both"] = voter(answers, likelihoods)
    return combines


def select_members(
    candidates: list[str], combine: Combine, gold: Mapping[str, str]
) -> tuple[list[str], list[dict]]:
    """Greedy forward selection on validation (module docstring): the chosen members, in the
    order they were chosen, and each round's JSON-ready record (members tried, F1, EM)."""
    scored = {name: score(combine([name]), gold) for name in candidates}
    chosen = [max(candidates, key=lambda name: scored[name].f1)]  # the first of equals
    best = scored[chosen[0]]
    rounds = [{"members": list(chosen), "f1": best.f1, "em": best.em}]
    while len(chosen) < len(candidates):
        trials = {
            name: score(combine([*chosen, name]), gold) for name in candidates if name not in chosen
        }
        name = max(trials, key=lambda n: trials[n].f1)
        rounds.append({"members": [*chosen, name], "f1": trials[name].f1, "em": trials[name].em})
        if trials[name].f1 <= best.f1:
            break
        chosen.append(name)
        best = trials[name]
    return chosen, rounds


def choose_ensemble(
    candidates: list[str], combines: Mapping[str, Combine], gold: Mapping[str, str], select: str
) -> dict:
    """Decide the ensemble on validation: for each method (name -> :data:`Combine`), its members
    (``select``: ``greedy``, :func:`select_members`; ``all``: every candidate, in order) and their
    validation F1; then the method with the highest F1 (the first of equals). Returns the
    JSON-ready record: ``method``, ``members``, and each method's members, F1, EM and rounds."""
    if select not in SELECTIONS:
        raise EnsembleError(f"ensemble.select: {select!r} is not one of {SELECTIONS}")
    methods = {}
    for method, combine in combines.items():
        members, rounds = (
            select_members(candidates, combine, gold) if select == "greedy" else (candidates, [])
        )
        result = score(combine(members), gold)
        methods[method] = {"members": members, "f1": result.f1, "em": result.em, "rounds": rounds}
    method = max(methods, key=lambda name: methods[name]["f1"])
    return {
        "select": select,
        "candidates": list(candidates),
        "method": method,
        "members": methods[method]["members"],
        "methods": methods,
    }


def load_combines(
    method: str,
    members: Sequence[str],
    answer_paths: Sequence[str],
    likelihood_paths: Sequence[str],
) -> dict[str, Combine]:
    """:func:`ensemble_methods` of the members' answer files and likelihood tables (none: [])."""
    likelihoods = read_likelihoods(members, likelihood_paths) if likelihood_paths else None
    return ensemble_methods(method, read_member_answers(members, answer_paths), likelihoods)
