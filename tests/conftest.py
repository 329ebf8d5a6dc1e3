"""Shared fixtures: a small tokenizer trained on Korean text, saved as a model directory would be;
one local run of the whole workflow on the test config, shared by the end-to-end tests."""

from pathlib import Path

import pytest
from workflow_util import copy_repo, snakemake_ok

KOREAN_TEXT = [
    "한빛전자는 올해 1분기 영업이익이 3,500억 원으로 집계됐다고 밝혔다.",
    "세종바이오의 신임 대표로 김민수 대표가 선임되었다.",
    "미래금융은 2024년 3월 부산에서 공급계약을 체결했다.",
    "맥락: 질문: 답변: 얼마인가? 누가 언제 어디서",
] * 20


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from koqa.model.basemodel import train_bpe_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    train_bpe_tokenizer(KOREAN_TEXT, vocab_size=400).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of the repository in which the whole DAG ran once on tests/config/test.yaml
    with local jobs. Tests may dry-run it and edit its config, but must not rerun its jobs:
    tests/test_slurm.py compares its outputs with a run on SLURM."""
    root = copy_repo(tmp_path_factory.mktemp("koqa"))
    snakemake_ok(root, "--cores", "2")
    return root


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory):
    """A small learnable QA task with a tiny pretrained Llama (see tests/tiny_task.py)."""
    from tiny_task import build_task

    return build_task(tmp_path_factory.mktemp("tiny_task"))
