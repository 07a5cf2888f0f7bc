"""A per-test timeout for the docker-py run (pytest-timeout is not a dependency).

Loaded with `-p dockerpy_timeout`; DOCKERPY_TEST_TIMEOUT seconds per phase (setup, call,
teardown), or the test's own `@pytest.mark.timeout(N)` (docker-py's CI uses pytest-timeout). On expiry SIGALRM raises in the main thread, which interrupts blocking socket
reads, so a request the daemon never answers fails that test instead of hanging the run.
"""

from __future__ import annotations

import os
import signal

import pytest

LIMIT = float(os.environ.get("DOCKERPY_TEST_TIMEOUT", "90"))


class PhaseTimeout(Exception):
    pass


def _limit(item: pytest.Item) -> float:
    """docker-py's own @pytest.mark.timeout(N) (meant for pytest-timeout) when the test has one."""
    mark = item.get_closest_marker("timeout")
    if mark is not None and mark.args:
        return float(mark.args[0])
    return LIMIT


def _arm(phase: str, item: pytest.Item) -> None:
    limit = _limit(item)

    def expired(signum, frame):  # noqa: ARG001
        raise PhaseTimeout(f"{item.nodeid}: {phase} took more than {limit:g}s (dockerpy_suite timeout)")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _arm("setup", item)
    try:
        yield
    finally:
        _disarm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _arm("call", item)
    try:
        yield
    finally:
        _disarm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    _arm("teardown", item)
    try:
        yield
    finally:
        _disarm()


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (honoured by dockerpy_timeout)")
