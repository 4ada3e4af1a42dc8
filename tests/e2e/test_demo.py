"""`qaworker demo --no-ui --duration 45` as a user runs it: every kind of job the feeder schedules shows up
in the headless log with the result it was scheduled for, and the demo exits 0 leaving nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.demo import FIRST_INSTANCE_ENV
from tests import loopguard
from tests.helpers import free_instance
from tests.integration.harness import assert_no_leftovers

pytestmark = pytest.mark.timeout(80)  # the first test also waits for the 45 s demo run

ROOT = Path(__file__).resolve().parents[2]
DURATION = 45
ACCEPTED = re.compile(r"\[slot (\d+)\] job (\d+) \(demo-1-sim-x86_64-42-([\w-]+?)-\d+\) accepted")
FINISHED = re.compile(r"\[slot \d+\] job (\d+) finished: (\w+)")


@dataclass
class DemoRun:
    code: int
    log: str
    pid: int


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    """One demo run (45 s) shared by the tests below; each checks one thing a user would look for."""
    out = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", FIRST_INSTANCE_ENV: str(free_instance(100, 3900)),
           **loopguard.subprocess_env()}
    loopguard.watch_log(out)
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--no-ui", "--duration", str(DURATION)],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(DURATION + 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    return DemoRun(code, out.read_text(), proc.pid)


def results_by_kind(log: str) -> dict[str, list[str]]:
    """Test name without the round suffix (textmode, kde, …) -> results of its finished jobs."""
    kind_of = {job_id: kind for _slot, job_id, kind in ACCEPTED.findall(log)}
    results: dict[str, list[str]] = {}
    for job_id, result in FINISHED.findall(log):
        if job_id in kind_of:
            results.setdefault(kind_of[job_id], []).append(result)
    return results


async def test_demo_exits_zero_and_leaves_nothing_behind(demo: DemoRun) -> None:
    assert demo.code == 0, demo.log[-3000:]
    assert "stopped (exit code 0)" in demo.log
    assert re.search(r"qaworker demo: jobs .*passed \d+.*; event loop lag max \d+ ms", demo.log), "no summary line"
    workdir = Path(re.search(r"data in (\S+)", demo.log).group(1))
    assert not workdir.exists(), "the demo's temporary directory was left behind"  # noqa: ASYNC240
    await assert_no_leftovers(demo.pid)


def test_every_kind_of_job_ends_as_scheduled(demo: DemoRun) -> None:
    results = results_by_kind(demo.log)
    expected = {"textmode": "passed", "kde": "failed", "gnome": "softfailed", "upgrade": "passed",
                "create_hdd": "passed", "extra_tests": "passed", "yast": "passed", "long": "user_cancelled"}
    wrong = {kind: results.get(kind) for kind, result in expected.items() if results.get(kind, [None])[0] != result}
    assert not wrong, f"first results differ from {expected}: {wrong}"
    assert re.search(r"\[cache\] \S+/demo-disk.qcow2 ready", demo.log), "the asset was not downloaded via the cache"


def test_live_viewer_and_developer_session_reach_their_jobs(demo: DemoRun) -> None:
    assert re.search(r"job \d+ live viewers: 1", demo.log), "the live-log viewer never reached the job"
    assert re.search(r"job \d+ developer session started", demo.log)
    # scheduled last, so on a loaded machine they may still run when the demo ends: then the quit ends them
    results = results_by_kind(demo.log)
    for kind in ("livelog", "devmode"):
        assert results.get(kind, ["passed"])[0] in ("passed", "incomplete"), f"{kind}: {results.get(kind)}"


def test_the_load_spell_breaks_a_slot_which_recovers_by_itself(demo: DemoRun) -> None:
    spell = re.search(r"\[slot (\d+)\] broken: The average load \(95\.00", demo.log)
    assert spell, "no slot reported the high load"
    after = demo.log[demo.log.index("demo: the system load is back to normal"):]
    assert re.search(rf"\[slot {spell.group(1)}\] (idle, waiting for jobs|job \d+ \(.*\) accepted)", after), \
        "the broken slot did not recover"


def test_no_tracebacks(demo: DemoRun) -> None:
    assert "Traceback" not in demo.log, demo.log[demo.log.index("Traceback") - 500:][:3000]
