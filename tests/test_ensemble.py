"""The ensemble: majority vote, ties broken by summed pairwise character F1, settings checked early."""

import pandas as pd
import pytest

from koqa.predict.ensemble import EnsembleError, ensemble_answers, ensemble_members, vote
from koqa.score.metric import char_f1


def test_majority_wins() -> None:
    assert vote(["990억 원", "990억", "990억 원"]) == "990억 원"


def test_answers_the_metric_cannot_tell_apart_vote_together() -> None:
    # "990억원" and "990억 원!" differ in spacing and ASCII punctuation only: one answer, two votes
    assert vote(["990억원", "980억 원", "990억 원!", "900억"]) == "990억원"
    # character F1 ignores spaces: three votes for one answer against two, not 1, 1, 1 against 2
    assert vote(["2015년 8월", "2015년8월", "2015 년8월", "2015년", "2015년"]) == "2015년 8월"


def test_tie_goes_to_the_answer_closest_to_all_others() -> None:
    answers = ["새봄제약", "새봄제약 주식회사", "누리바이오"]
    sums = {a: sum(char_f1(a, other) for other in answers) for a in answers}
    assert max(sums, key=sums.get) == "새봄제약"  # the arithmetic behind the expectation
    assert vote(answers) == "새봄제약"
    assert vote(["a", "b", "b", "a"]) == "a"  # an exact tie left: the earliest member's


def test_empty_answers_abstain() -> None:
    assert vote(["", "  ", "천안"]) == "천안"
    assert vote(["", ""]) == ""


def test_ensemble_answers_vote_per_id_in_the_first_members_order() -> None:
    members = {
        "a": pd.DataFrame({"id": ["q1", "q2"], "answer": ["x", "y"]}),
        "b": pd.DataFrame({"id": ["q2", "q1"], "answer": ["y", "z"]}),
        "c": pd.DataFrame({"id": ["q1", "q2"], "answer": ["z", "w"]}),
    }
    result = ensemble_answers(members)
    assert result["id"].tolist() == ["q1", "q2"]
    assert result["answer"].tolist() == ["z", "y"]


def test_members_with_other_ids_fail() -> None:
    members = {
        "a": pd.DataFrame({"id": ["q1", "q2"], "answer": ["x", "y"]}),
        "b": pd.DataFrame({"id": ["q1", "q3"], "answer": ["x", "y"]}),
    }
    with pytest.raises(EnsembleError, match=r"member b: ids differ from a's"):
        ensemble_answers(members)


def _config(members: object, variants: tuple[str, ...] = ("zeroshot", "lora", "full")) -> dict:
    return {
        "variants": {name: {"method": "lora"} for name in variants},
        "ensemble": {"members": members},
        "submission": {"variant": "best"},
    }


def test_members_from_config() -> None:
    assert ensemble_members(_config("all")) == ["zeroshot", "lora", "full"]
    assert ensemble_members(_config(["lora", "full"])) == ["lora", "full"]
    assert ensemble_members(_config(["lora"])) == []  # one member: no ensemble
    assert ensemble_members(_config("all", ("lora",))) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config(["lora", "dora"]), r"ensemble.members: \['dora'\] are not variants"),
        (_config(["lora", "lora"]), "names a variant twice"),
        (_config("all", ("lora", "ensemble")), "variants.ensemble: the name is reserved"),
        # the ensemble's rule and output paths exist even when it is off
        (_config(["lora"], ("lora", "ensemble")), "variants.ensemble: the name is reserved"),
        (
            {**_config(["lora"]), "submission": {"variant": "ensemble"}},
            "needs ensemble.members to name at least 2",
        ),
    ],
)
def test_bad_ensemble_settings_fail_early(config: dict, message: str) -> None:
    with pytest.raises(EnsembleError, match=message):
        ensemble_members(config)
