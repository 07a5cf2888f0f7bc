"""Suite-wide fixtures: the leak check around every test and the session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from leaks import Snapshot, become_subreaper, clean_up, compare, start_container_reaper  # noqa: E402

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)


@pytest.fixture(scope="session", autouse=True)
def _session_leak_check() -> object:
    become_subreaper()
    start_container_reaper()
    before = Snapshot()
    yield
    problems = compare(before)
    if problems:
        clean_up(before)
        pytest.fail("the test session left things behind:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> object:
    if "unit" in str(request.node.path):
        yield
        return
    before = Snapshot()
    yield
    problems = compare(before)
    if problems:
        clean_up(before)
        pytest.fail(f"{request.node.nodeid} left things behind:\n" + "\n".join(problems), pytrace=False)
