"""Whether a variant decodes constrained to its contexts: decided on validation, read by the test job.

With ``predict.constrain: auto`` the validation predict job writes the free and the constrained
generations; both go through the same answer extraction (post-processing and the snapping decision,
:func:`koqa.predict.answers.validation_answers`, each step decided for each) and are scored against the raw gold answers. The
constrained decoding is used only where it raises validation F1; ``constrain.json`` records both
scores and the decision, and the chosen generations become the variant's validation generations.

No torch: the rule that applies it stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from koqa.files import read_json
from koqa.score.metric import score

CONSTRAIN_POLICIES = ("auto", "always", "never")


def constrain_decision(
    free: Mapping[str, str], constrained: Mapping[str, str], gold: Mapping[str, str]
) -> dict:
    """Score the final validation answers (``id -> answer``) of both decodings against ``gold``;
    ``used``: the constrained answers score higher. A JSON-ready record."""
    plain, bound = score(free, gold), score(constrained, gold)
    return {
        "used": bound.f1 > plain.f1,
        "f1_free": plain.f1,
        "f1_constrained": bound.f1,
        "em_free": plain.em,
        "em_constrained": bound.em,
        "changed": sum(free.get(k) != constrained.get(k) for k in free.keys() | constrained.keys()),
        "n": plain.n,
    }


def use_constraint(policy: str, decision: Path | None) -> bool:
    """Whether a test prediction decodes constrained: ``always``, ``never``, or with ``auto`` the
    validation decision in ``decision`` (``constrain.json``)."""
    if policy not in CONSTRAIN_POLICIES:
        raise ValueError(f"predict.constrain: {policy!r} is not one of {CONSTRAIN_POLICIES}")
    if policy != "auto":
        return policy == "always"
    if decision is None:
        raise ValueError("predict.constrain: auto needs the validation decision (constrain.json)")
    return bool(read_json(decision)["used"])
