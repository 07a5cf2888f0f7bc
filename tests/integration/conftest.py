from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from runtime_helpers import Bundle, Runtime, make_bundle  # noqa: E402


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    rt = Runtime(str(tmp_path / "state"))
    yield rt
    rt.cleanup()


@pytest.fixture
def bundle(tmp_path) -> Bundle:
    return make_bundle(str(tmp_path / "bundle"), ["true"])
