"""The same jobs on the Perl worker and on qaworker give the same outcome in the real web UI (issue 7 §1)."""

from __future__ import annotations

import pytest

from tests.helpers import free_instance
from tests.interop.conftest import PERL_CLASS, record_comparison
from tests.interop.pairs import compare, finish_pair, own_class, schedule_pair

pytestmark = pytest.mark.interop


@pytest.fixture
def ours(webui, qaworker, perl_worker):
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance))
    webui.wait_idle(worker.host, worker.instance)
    return worker


def test_pass_same_as_perl(webui, ours):
    perl, mine = finish_pair(webui, *schedule_pair(webui, ours))
    compare("pass", perl, mine)
    assert mine.result == "passed"


# Debian's os-autoinst (null backend) sometimes dies on a failing module before writing any result
# ("myjsonrpc: remote end terminated connection" -> incomplete, no modules), whichever worker runs it.
ISOTOVIDEO_RACE = "myjsonrpc: remote end terminated"


def test_fail_same_as_perl(webui, ours):
    for attempt in range(3):
        perl, mine = finish_pair(webui, *schedule_pair(webui, ours, REALSTACK_FAIL="1"))
        if not any(ISOTOVIDEO_RACE in (s.reason or "") for s in (perl, mine)):
            break
        record_comparison(f"fail (try {attempt + 1}: os-autoinst race)", perl.short(), mine.short(), "retried")
    compare("fail", perl, mine)
    assert mine.result == "failed"


def test_cancel_mid_run_same_as_perl(webui, ours):
    perl_id, our_id = schedule_pair(webui, ours, REALSTACK_SLEEP="60")
    for job_id in (our_id, perl_id):
        webui.wait_state(job_id, "running", timeout=90)
    for job_id in (our_id, perl_id):
        webui.api("POST", f"/api/v1/jobs/{job_id}/cancel").raise_for_status()
    perl, mine = finish_pair(webui, perl_id, our_id, timeout=60)
    # Whether the module list / logs of a cancelled job show up depends on timing in the 2023 web UI
    # (both workers were seen with and without them), so only the outcome is compared. So does the
    # state: the web UI sets `cancelled`, and the worker's set_done?result=user_cancelled turns it into
    # `done` unless the web UI has let go of the job by then. The Perl worker was seen ending both ways
    # (cancelled in an interop run on 2026-12-03, done in a lone run of its job 184 the same day).
    compare("cancel mid-run", perl, mine, files=False, modules=False, state=False)
    assert mine.result == "user_cancelled"
    assert mine.state in ("cancelled", "done"), mine
    webui.wait_idle(ours.host, ours.instance)


def _chain(webui, worker_class: str) -> tuple[int, int]:
    parent = webui.schedule(WORKER_CLASS=worker_class, TEST="realstack-chain-parent", REALSTACK_FAIL="1")
    child = webui.schedule(WORKER_CLASS=worker_class, TEST="realstack-chain-child",
                           _START_DIRECTLY_AFTER_JOBS=str(parent))
    return parent, child


def test_directly_chained_child_of_failed_parent_same_as_perl(webui, ours):
    """POST jobs with _START_DIRECTLY_AFTER_JOBS=<parent id> makes a directly chained pair on this openQA
    (the scheduler sends it as one grab_jobs); the parent fails, so the child must not run."""
    perl_parent, perl_child = _chain(webui, PERL_CLASS)
    our_parent, our_child = _chain(webui, ours.worker_class)
    assert webui.details(our_child)["parents"]["Directly chained"] == [our_parent]
    parents = finish_pair(webui, perl_parent, our_parent)
    children = finish_pair(webui, perl_child, our_child, timeout=60)
    compare("chain: failing parent", *parents)
    # The web UI cancels the child itself when the parent fails (state cancelled, result skipped); the
    # worker's own set_done?result=skipped may then turn it into done — racy for both workers.
    compare("chain: its child", *children, state=False)
    assert parents[1].result == "failed"
    assert children[1].result in ("skipped", "parallel_failed"), children[1]


def test_quit_mid_run_perl_row(webui):
    """The Perl worker can't be sent SIGTERM here without restarting the shared stack's worker daemon, so
    quit mid-run is only checked for qaworker (test_jobs.py); this records that in the table."""
    record_comparison("quit mid-run", "not run (shared Perl daemon)", "see test_jobs quit test", "n/a")
