"""The ensemble: majority vote, ties broken by summed pairwise character F1, settings checked early."""

import pandas as pd
import pytest

from koqa.predict.ensemble import (
    EnsembleError,
    choose_ensemble,
    ensemble_members,
    ensemble_methods,
    likelihood_chooser,
    member_answers,
    select_members,
    vote,
    voter,
)
from koqa.score.metric import char_f1, score


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


def test_answers_that_normalize_to_nothing_abstain() -> None:
    assert vote(["", "  ", "천안"]) == "천안"
    assert vote(["서울", "?", "!"]) == "서울"  # not a three-way tie won by the first
    assert vote(["-", "-", "서울"]) == "서울"  # not two votes for "-"
    assert vote(["", ""]) == ""
    assert vote(["?", "-"]) == ""


def test_votes_per_id_in_the_first_members_order() -> None:
    answers = member_answers(
        {
            "a": pd.DataFrame({"id": ["q1", "q2"], "answer": ["x", "y"]}),
            "b": pd.DataFrame({"id": ["q2", "q1"], "answer": ["y", "z"]}),
            "c": pd.DataFrame({"id": ["q1", "q2"], "answer": ["z", "w"]}),
        }
    )
    result = voter(answers)(["a", "b", "c"])
    assert list(result.items()) == [("q1", "z"), ("q2", "y")]


def test_members_with_other_ids_fail() -> None:
    members = {
        "a": pd.DataFrame({"id": ["q1", "q2"], "answer": ["x", "y"]}),
        "b": pd.DataFrame({"id": ["q1", "q3"], "answer": ["x", "y"]}),
    }
    with pytest.raises(EnsembleError, match=r"member b: ids differ from a's"):
        member_answers(members)


# Ten validation questions. "strong" is right on 8; "weak1" and "weak2" agree on the same wrong
# answer on 6 of them, so with all three voting they outvote it there.
GOLD = {f"q{i}": f"정답{i}" for i in range(10)}
WEAK_SHARED = {f"q{i}": "서울" for i in range(6)}
ANSWERS = {
    "weak1": {**GOLD, **WEAK_SHARED, "q9": "아무"},
    "strong": {**GOLD, "q8": "틀림", "q9": "틀림"},
    "weak2": {**GOLD, **WEAK_SHARED, "q8": "엉뚱"},
}


def test_greedy_selection_is_never_worse_than_the_best_member() -> None:
    combine = voter(ANSWERS)
    f1 = {name: score(combine([name]), GOLD).f1 for name in ANSWERS}
    assert f1 == {"weak1": 0.3, "strong": 0.8, "weak2": 0.3}
    everyone = score(combine(list(ANSWERS)), GOLD).f1
    assert everyone < f1["strong"]  # all members voting: the weak ones outvote the strong one
    members, rounds = select_members(list(ANSWERS), combine, GOLD)
    assert members == ["strong"]
    assert score(combine(members), GOLD).f1 == max(f1.values())
    assert rounds[0] == {"members": ["strong"], "f1": 0.8, "em": 0.8}
    assert rounds[1]["members"][0] == "strong" and rounds[1]["f1"] <= 0.8


def test_greedy_selection_adds_members_while_validation_f1_rises() -> None:
    # "a" abstains on q3, where "b" is right: a then b beats a alone (a wins the ties, being
    # chosen first); "c" shares b's errors, so adding it outvotes a: it is not kept
    gold = {"q1": "가", "q2": "나", "q3": "다"}
    answers = {
        "c": {"q1": "x", "q2": "y", "q3": "z"},
        "b": {"q1": "x", "q2": "y", "q3": "다"},
        "a": {"q1": "가", "q2": "나", "q3": "?"},
    }
    members, rounds = select_members(list(answers), voter(answers), gold)
    assert members == ["a", "b"]
    assert [r["members"] for r in rounds] == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert [r["f1"] for r in rounds] == pytest.approx([2 / 3, 1.0, 1 / 3])


