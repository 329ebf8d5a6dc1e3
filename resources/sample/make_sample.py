"""Generate the small, deterministic Korean news-QA sample dataset shipped with koqa.

The files mimic the Dacon 2024 Inha AI Challenge format (economy-news context,
question, short answer scored by character-level F1) so the pipeline can run end
to end without the real data:

* ``train.csv`` / ``train.json`` -- ``id,context,question,answer`` training rows.
* ``test.csv`` -- ``id,context,question`` rows about different articles.
* ``sample_submission.csv`` -- ``id,answer`` with the placeholder ``answer``.

Every article is a 4-7 sentence news story about a fictional company, built from
sentence templates whose slots (amounts, percentages, dates, names, places,
products) double as answers, so a tiny model can learn the regularities.

Realistic noise is injected with a fixed seed; the exact counts are fixed here
and printed when the script runs.

Context noise (train and test):
  * ``\\n`` between some sentences, ``\\n\\n`` paragraph breaks, or ``\\r\\n`` breaks;
  * doubled/tripled spaces;
  * full-width characters: digits (``１２３``) in one sentence, ``％``, a ``（주）``
    or ``㈜`` company prefix, full-width parentheses;
  * zero-width spaces (U+200B) and byte-order marks (U+FEFF) after a space.

Row noise (train only):
  * answers whose spacing/number format differs from the context
    (``1억 8천만 원`` -> ``1억8천만원``, ``3.5%`` -> ``3.5 %`` / ``3.5퍼센트``);
  * answers absent from the context (a paraphrase or a wrong synonym);
  * leading/trailing spaces in some questions and answers;
  * zero-width space / U+FEFF inside some answers;
  * exact duplicate rows under a new id;
  * one row repeating another's context and question with a conflicting answer;
  * exactly one empty answer.
"""

import argparse
import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

SEED = 20240701
# questions per context -> number of contexts: 70 train contexts / 220 rows, 15 test / 41
QUESTION_PLAN = {"train": {2: 12, 3: 36, 4: 22}, "test": {2: 6, 3: 7, 4: 2}}
CONTEXT_CHARS = (250, 450)
SUBMISSION_PLACEHOLDER = "answer"

# How many contexts / rows receive each kind of noise.
TRAIN_CONTEXT_NOISE = {
    "newline": 18,
    "paragraph": 6,
    "crlf": 4,
    "multi_space": 10,
    "fw_digits": 2,
    "fw_percent": 2,
    "fw_corp": 3,
    "fw_parens": 2,
    "zwsp": 6,
    "bom": 2,
}
TEST_CONTEXT_NOISE = {
    "newline": 4,
    "paragraph": 1,
    "crlf": 1,
    "multi_space": 3,
    "fw_digits": 1,
    "fw_percent": 1,
    "fw_corp": 1,
    "fw_parens": 1,
    "zwsp": 2,
    "bom": 1,
}
CONTEXT_NOISE = {"train": TRAIN_CONTEXT_NOISE, "test": TEST_CONTEXT_NOISE}
ROW_NOISE = {
    "answer_format": 20,
    "answer_not_in_context": 4,
    "answer_empty": 1,
    "answer_space": 5,
    "answer_zero_width": 3,
    "question_space": 6,
    "duplicate": 5,
    "conflict": 1,
}

# answer kinds for which another value of the article makes a plausible wrong answer
CONFLICT_KINDS = ("amount", "percent", "person", "company", "place")
ZWSP = "\u200b"
BOM = "\ufeff"
FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")

# --------------------------------------------------------------------------- pools

