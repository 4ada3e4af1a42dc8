import asyncio
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never pick up the machine's real openQA configuration.
os.environ.setdefault("OPENQA_CONFIG", str(ROOT / "tests" / "data" / "empty-config"))
# Nor /etc/openqa or /usr/etc/openqa (the realstack writes real credentials there).
os.environ.setdefault("QAWORKER_SYSTEM_CONFIG_DIRS", str(ROOT / "tests" / "data" / "empty-config"))

from tests import loopguard  # noqa: E402 - needs ROOT on sys.path
from tests.cgroup_support import make_test_root, remove_test_root  # noqa: E402
from tests.clock import VirtualClockLoop  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    loopguard.install()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item):
    """Which event loop a test runs in: a virtual clock on request, the slow-callback guard's debug loop
    for integration/e2e/fault tests, else asyncio's default."""
    guarded = loopguard.guarded(Path(str(item.path)))
    if item.get_closest_marker("virtual_clock"):
        return {"virtual-clock": loopguard.GuardedVirtualClockLoop if guarded else VirtualClockLoop}
    if guarded:
        return {"loop-guard": loopguard.GuardedLoop}
    return {"default": asyncio.new_event_loop}


def _fail_on_slow_callbacks(when: str) -> None:
    found = loopguard.unknown(loopguard.findings.take())
    if found:
        pytest.fail(f"{loopguard.failure_message(found)}\n(seen during {when})", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield  # a test that failed already keeps its own failure; findings go to teardown
    _fail_on_slow_callbacks("setup or the test")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    _fail_on_slow_callbacks("teardown")
    return result


@pytest.fixture
def cgroup_root():
    """A real, writable cgroup v2 test root (tests/cgroup_support.py), or None where this machine has none."""
    root = make_test_root()
    yield root
    if root is not None:
        remove_test_root(root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    loopguard.findings.take()  # what an earlier test left behind was reported there


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = loopguard.summary_lines()
    if lines:
        terminalreporter.section("known slow callbacks (tests/loopguard.py KNOWN: owners still to fix)")
        for line in lines:
            terminalreporter.line(line)