def test_choose_ensemble_records_each_method_and_picks_the_best() -> None:
    combines = {"vote": voter(ANSWERS), "strong_only": lambda members: ANSWERS["strong"]}
    greedy = choose_ensemble(list(ANSWERS), combines, GOLD, "greedy")
    assert greedy["method"] == "vote" and greedy["members"] == ["strong"]  # first of equals
    assert greedy["methods"]["strong_only"]["f1"] == greedy["methods"]["vote"]["f1"] == 0.8
    everyone = choose_ensemble(list(ANSWERS), combines, GOLD, "all")
    assert everyone["method"] == "strong_only"
    assert everyone["methods"]["vote"]["members"] == list(ANSWERS)
    assert everyone["methods"]["vote"]["f1"] < 0.8
    with pytest.raises(EnsembleError, match=r"ensemble\.select: 'some'"):
        choose_ensemble(list(ANSWERS), combines, GOLD, "some")


def test_likelihood_picks_the_candidate_the_members_find_most_likely() -> None:
    answers = {
        "a": {"q1": "990억 원", "q2": "?", "q3": "서울"},
        "b": {"q1": "990억", "q2": "천안", "q3": "부산"},
        "c": {"q1": "990억", "q2": "-", "q3": "부산"},
    }
    likelihoods = {  # the members' mean log-probability of each row's candidates
        "a": {("q1", "990억 원"): -0.1, ("q1", "990억"): -2.0, ("q2", "천안"): -3.0,
              ("q3", "서울"): -1.0, ("q3", "부산"): -1.0},
        "b": {("q1", "990억 원"): -0.5, ("q1", "990억"): -0.4, ("q2", "천안"): -2.5,
              ("q3", "서울"): -2.0, ("q3", "부산"): -2.0},
        "c": {("q1", "990억 원"): -0.9, ("q1", "990억"): -0.3, ("q2", "천안"): -9.0,
              ("q3", "서울"): -0.5, ("q3", "부산"): -0.5},
    }  # fmt: skip
    choose = likelihood_chooser(answers, likelihoods)
    # q1: two votes for "990억", but "990억 원" has the higher mean (-0.5 against -0.9); q2: the
    # only answer that does not abstain; q3: equal likelihoods, the earliest member's answer
    assert choose(["a", "b", "c"]) == {"q1": "990억 원", "q2": "천안", "q3": "서울"}
    assert choose(["c", "b"]) == {"q1": "990억", "q2": "천안", "q3": "부산"}
    assert choose(["a"]) == {"q1": "990억 원", "q2": "", "q3": "서울"}
    assert voter(answers)(["a", "b", "c"])["q1"] == "990억"


def test_both_is_the_vote_with_ties_broken_by_likelihood() -> None:
    # one vote each: by summed character F1 "새봄제약" wins (closest to the others); the members
    # find "누리바이오" most likely; a majority stays a majority whatever the likelihoods
    answers = {
        "a": {"q1": "새봄제약", "q2": "천안"},
        "b": {"q1": "새봄제약 주식회사", "q2": "천안"},
        "c": {"q1": "누리바이오", "q2": "서울"},
    }
    likelihoods = {
        name: {("q1", "새봄제약"): -2.0, ("q1", "새봄제약 주식회사"): -3.0, ("q1", "누리바이오"): -0.5,
               ("q2", "천안"): -4.0, ("q2", "서울"): -0.1}
        for name in answers
    }  # fmt: skip
    assert voter(answers)(["a", "b", "c"]) == {"q1": "새봄제약", "q2": "천안"}
    both = ensemble_methods("both", answers, likelihoods)
    assert list(both) == ["both"]
    assert both["both"](["a", "b", "c"]) == {"q1": "누리바이오", "q2": "천안"}
    likely = likelihood_chooser(answers, likelihoods)(["a", "b", "c"])
    assert likely == {"q1": "누리바이오", "q2": "서울"}


def test_the_method_setting_offers_vote_likelihood_or_both() -> None:
    answers = {"a": {"q1": "x"}, "b": {"q1": "y"}}
    likelihoods = {
        "a": {("q1", "x"): -1.0, ("q1", "y"): -0.5},
        "b": {("q1", "x"): -1.0, ("q1", "y"): -0.5},
    }
    assert list(ensemble_methods("auto", answers, likelihoods)) == ["vote", "likelihood", "both"]
    assert list(ensemble_methods("vote", answers, None)) == ["vote"]
    assert ensemble_methods("likelihood", answers, likelihoods)["likelihood"](["a", "b"]) == {
        "q1": "y"
    }
    with pytest.raises(EnsembleError, match="needs the members' likelihoods"):
        ensemble_methods("auto", answers, None)
    with pytest.raises(EnsembleError, match=r"ensemble\.method: 'mean'"):
        ensemble_methods("mean", answers, likelihoods)


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