COMPANY_PREFIXES = (
    "한빛", "세종", "미래", "대한", "동양", "새봄", "푸른", "누리", "태평", "한결", "가온",
    "다솜", "청운", "서해", "금강", "백두", "한울", "온누리", "하늘", "으뜸", "신성", "삼정",
    "동서", "아라",
)  # fmt: skip
# suffix -> (industry, products)
SECTORS = {
    "전자": ("전자부품", ("AI 반도체", "OLED 패널", "카메라 모듈")),
    "바이오": ("바이오의약품", ("바이오시밀러", "항체 치료제", "진단 키트")),
    "제약": ("의약품", ("항암 신약", "백신 원료", "개량신약")),
    "화학": ("석유화학", ("친환경 플라스틱", "배터리 분리막", "특수 접착제")),
    "에너지": ("신재생에너지", ("태양광 모듈", "수소 연료전지", "ESS 배터리")),
    "중공업": ("조선·플랜트", ("LNG 운반선", "해상풍력 구조물", "선박 엔진")),
    "모빌리티": ("자동차 부품", ("전기차 구동모터", "자율주행 센서", "배터리 팩")),
    "물산": ("종합무역", ("2차전지 소재", "친환경 포장재", "리튬 원료")),
    "소재": ("첨단소재", ("양극재", "탄소섬유", "반도체 웨이퍼")),
    "식품": ("식품", ("간편식", "식물성 단백질", "건강기능식품")),
    "로보틱스": ("로봇", ("물류 로봇", "협동 로봇", "서빙 로봇")),
    "통신": ("통신장비", ("5G 중계기", "광통신 모듈", "위성 안테나")),
}
# product -> a looser name for it (used for "answer not in context" noise)
PRODUCT_ALIASES = {
    "AI 반도체": "인공지능 칩",
    "OLED 패널": "디스플레이",
    "바이오시밀러": "복제약",
    "항암 신약": "암 치료제",
    "태양광 모듈": "태양전지",
    "LNG 운반선": "가스선",
    "전기차 구동모터": "모터",
    "물류 로봇": "배송 로봇",
    "배터리 분리막": "2차전지 부품",
    "간편식": "즉석식품",
}
# place -> a broader or wrong region (used for "answer not in context" noise)
PLACES = {
    "판교": "성남",
    "여의도": "서울 영등포",
    "송도": "인천",
    "마곡": "서울 강서",
    "오송": "청주",
    "구미": "대구",
    "평택": "경기 남부",
    "울산": "경남",
    "창원": "경남",
    "광양": "전남",
    "새만금": "군산",
    "부산": "경남",
    "대전": "충청",
    "천안": "충남",
    "화성": "수원",
    "세종": "충청",
}
SURNAMES = (
    "김",
    "이",
    "박",
    "최",
    "정",
    "강",
    "조",
    "윤",
    "장",
    "임",
    "한",
    "오",
    "서",
    "신",
    "권",
)
GIVEN_NAMES = (
    "민수", "지현", "서연", "도윤", "하준", "수빈", "영호", "재원", "은지", "태현", "성민",
    "혜진", "준혁", "유진", "상철", "미경", "동훈", "소영", "우진", "정호", "현우", "지은",
    "경수", "보람", "승훈",
)  # fmt: skip
BROKERS = ("한양투자증권", "새한증권", "동방증권", "누리투자증권", "대성증권", "하나로증권")
AGENCIES = (
    "한국도로관리공단", "중부수자원공사", "국가철도시설원", "남부전력공사",
    "서울도시개발공사", "한국환경시설공단",
)  # fmt: skip
CONTRACT_WORKS = (
    "교량 안전점검", "하수관로 정비", "고속도로 설계", "철도 신호설비 유지보수",
    "송전선로 감리", "정수장 시설 개량",
)  # fmt: skip
UNIVERSITIES = {
    "서울대 경영학과": "서울대학교",
    "고려대 화학공학과": "고려대학교",
    "연세대 경제학과": "연세대학교",
    "KAIST 전기전자공학과": "카이스트",
    "포스텍 신소재공학과": "포항공대",
    "한양대 기계공학과": "한양대학교",
}
MODEL_HEADS = ("누리", "에어", "루미", "비전", "하이", "클린", "스마트", "제로", "오로라", "바로")
MODEL_TAILS = ("패드", "원", "S", "맥스", "플러스", "핏", "X", "라이트", "프로", "온")

# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Value:
    """A slot value: its surface text, answer kind and optional paraphrase."""

    text: str
    kind: str
    paraphrase: str | None = None


