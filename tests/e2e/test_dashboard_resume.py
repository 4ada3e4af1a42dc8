"""The dashboard on a real terminal (a pty): suspend/resume works, and a hang-up never freezes it.

A hang-up brings SIGCONT along with SIGHUP; the dashboard lets Textual's driver re-enter application
mode on SIGCONT only while the terminal is alive (app/tui.py ``_guard_resume``). Run on the
scripted test runtime (``python -m tests.tui.scripted``) so nothing but the dashboard is involved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import psutil
import pytest

from tests.e2e.pty_helpers import PtySession

pytestmark = pytest.mark.timeout(60)

ENTER_ALT_SCREEN = "\x1b[?1049h"


async def _until(predicate, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


def _status(session: PtySession) -> str:
    try:
        return psutil.Process(session.proc.pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def _dashboard(scenario: str = "idle") -> PtySession:
    env = {**os.environ, "TERM": "xterm-256color"}
    return PtySession([sys.executable, "-m", "tests.tui.scripted", scenario], env)


async def test_stop_and_continue_on_a_live_terminal_brings_the_dashboard_back() -> None:
    session = _dashboard()
    try:
        await _until(lambda: "qaworker" in session.text() and "Slot" in session.text(), "the dashboard drawn")
        entered = session.text().count(ENTER_ALT_SCREEN)
        os.kill(session.proc.pid, signal.SIGTSTP)  # what Ctrl+Z sends
        await _until(lambda: _status(session) == psutil.STATUS_STOPPED, "the process stopped")
        os.kill(session.proc.pid, signal.SIGCONT)  # what `fg` sends
        await _until(lambda: session.text().count(ENTER_ALT_SCREEN) > entered, "the dashboard back on screen")
        assert _status(session) != psutil.STATUS_STOPPED
        session.write("q")  # nothing runs: quits at once
        await asyncio.wait_for(asyncio.to_thread(session.proc.wait), 15)
        assert session.proc.returncode == 0
    finally:
        if session.proc.poll() is None:
            psutil.Process(session.proc.pid).kill()
        session.close()


async def test_a_hang_up_ends_the_dashboard_instead_of_freezing_it() -> None:
    session = _dashboard("three_running")
    try:
        await _until(lambda: "qaworker" in session.text() and "Slot" in session.text(), "the dashboard drawn")
        session.hang_up()  # the terminal window closes: SIGHUP and SIGCONT on a dead terminal
        await asyncio.wait_for(asyncio.to_thread(session.proc.wait), 20)
        assert session.proc.returncode == 75  # RC_TERMINAL_LOST: the caller (app/run.py) goes on headless
    finally:
        if session.proc.poll() is None:
            psutil.Process(session.proc.pid).kill()
        session.close()
