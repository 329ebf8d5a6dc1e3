"""The ensemble: a majority vote over chosen variants' answers (the contest's 2nd-place scheme).

For each question every member casts its answer; answers that character F1 cannot tell apart (the
same characters in the same order after :func:`koqa.score.metric.normalize_answer`, spaces ignored:
``2015년 8월`` and ``2015년8월``) count as one. The answer with most votes wins. A tie is
broken by the answer whose summed character F1 against all members' answers is highest, then by
member order. Empty answers abstain (an answer is better than none); if every member is empty the
ensemble's answer is empty too.

The ensemble is scored, ranked and submittable like any variant, under the name ``ensemble``.
"""

from __future__ import annotations

import pandas as pd

from koqa.score.metric import answer_chars, char_f1

NAME = "ensemble"


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


def vote(answers: list[str]) -> str:
    """The ensemble's answer from the members' answers (in member order); see the module docstring."""
    cast = [answer for answer in answers if answer.strip()]
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
    return max(tied, key=lambda answer: sum(char_f1(answer, other) for other in cast))


def ensemble_answers(member_answers: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Vote row by row over the members' ``id,answer`` tables (keyed by variant; same ids, output in
    the first member's order)."""
    (first_name, first), *_ = member_answers.items()
    columns = []
    for name, frame in member_answers.items():
        if frame["id"].duplicated().any():
            raise EnsembleError(f"ensemble member {name}: repeated ids")
        if set(frame["id"]) != set(first["id"]):
            differing = sorted(set(frame["id"]) ^ set(first["id"]))
            raise EnsembleError(
                f"ensemble member {name}: ids differ from {first_name}'s, e.g. {differing[:5]}"
            )
        columns.append(frame.set_index("id")["answer"].fillna("").astype(str))
    answers = [vote([column[row_id] for column in columns]) for row_id in first["id"]]
    return pd.DataFrame({"id": first["id"].tolist(), "answer": answers})