def has_final_consonant(word: str) -> bool:
    """Whether ``word`` is read with a final consonant (for choosing particles)."""
    last = word[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 != 0
    return last in "013678"  # 영 일 삼 육 칠 팔; other digits, letters and % have none


def ends_with_rieul(word: str) -> bool:
    """Whether ``word`` ends in ㄹ (takes 로, not 으로)."""
    last = word[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 == 8
    return last in "178"


def with_particles(slots: dict[str, Value]) -> dict[str, str]:
    """Template fields: each slot plus ``_eun/_i/_eul/_wa/_ro`` particle forms."""
    fields: dict[str, str] = {}
    for key, value in slots.items():
        text = value.text
        closed = has_final_consonant(text)
        fields[key] = text
        fields[f"{key}_eun"] = text + ("은" if closed else "는")
        fields[f"{key}_i"] = text + ("이" if closed else "가")
        fields[f"{key}_eul"] = text + ("을" if closed else "를")
        fields[f"{key}_wa"] = text + ("과" if closed else "와")
        fields[f"{key}_ro"] = text + ("으로" if closed and not ends_with_rieul(text) else "로")
    return fields


def format_won(man: int) -> str:
    """Korean news style amount from a value in 만 원: ``1억 8천만 원``, ``2조 1천억 원``."""
    jo, rest = divmod(man, 10**8)
    eok, man_rest = divmod(rest, 10**4)
    parts = []
    if jo:
        parts.append(f"{jo}조")
    if eok:
        parts.append(f"{eok // 1000}천억" if jo and eok % 1000 == 0 else f"{eok:,}억")
    if man_rest:
        parts.append(f"{man_rest // 1000}천만" if man_rest % 1000 == 0 else f"{man_rest:,}만")
    return " ".join(parts) + " 원"


def amount(rng: random.Random, scale: str) -> Value:
    """A money amount: ``small`` (억 + 천만), ``mid`` (수백~수천억) or ``large`` (조)."""
    if scale == "small":
        man = rng.randrange(12, 100) * 1000
    elif scale == "mid":
        man = rng.choice((rng.randrange(12, 100) * 10, rng.randrange(10, 100) * 100)) * 10**4
    else:
        man = rng.choice((rng.randrange(10, 60) * 1000, rng.randrange(20, 120) * 500)) * 10**4
    return Value(format_won(man), "amount")


def percent(rng: random.Random, low: float, high: float) -> Value:
    """A percentage such as ``3.5%`` or ``12%``."""
    number = rng.randrange(int(low * 10), int(high * 10) + 1) / 10
    text = f"{number:g}%" if rng.random() < 0.3 else f"{number:.1f}%"
    return Value(text, "percent")


def person(rng: random.Random, taken: list[str]) -> Value:
    """A Korean full name not already in ``taken``."""
    while True:
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
        if name not in taken:
            taken.append(name)
            return Value(name, "person")


def draw_slots(rng: random.Random, company: str, others: list[str]) -> dict[str, Value]:
    """Draw every slot an article template may use (unused ones are simply ignored)."""
    suffix = next(s for s in SECTORS if company.endswith(s))
    field, products = SECTORS[suffix]
    partner, target = rng.sample([c for c in others if c != company], 2)
    target_field = next(f for s, (f, _) in SECTORS.items() if target.endswith(s))
    place, plant, hq, co_hq = rng.sample(list(PLACES), 4)
    product = rng.choice(products)
    univ = rng.choice(list(UNIVERSITIES))
    year = rng.choice((2023, 2024))
    month, build_month = rng.randint(1, 12), rng.randint(1, 12)
    names: list[str] = []
    model = rng.choice(MODEL_HEADS) + rng.choice(MODEL_TAILS)

    def raw(text: object) -> Value:
        return Value(str(text), "raw")

    def date(text: str) -> Value:
        return Value(text, "date")

    return {
        "co": Value(company, "company"),
        "partner": Value(partner, "company"),
        "target": Value(target, "company"),
        "firm": Value(rng.choice(BROKERS), "company"),
        "org": Value(rng.choice(AGENCIES), "company"),
        "ceo": person(rng, names),
        "person": person(rng, names),
        "analyst": person(rng, names),
        "exec": person(rng, names),
        "place": Value(place, "place", PLACES[place]),
        "plant": Value(plant, "place", PLACES[plant]),
        "hq": Value(hq, "place", PLACES[hq]),
        "co_hq": Value(co_hq, "place", PLACES[co_hq]),
        "product": Value(product, "phrase", PRODUCT_ALIASES.get(product)),
        "pname": Value(model, "product"),
        "univ": Value(univ, "phrase", UNIVERSITIES[univ]),
        "rigging": Value("용역 입찰담합", "phrase", "가격 담합"),
        "work": raw(rng.choice(CONTRACT_WORKS)),
        "field": raw(field),
        "target_field": raw(target_field),
        "y": raw(year),
        "q": raw(rng.randint(1, 4)),
        "est": raw(rng.randint(1968, 2012)),
        "goal_y": raw(year + rng.randint(3, 6)),
        "dday": date(f"{rng.randint(1, 28)}일"),
        "md": date(f"{month}월 {rng.randint(1, 28)}일"),
        "launch_md": date(f"{rng.randint(1, 12)}월 {rng.randint(1, 28)}일"),
        "ym": date(f"{year}년 {month}월"),
        "start_ym": date(f"{year - rng.randint(2, 6)}년 {rng.randint(1, 12)}월"),
        "close_ym": date(f"{year + 1}년 {rng.randint(1, 12)}월"),
        "build_ym": date(f"{year}년 {build_month}월"),
        "run_h": date(f"{year + rng.randint(1, 3)}년 {rng.choice(('상반기', '하반기'))}"),
        "join_year": date(f"{rng.randint(1990, 2008)}년"),
        "op": amount(rng, "mid"),
        "rev": amount(rng, "large"),
        "np": amount(rng, "small"),
        "contract": amount(rng, rng.choice(("small", "mid"))),
        "deal": amount(rng, rng.choice(("mid", "large"))),
        "target_rev": amount(rng, "mid"),
        "invest": amount(rng, rng.choice(("mid", "large"))),
        "fine_total": amount(rng, "mid"),
        "fine_co": amount(rng, "small"),
        "goal_rev": amount(rng, "large"),
        "sales_rev": amount(rng, "mid"),
        "growth": percent(rng, 1, 45),
        "ratio": percent(rng, 5, 60),
        "stake": percent(rng, 10, 100),
        "capa": percent(rng, 5, 80),
        "stock_pct": percent(rng, 0.3, 9.9),
        "tp": Value(f"{rng.randrange(24, 700) * 500:,}원", "price"),
        "stock": Value(f"{rng.randrange(1000, 30000) * 10:,}원", "price"),
        "years_n": Value(f"{rng.randint(2, 7)}년", "count"),
        "jobs": Value(f"{rng.randrange(3, 40) * 50:,}명", "count"),
        "k": Value(f"{rng.randint(3, 12)}개", "count"),
    }


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Fact:
    """One article sentence (alternative wordings) and the questions it answers."""

    sentences: tuple[str, ...]
    questions: tuple[tuple[str, str], ...]  # (question template, answer slot)


@dataclass(frozen=True)
class Topic:
    """A news story type: a lead fact always used, then optional detail facts."""

    lead: Fact
    details: tuple[Fact, ...]


ANALYST = Fact(
    ("{firm} {analyst} 연구원은 {co}의 목표주가를 {tp_ro} 상향 조정했다.",),
    (
        ("{firm_i} 제시한 {co}의 목표주가는 얼마인가?", "tp"),
        ("{co}의 목표주가를 올린 {firm} 연구원은 누구인가?", "analyst"),
    ),
)
TOPICS = (
    Topic(  # quarterly earnings
        Fact(
            (
                "{co_eun} {y}년 {q}분기 연결 기준 영업이익이 {op_ro} "
                "잠정 집계됐다고 {dday} 공시했다.",
                "{co}의 {y}년 {q}분기 영업이익은 {op_ro} 시장 전망치를 웃돌았다고 {dday} 밝혔다.",
            ),
            (
                ("{co}의 {y}년 {q}분기 영업이익은 얼마인가?", "op"),
                ("{co_i} {q}분기 실적을 발표한 날은 언제인가?", "dday"),
            ),
        ),
        (
            Fact(
                ("같은 기간 매출액은 {rev_ro} 전년 동기 대비 {growth} 증가했다.",),
                (
                    ("{co}의 {y}년 {q}분기 매출액은 얼마인가?", "rev"),
                    ("{co}의 {q}분기 매출액은 전년 동기 대비 몇 퍼센트 증가했나?", "growth"),
                ),
            ),
            Fact(
                ("당기순이익은 {np_ro} 흑자 전환에 성공했다.",),
                (("{co}의 {q}분기 당기순이익은 얼마인가?", "np"),),
            ),
            Fact(
                (
                    "회사 측은 {product} 판매 호조가 실적 개선을 이끌었다고 설명했다.",
                    "{product} 수요 회복이 실적 개선의 주된 배경으로 꼽힌다.",
                ),
                (("{co}의 실적 개선을 이끈 제품은 무엇인가?", "product"),),
            ),
            ANALYST,
        ),
    ),
    Topic(  # supply contract
        Fact(
            (
                "{co_eun} {ym} {partner_wa} {contract} 규모의 {product} "
                "공급계약을 체결했다고 {dday} 밝혔다.",
                "{co_eun} {ym} {partner}에 {contract} 규모의 {product_eul} "
                "공급하는 계약을 맺었다고 {dday} 공시했다.",
            ),
            (
                ("{co}의 {product} 공급계약 규모는 얼마인가?", "contract"),
                ("{co_wa} {product} 공급계약을 체결한 회사는 어디인가?", "partner"),
                ("{co}의 {product} 공급계약은 언제 체결되었나?", "ym"),
            ),
        ),
        (
            Fact(
                (
                    "계약 기간은 {years_n}이며, 계약 금액은 {co}의 "
                    "지난해 매출액의 {ratio}에 해당한다.",
                ),
                (
                    ("{co}의 이번 공급계약 기간은 얼마인가?", "years_n"),
                    ("공급계약 금액은 {co}의 지난해 매출액의 몇 퍼센트에 해당하나?", "ratio"),
                ),
            ),
            Fact(
                ("공급 제품은 {partner}의 {plant} 공장에 순차적으로 납품될 예정이다.",),
                (("{co}의 제품이 납품될 {partner} 공장은 어디에 있나?", "plant"),),
            ),
            ANALYST,
        ),
    ),
    Topic(  # CEO appointment
        Fact(
            (
                "{co_eun} {md} 임시 이사회를 열고 {person} 부사장을 신임 대표이사로 선임했다.",
                "{co_eun} {md} 이사회에서 {person} 부사장을 새 대표이사로 선임했다고 밝혔다.",
            ),
            (
                ("누가 {co}의 신임 대표로 선임되었나?", "person"),
                ("{co}의 신임 대표를 선임한 이사회는 언제 열렸나?", "md"),
            ),
        ),
        (
            Fact(
                (
                    "{person} 신임 대표는 {univ_eul} 졸업하고 {join_year} {co}에 입사해 "
                    "{field} 사업부장을 지냈다.",
                ),
                (
                    ("{co}의 {person} 신임 대표는 몇 년에 입사했나?", "join_year"),
                    ("{person} 신임 대표가 졸업한 학교와 학과는 어디인가?", "univ"),
                ),
            ),
            Fact(
                ("전임 {ceo} 대표는 임기를 1년 남기고 고문으로 물러난다.",),
                (("{co}의 전임 대표는 누구인가?", "ceo"),),
            ),
            Fact(
                (
                    "{person} 대표는 {goal_y}년까지 매출 {goal_rev_eul} "
                    "달성하겠다는 목표를 제시했다.",
                ),
                (("{person} 신임 대표가 제시한 매출 목표는 얼마인가?", "goal_rev"),),
            ),
        ),
    ),
    Topic(  # acquisition
        Fact(
            ("{co_eun} {target}의 지분 {stake_eul} {deal}에 인수하기로 했다고 {dday} 공시했다.",),
            (
                ("{co_i} 인수하기로 한 회사는 어디인가?", "target"),
                ("{co_i} 인수하는 {target} 지분율은 얼마인가?", "stake"),
                ("{co}의 {target} 지분 인수 금액은 얼마인가?", "deal"),
            ),
        ),
        (
            Fact(
                (
                    "{target_eun} {hq}에 본사를 둔 {target_field} 기업으로, "
                    "지난해 매출 {target_rev_eul} 기록했다.",
                ),
                (
                    ("{target}의 본사는 어디에 있나?", "hq"),
                    ("{target}의 지난해 매출은 얼마인가?", "target_rev"),
                ),
            ),
            Fact(
                ("인수 절차는 {close_ym}까지 마무리될 예정이다.",),
                (("{co}의 {target} 인수 절차는 언제까지 마무리되나?", "close_ym"),),
            ),
            ANALYST,
        ),
    ),
    Topic(  # plant investment
        Fact(
            (
                "{co_eun} {place}에 {invest_eul} 투자해 {product} 생산 공장을 "
                "짓는다고 {dday} 밝혔다.",
                "{co_i} {invest_eul} 들여 {place}에 {product} 공장을 "
                "새로 짓기로 했다고 {dday} 공시했다.",
            ),
            (
                ("{co_i} 새 {product} 공장을 짓는 지역은 어디인가?", "place"),
                ("{co}의 {product} 공장 투자 규모는 얼마인가?", "invest"),
            ),
        ),
        (
            Fact(
                ("공장은 {build_ym} 착공해 {run_h} 가동을 목표로 한다.",),
                (
                    ("{co}의 {place} 공장은 언제 착공하나?", "build_ym"),
                    ("{co}의 {place} 공장 가동 목표 시점은 언제인가?", "run_h"),
                ),
            ),
            Fact(
                ("이번 투자로 약 {jobs}의 신규 일자리가 생길 것으로 예상된다.",),
                (("{co}의 공장 투자로 생길 신규 일자리는 몇 명인가?", "jobs"),),
            ),
            Fact(
                ("{co_eun} 공장이 완공되면 연간 생산능력이 {capa} 늘어날 것으로 내다봤다.",),
                (("공장 완공 후 {co}의 연간 생산능력은 몇 퍼센트 늘어나나?", "capa"),),
            ),
        ),
    ),
    Topic(  # bid-rigging fine
        Fact(
            (
                "공정거래위원회(공정위)는 {org_i} 발주한 {work} {rigging}에 "
                "가담한 {co} 등 {k} 업체에 "
                "과징금 총 {fine_total_eul} 부과한다고 {dday} 밝혔다.",
            ),
            (
                ("공정위가 {work} 담합 업체들에 부과한 과징금 총액은 얼마인가?", "fine_total"),
                ("공정위가 {co} 등에 과징금을 부과한 이유가 된 행위는 무엇인가?", "rigging"),
                ("{org_i} 발주한 {work} 담합에 가담한 업체는 몇 개인가?", "k"),
            ),
        ),
        (
            Fact(
                (
                    "조사 결과 이들 업체는 {start_ym}부터 약 {years_n} 동안 "
                    "낙찰 예정자와 투찰 가격을 "
                    "사전에 합의한 것으로 드러났다.",
                ),
                (("{co} 등이 담합을 시작한 시점은 언제인가?", "start_ym"),),
            ),
            Fact(
                ("업체별로는 {co}에 부과된 과징금이 {fine_co_ro} 가장 많았다.",),
                (("{co}에 부과된 과징금은 얼마인가?", "fine_co"),),
            ),
            Fact(
                (
                    "공정위는 위반 정도가 중대하다고 보고 {co_wa} 임원 {exec_eul} "
                    "검찰에 고발하기로 했다.",
                ),
                (("공정위가 검찰에 고발하기로 한 {co} 임원은 누구인가?", "exec"),),
            ),
        ),
    ),
    Topic(  # product launch
        Fact(
            (
                "{co_eun} {dday} {place}에서 신제품 발표회를 열고 "
                "{product} 신제품 {pname_eul} 공개했다.",
            ),
            (
                ("{co_i} 공개한 {product} 신제품의 이름은 무엇인가?", "pname"),
                ("{co}의 신제품 발표회는 어디에서 열렸나?", "place"),
            ),
        ),
        (
            Fact(
                ("{pname_eun} 기존 제품보다 성능을 {capa} 끌어올린 것이 특징이다.",),
                (("{pname}의 성능은 기존 제품보다 몇 퍼센트 향상되었나?", "capa"),),
            ),
            Fact(
                ("{co_eun} {pname_ro} 연내 {sales_rev}의 매출을 올린다는 목표를 세웠다.",),
                (("{co}의 {pname} 연내 매출 목표는 얼마인가?", "sales_rev"),),
            ),
            Fact(
                ("{pname_eun} {launch_md}부터 국내외 고객사에 공급될 예정이다.",),
                (("{pname_eun} 언제부터 공급되나?", "launch_md"),),
            ),
            Fact(
                ("발표회에는 {ceo} 대표가 직접 참석해 제품을 소개했다.",),
                (("{co}의 신제품 발표회에서 제품을 소개한 대표는 누구인가?", "ceo"),),
            ),
        ),
    ),
)
FILLERS = (
    "업계에서는 이번 결정이 {co}의 중장기 성장에 긍정적인 영향을 줄 것으로 보고 있다.",
    '{co} 관계자는 "시장 상황을 면밀히 살펴 추가 투자도 검토하겠다"고 말했다.',
    "이날 유가증권시장(코스피)에서 {co} 주가는 전 거래일보다 "
    "{stock_pct} 오른 {stock}에 거래를 마쳤다.",
    "{co_eun} {est}년 설립된 {field} 기업으로, 본사는 {co_hq}에 있다.",
    "{co_eun} 지난해에도 {field} 분야에서 사상 최대 실적을 거뒀다.",
    "증권가에서는 하반기 업황 회복 속도가 주가 향방을 가를 것으로 내다봤다.",
    "다만 원·달러 환율 변동성이 커지고 있어 수익성 개선 폭은 제한적일 수 있다는 지적도 나온다.",
    '{ceo} {co} 대표는 "고객과 주주의 신뢰에 보답하겠다"고 밝혔다.',
)

# --------------------------------------------------------------------------- articles


@dataclass
class QA:
    """A question with its gold answer value."""

    question: str
    answer: Value


@dataclass
class Article:
    """A generated article: its sentences, answerable questions and slot values."""

    sentences: list[str]
    qas: list[QA]
    slots: dict[str, Value]


def make_article(rng: random.Random, topic: Topic, company: str, others: list[str]) -> Article:
    """Assemble a 4-7 sentence article within ``CONTEXT_CHARS`` (redrawing until it fits)."""
    while True:
        slots = draw_slots(rng, company, others)
        fields = with_particles(slots)
        n_details = rng.randint(2, len(topic.details))
        n_fillers = rng.randint(max(1, 3 - n_details), min(3, 6 - n_details))
        picked = sorted(rng.sample(range(len(topic.details)), n_details))
        facts = [topic.lead, *(topic.details[i] for i in picked)]
        sentences = [rng.choice(f.sentences).format(**fields) for f in facts]
        for filler in rng.sample(FILLERS, n_fillers):
            sentences.insert(rng.randint(1, len(sentences)), filler.format(**fields))
        if CONTEXT_CHARS[0] <= len(" ".join(sentences)) <= CONTEXT_CHARS[1]:
            qas = [QA(q.format(**fields), slots[slot]) for f in facts for q, slot in f.questions]
            return Article(sentences, qas, slots)


def make_articles(rng: random.Random, companies: list[str], others: list[str]) -> list[Article]:
    """One article per company, topics spread evenly then shuffled."""
    topics = [TOPICS[i % len(TOPICS)] for i in range(len(companies))]
    rng.shuffle(topics)
    return [make_article(rng, t, c, others) for t, c in zip(topics, companies, strict=True)]


# --------------------------------------------------------------------------- context noise


def insert_at_spaces(rng: random.Random, text: str, count: int, make: Callable[[], str]) -> str:
    """Replace ``count`` random single spaces of ``text`` with ``make()``."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    for i in sorted(rng.sample(spaces, count), reverse=True):
        text = text[:i] + make() + text[i + 1 :]
    return text


def render_context(rng: random.Random, article: Article, noise: list[str]) -> str:
    """Join an article's sentences and apply the context noise named in ``noise``."""
    sentences = list(article.sentences)
    if "fw_digits" in noise:
        i = rng.choice([i for i, s in enumerate(sentences) if any(c.isdigit() for c in s)])
        sentences[i] = sentences[i].translate(FULL_WIDTH_DIGITS)
    breaks = {"newline": "\n", "paragraph": "\n\n", "crlf": "\r\n"}
    glue = [" "] * (len(sentences) - 1)
    for kind, brk in breaks.items():
        if kind in noise:
            n_breaks = len(glue) if kind == "crlf" else rng.randint(1, 2)
            for i in rng.sample(range(len(glue)), n_breaks):
                glue[i] = brk
    text = sentences[0] + "".join(g + s for g, s in zip(glue, sentences[1:], strict=True))
    if "fw_corp" in noise:
        company = article.slots["co"].text
        text = text.replace(company, rng.choice(("（주）", "㈜")) + company, 1)
    if "fw_percent" in noise:
        text = text.replace("%", "％")
    if "fw_parens" in noise:
        text = text.replace("(", "（").replace(")", "）")
    if "multi_space" in noise:
        text = insert_at_spaces(rng, text, rng.randint(1, 3), lambda: rng.choice(("  ", "   ")))
    if "zwsp" in noise:
        text = insert_at_spaces(rng, text, rng.randint(1, 2), lambda: " " + ZWSP)
    if "bom" in noise:
        text = insert_at_spaces(rng, text, 1, lambda: " " + BOM)
    return text


def assign_context_noise(
    rng: random.Random, articles: list[Article], counts: dict[str, int]
) -> list[list[str]]:
    """Pick which articles get which context noise (line-break styles are exclusive)."""
    noise: list[list[str]] = [[] for _ in articles]
    eligible = {
        "fw_percent": lambda a: "%" in "".join(a.sentences),
        "fw_parens": lambda a: "(" in "".join(a.sentences),
    }
    free = list(range(len(articles)))
    for kind, count in counts.items():
        if kind in ("newline", "paragraph", "crlf"):
            chosen = rng.sample(free, count)
            free = [i for i in free if i not in chosen]
        else:
            ok = eligible.get(kind, lambda a: True)
            chosen = rng.sample([i for i, a in enumerate(articles) if ok(a)], count)
        for i in chosen:
            noise[i].append(kind)
    return noise


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One QA row plus the metadata needed to inject row noise."""

    context: str
    question: str
    answer: str
    value: Value
    alternatives: list[str]  # wrong answers for a conflicting row (see CONFLICT_KINDS)


def make_rows(
    rng: random.Random, articles: list[Article], contexts: list[str], n_questions: list[int]
) -> list[Row]:
    """Pick ``n_questions[i]`` questions of article ``i`` and turn them into rows."""
    rows = []
    for article, context, k in zip(articles, contexts, n_questions, strict=True):
        for qa in rng.sample(article.qas, k):
            alternatives = [
                v.text
                for v in article.slots.values()
                if qa.answer.kind in CONFLICT_KINDS
                and v.kind == qa.answer.kind
                and v.text != qa.answer.text
                and v.text in context
            ]
            rows.append(Row(context, qa.question, qa.answer.text, qa.answer, alternatives))
    return rows


def compact(text: str) -> str:
    """``text`` without spaces and thousands separators (``3,500억 원`` -> ``3500억원``)."""
    return text.replace(" ", "").replace(",", "")


def has_format_variant(value: Value) -> bool:
    """Whether the answer can be rewritten with a different spacing / number format."""
    return value.kind == "percent" or (
        value.kind in ("amount", "price", "count", "date", "phrase")
        and compact(value.text) != value.text
    )


def format_variant(rng: random.Random, value: Value) -> str:
    """The answer with different spacing / number format (see ``has_format_variant``)."""
    if value.kind == "percent":
        return value.text.replace("%", rng.choice((" %", "퍼센트", "％")))
    return compact(value.text)


def add_row_noise(rng: random.Random, rows: list[Row]) -> list[Row]:
    """Apply ``ROW_NOISE`` to training rows; returns them with the extra rows inserted."""
    untouched = list(range(len(rows)))

    def take(count: int, ok: Callable[[Row], bool] = lambda r: True) -> list[int]:
        """Sample ``count`` rows not yet given answer noise that satisfy ``ok``."""
        nonlocal untouched
        chosen = rng.sample([i for i in untouched if ok(rows[i])], count)
        untouched = [i for i in untouched if i not in chosen]
        return chosen

    for i in take(ROW_NOISE["answer_format"], lambda r: has_format_variant(r.value)):
        rows[i].answer = format_variant(rng, rows[i].value)
    for i in take(
        ROW_NOISE["answer_not_in_context"],
        lambda r: r.value.paraphrase is not None and r.value.paraphrase not in r.context,
    ):
        rows[i].answer = str(rows[i].value.paraphrase)
    for i in take(ROW_NOISE["answer_empty"]):
        rows[i].answer = ""
    for i in take(ROW_NOISE["answer_space"]):
        rows[i].answer = rng.choice((" {}", "{} ", " {} ")).format(rows[i].answer)
    for n, i in enumerate(take(ROW_NOISE["answer_zero_width"])):
        answer = rows[i].answer
        rows[i].answer = BOM + answer if n == 0 else answer[:1] + ZWSP + answer[1:]
    for i in rng.sample(range(len(rows)), ROW_NOISE["question_space"]):
        rows[i].question = rng.choice(("{} ", " {}", "{}  ")).format(rows[i].question)

    extras = [(i, replace(rows[i])) for i in take(ROW_NOISE["duplicate"])]
    for i in take(ROW_NOISE["conflict"], lambda r: bool(r.alternatives)):
        extras.append((i, replace(rows[i], answer=rng.choice(rows[i].alternatives))))
    # each extra lands somewhere after its source row
    placed = sorted(
        ((rng.randint(i + 1, len(rows)), n) for n, (i, _) in enumerate(extras)), reverse=True
    )
    result = list(rows)
    for position, n in placed:
        result.insert(position, extras[n][1])
    return result


# --------------------------------------------------------------------------- output


def write_csv(path: Path, header: list[str], records: list[list[str]]) -> None:
    """UTF-8 CSV, minimal quoting, ``\\n`` line endings."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(records)


def build(rng: random.Random) -> tuple[list[Row], list[Row], dict[str, int]]:
    """Generate train and test rows and a summary of their sizes."""
    plans = {
        split: [k for k, n in plan.items() for _ in range(n)]
        for split, plan in QUESTION_PLAN.items()
    }
    names = [p + s for p in COMPANY_PREFIXES for s in SECTORS]
    companies = rng.sample(names, sum(len(plan) for plan in plans.values()))
    others = [n for n in names if n not in companies]

    splits = {}
    for split, plan in plans.items():
        chosen, companies = companies[: len(plan)], companies[len(plan) :]
        articles = make_articles(rng, chosen, others)
        noise = assign_context_noise(rng, articles, CONTEXT_NOISE[split])
        contexts = [render_context(rng, a, n) for a, n in zip(articles, noise, strict=True)]
        rng.shuffle(plan)
        splits[split] = make_rows(rng, articles, contexts, plan)
    train = add_row_noise(rng, splits["train"])
    test = splits["test"]
    sizes = {
        "train_rows": len(train),
        "train_contexts": len({r.context for r in train}),
        "train_answer_in_context": sum(r.answer in r.context for r in train if r.answer),
        "test_rows": len(test),
        "test_contexts": len({r.context for r in test}),
    }
    return train, test, sizes


def main() -> None:
    """Write the sample files and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    train, test, sizes = build(random.Random(SEED))
    train_records = [
        {"id": f"TRAIN_{i:05d}", "context": r.context, "question": r.question, "answer": r.answer}
        for i, r in enumerate(train)
    ]
    test_ids = [f"TEST_{i:04d}" for i in range(len(test))]

    write_csv(
        out / "train.csv",
        ["id", "context", "question", "answer"],
        [list(r.values()) for r in train_records],
    )
    write_csv(
        out / "test.csv",
        ["id", "context", "question"],
        [[i, r.context, r.question] for i, r in zip(test_ids, test, strict=True)],
    )
    write_csv(
        out / "sample_submission.csv",
        ["id", "answer"],
        [[i, SUBMISSION_PLACEHOLDER] for i in test_ids],
    )
    (out / "train.json").write_text(
        json.dumps(train_records, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
        newline="\n",
    )

    noise = {f"train_{k}": v for k, v in TRAIN_CONTEXT_NOISE.items()} | ROW_NOISE
    noise |= {f"test_{k}": v for k, v in TEST_CONTEXT_NOISE.items()}
    print(" ".join(f"{k}={v}" for k, v in (sizes | noise).items()))


if __name__ == "__main__":
    main()
