"""Shared fixtures: a small tokenizer trained on Korean text, saved as a model directory would be."""

from pathlib import Path

import pytest

KOREAN_TEXT = [
    "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고 밝혔다.",
    "세종바이오의 신임 대표로 김민수 대표가 선임되었다.",
    "미래금융은 2024년 3월 부산에서 공급계약을 체결했다.",
    "맥락: 질문: 답변: 얼마인가? 누가 언제 어디서",
] * 20


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from koqa.basemodel import train_bpe_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    train_bpe_tokenizer(KOREAN_TEXT, vocab_size=400).save_pretrained(path)
    return path
