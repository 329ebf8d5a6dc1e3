"""Headless Chromium for the report tests: its path, or a skip outside CI (CI must install it)."""

import os

import pytest

from koqa.report.check import find_chromium


def require_chromium() -> str:
    """The Chromium executable; without one the test fails under CI and is skipped elsewhere."""
    browser = find_chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must provide Chromium for this test (.ci/run: apt-get install chromium)"
            )
        pytest.skip("no Chromium on PATH (apt-get install chromium); CI runs this")
    return browser
