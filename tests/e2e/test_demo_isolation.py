"""`qaworker demo` as a user runs it in a terminal: it belongs to that terminal and to nothing else.

* Its terminal goes away (a closed window, `tmux kill-session`: the pty master is closed) → the demo
  ends, with every process it started (checked with psutil, by an environment tag every descendant
  inherits). Both faces: the headless demo as the terminal's session leader, and the dashboard
  demo started from an interactive shell, as in tmux.
* Two demos at the same time get different slot numbers and both run their jobs; neither uses the
  numbers a real worker on the host has (1, 2, …).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from app.demo_env import DEMO_LOW
from tests.e2e.pty_helpers import PtySession

pytestmark = pytest.mark.timeout(150)

ROOT = Path(__file__).resolve().parents[2]
TAG = "QAWORKER_TEST_DEMO_TAG"
DEMO = [sys.executable, "-m", "app.cli", "demo"]


def tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TAG) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(predicate, timeout: float, what: str, session: PtySession | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = session.text()[-3000:] if session else ""
            raise AssertionError(f"not within {timeout} s: {what}\n{tail}")
        time.sleep(0.2)


def simulator_running(tag: str) -> bool:
    def cmd(p: psutil.Process) -> str:
        try:
            return " ".join(p.cmdline())
        except psutil.Error:
            return ""
    return any("simulator" in cmd(p) for p in tagged(tag))


def assert_all_gone(tag: str, before: list[psutil.Process], timeout: float) -> None:
    assert before, "the test saw no process of the demo at all"
    try:
        wait_for(lambda: not tagged(tag), timeout, "every process of the demo ended")
    except AssertionError:
        left = []
        for p in tagged(tag):  # clean up after a failure, by PID
            try:
                left.append((p.pid, " ".join(p.cmdline())[:120]))
                p.kill()
            except psutil.Error:
                pass
        raise AssertionError(f"left behind after the terminal went away: {left}") from None


def demo_env(tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "QAWORKER_CONTROL_SOCKET")}
    return {**env, TAG: tag, "PYTHONUNBUFFERED": "1", "TERM": "xterm-256color"}


def test_the_headless_demo_ends_with_its_terminal() -> None:
    tag = uuid.uuid4().hex
    session = PtySession([*DEMO, "--no-ui"], demo_env(tag))
    try:
        wait_for(lambda: simulator_running(tag), 60, "a job running in the demo", session)
        before = tagged(tag)
        session.hang_up()
        assert_all_gone(tag, before, 30)
    finally:
        session.close()


def test_the_dashboard_demo_started_from_a_shell_ends_when_the_window_closes(tmp_path) -> None:
    tag = uuid.uuid4().hex
    env = {**demo_env(tag), "PS1": "$ ", "HOME": str(tmp_path)}
    session = PtySession(["bash", "--norc", "--noprofile", "-i"], env)
    try:
        time.sleep(0.5)
        session.write(" ".join(DEMO) + "\n")
        wait_for(lambda: simulator_running(tag), 60, "a job running in the dashboard demo", session)
        before = tagged(tag)
        assert any("demo" in " ".join(p.cmdline()) for p in before)
        session.hang_up()  # tmux kill-session: the shell gets SIGHUP and passes it to its job
        assert_all_gone(tag, before, 30)
    finally:
        session.close()


SLOTS = re.compile(r"qaworker demo: mock web UI at \S+ \(key \w+\), slots (\d+)-(\d+), data in (\S+)")


def test_two_demos_at_once_use_their_own_slots_ports_and_directories(tmp_path) -> None:
    tags = [uuid.uuid4().hex, uuid.uuid4().hex]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = []
    for tag, log in zip(tags, logs, strict=True):
        with log.open("wb") as out:
            procs.append(subprocess.Popen([*DEMO, "--no-ui", "--duration", "22"], cwd=ROOT, env=demo_env(tag),
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(100) for p in procs]  # generous: the machine may be busy with other suites
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    blocks = []
    for text in texts:
        m = SLOTS.search(text)
        assert m, text[:2000]
        first, last, workdir = int(m.group(1)), int(m.group(2)), m.group(3)
        assert first >= DEMO_LOW, "a demo took slot numbers a real worker may use"
        blocks.append((set(range(first, last + 1)), workdir))
        assert re.search(r"job \d+ finished: passed", text), text[-3000:]
        for bad in ("Address already in use", "cannot listen", "Traceback"):
            assert bad not in text, text[text.index(bad) - 1500:][:3000]
    (slots_a, dir_a), (slots_b, dir_b) = blocks
    assert not slots_a & slots_b
    assert dir_a != dir_b
    for tag in tags:
        assert not tagged(tag)
