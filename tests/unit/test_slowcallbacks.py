"""The slow-callback reports (app/slowcallbacks.py) the test-suite guard relies on: which callback, how long,
whose code — with real event loops in debug mode and code that really blocks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import slowcallbacks
from app.slowcallbacks import MACHINERY, NOT_OURS, OURS, TEST_CODE, Blame, Frame, SlowCallback

ROOT = Path(__file__).resolve().parents[2]


def blocking_function(filename: Path, name: str = "blocking", seconds: float = 0.06) -> Callable[[], None]:
    """A function whose code object says it lives in ``filename`` (ours, a test's, a library's)."""
    namespace: dict = {}
    source = f"import time\ndef {name}():\n    time.sleep({seconds})\n"
    exec(compile(source, str(filename), "exec"), namespace)
    return namespace[name]


@pytest.fixture
def reports() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # the reports that do not count are logged at debug level
    logger.addHandler(handler)
    slowcallbacks.install_filter()
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def run_guarded(coro_fn: Callable[[], object], threshold: float = 0.02) -> None:
    loop = asyncio.new_event_loop()
    try:
        slowcallbacks.enable(loop, threshold)
        loop.run_until_complete(coro_fn())
    finally:
        slowcallbacks.disable(loop)
        loop.close()


def slow_reports(records: list[logging.LogRecord]) -> list[SlowCallback]:
    return [r._slow_callback for r in records if hasattr(r, "_slow_callback")]


def test_a_blocking_call_in_our_code_is_reported_with_where_and_how_long(reports) -> None:
    blocking = blocking_function(ROOT / "backend" / "fake_module.py")

    async def job_step() -> None:  # "in backend/": a coroutine of ours calling blocking code
        blocking()
        await asyncio.sleep(0)

    job_step.__code__ = job_step.__code__.replace(co_filename=str(ROOT / "backend" / "slot_like.py"))

    async def main() -> None:
        await asyncio.create_task(job_step(), name="slot-7")

    run_guarded(main)
    [report] = [r for r in slow_reports(reports) if "slot-7" in r.callback]
    assert report.kind == OURS and report.ours and report.counts and report.sampled
    assert report.callback == "task 'slot-7' (test_a_blocking_call_in_our_code_is_reported_with_where_and_how_long" \
                              ".<locals>.job_step)"
    assert 0.05 <= report.blocked <= report.wall
    text = report.describe()
    assert text.startswith(f"{OURS}: ") and "backend/fake_module.py:3 in blocking" in text
    [record] = [r for r in reports if getattr(r, "_slow_callback", None) is report]
    assert record.levelno == logging.WARNING and record.getMessage() == text


def test_test_code_blocking_its_own_loop_is_not_ours(reports) -> None:
    ours = blocking_function(ROOT / "backend" / "procs_like.py", "find_processes")

    async def test_body() -> None:  # a test coroutine calling a blocking helper of ours directly
        ours()
        await asyncio.sleep(0)

    test_body.__code__ = test_body.__code__.replace(co_filename=str(ROOT / "tests" / "integration" / "test_x.py"))

    async def main() -> None:
        await asyncio.create_task(test_body())

    run_guarded(main)
    kinds = {r.kind for r in slow_reports(reports) if "test_body" in r.callback}
    assert kinds == {TEST_CODE}


def test_a_library_blocking_on_its_own_is_not_ours(reports) -> None:
    library = blocking_function(Path("/usr/lib/python3/dist-packages/somelib/core.py"))

    def callback() -> None:
        library()

    callback.__code__ = callback.__code__.replace(co_filename="/usr/lib/python3/dist-packages/somelib/loop.py")

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0.1)

    run_guarded(main)
    [report] = [r for r in slow_reports(reports) if "callback" in r.callback]
    assert report.kind == NOT_OURS and not report.ours
    assert "somelib/core.py:3 in blocking" in report.describe()


def test_a_fast_loop_reports_nothing(reports) -> None:
    async def main() -> None:
        for _ in range(20):
            await asyncio.sleep(0.001)

    run_guarded(main)
    assert slow_reports(reports) == []


def test_waiting_for_a_cpu_does_not_count() -> None:
    report = SlowCallback("task 't' (f)", wall=0.05, threshold=0.02, cpu_wait=0.04,
                          blames=(Blame((Frame(str(ROOT / "backend" / "x.py"), 3, "f", True),), OURS),), sampled=True)
    assert report.held == pytest.approx(0.01) and not report.counts and not report.ours
    assert report.describe().startswith(slowcallbacks.LOAD)
    gc = SlowCallback("task 't' (f)", wall=0.05, threshold=0.02, gc_pause=0.035)
    assert not gc.counts and "35 ms garbage collection" in gc.describe()


def test_time_in_asyncio_machinery_is_taken_out_by_its_share_of_the_samples() -> None:
    ours = Blame((Frame(str(ROOT / "backend" / "x.py"), 3, "f", True),), OURS)
    debug = Blame((Frame(str(ROOT / "backend" / "x.py"), 3, "f", True),
                   Frame(slowcallbacks._stdlib("linecache.py"), 72, "checkcache")), MACHINERY)
    mostly_machinery = SlowCallback("t", wall=0.06, threshold=0.02, blames=(ours, debug, debug, debug), sampled=True)
    assert mostly_machinery.blocked == pytest.approx(0.015) and mostly_machinery.kind == MACHINERY
    mostly_ours = SlowCallback("t", wall=0.06, threshold=0.02, blames=(ours, ours, debug), sampled=True)
    assert mostly_ours.blocked == pytest.approx(0.04) and mostly_ours.kind == OURS
    assert Blame.of(debug.frames, sampled=True).kind == MACHINERY


def test_an_import_on_the_loop_names_the_importing_frame() -> None:
    frames = (Frame(str(ROOT / "app" / "run.py"), 87, "main_async", True),
              Frame("<frozen importlib._bootstrap>", 1178, "_find_and_load"),
              Frame(str(ROOT / "backend" / "metrics.py"), 20, "<module>"),
              Frame("<frozen importlib._bootstrap_external>", 147, "_path_stat"))
    blame = Blame.of(frames, sampled=True)
    assert blame.kind == OURS
    assert blame.where() == "app/run.py:87 in main_async imports backend/metrics.py (an import on the loop)"


def test_without_a_sample_the_suspended_chain_decides() -> None:
    chain = (Frame(str(ROOT / "backend" / "slot.py"), 400, "Slot.run", True),
             Frame("/usr/lib/python3.11/asyncio/locks.py", 213, "Event.wait", True))
    assert Blame.of(chain, sampled=False).kind == OURS
    report = SlowCallback("task 'q' (Slot.run)", wall=0.05, threshold=0.02, blames=(Blame.of(chain, False),))
    assert "not sampled, suspended next at backend/slot.py:400 in Slot.run → " in report.describe()


def test_configure_reads_the_threshold_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(slowcallbacks.ENV_THRESHOLD_MS, "35")
    seen = {}

    async def main() -> None:
        slowcallbacks.configure()
        loop = asyncio.get_running_loop()
        seen.update(debug=loop.get_debug(), threshold=loop.slow_callback_duration,
                    sampler=loop in slowcallbacks._samplers)
        slowcallbacks.disable(loop)

    asyncio.run(main())
    assert seen == {"debug": True, "threshold": 0.035, "sampler": True}
    assert slowcallbacks.threshold_from_env({slowcallbacks.ENV_THRESHOLD_MS: "x"}) is None
    assert slowcallbacks.threshold_from_env({}) is None


def test_worker_log_lines_of_our_slow_callbacks_are_found() -> None:
    lines = ["[2026-01-01T00:00:00.000Z] [warn] slow callback in our code: 53 ms (wall 53 ms) in task 'x' (f); "
             "running backend/a.py:1 in f",
             "[2026-01-01T00:00:00.000Z] [warn] slow callback outside our code: 30 ms in callback g",
             "[info] job 3 finished: passed"]
    assert slowcallbacks.ours_in_log(lines) == [lines[0].split("[warn] ")[1]]


def test_the_sampler_sees_what_runs_not_where_it_suspends(reports) -> None:
    ours = blocking_function(ROOT / "backend" / "inner.py", "slow_part", 0.08)

    async def outer() -> None:
        ours()
        await asyncio.sleep(0)  # suspends here, far from the slow part

    outer.__code__ = outer.__code__.replace(co_filename=str(ROOT / "backend" / "outer.py"))

    async def main() -> None:
        await asyncio.create_task(outer(), name="outer")

    started = time.monotonic()
    run_guarded(main)
    assert time.monotonic() - started >= 0.08
    [report] = [r for r in slow_reports(reports) if "outer" in r.callback]
    assert report.sampled and "backend/inner.py:3 in slow_part" in report.describe()


def test_waiting_for_another_thread_does_not_count_but_a_blocking_call_does(reports) -> None:
    """A callback that sleeps in the kernel blocks the loop; one kept waiting for a lock (the GIL held by
    another thread, here a lock) is not the callback's doing."""
    import threading

    lock = threading.Lock()
    ours_sleeping = blocking_function(ROOT / "backend" / "sleeper.py", "sleeps", 0.06)
    namespace: dict = {}
    exec(compile("def waits(lock):\n    with lock:\n        pass\n", str(ROOT / "backend" / "waiter.py"), "exec"),
         namespace)
    ours_waiting = namespace["waits"]

    def hold() -> None:
        with lock:
            time.sleep(0.08)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        holder = threading.Thread(target=hold)
        holder.start()
        await asyncio.sleep(0.01)
        loop.call_soon(ours_waiting, lock)
        await asyncio.sleep(0.15)
        holder.join()
        loop.call_soon(ours_sleeping)
        await asyncio.sleep(0.1)

    run_guarded(main)
    by_name = {r.callback: r for r in slow_reports(reports)}
    waited, slept = by_name["callback waits"], by_name["callback sleeps"]
    assert waited.wall >= 0.05 and waited.kind == slowcallbacks.LOAD and not waited.counts
    assert "waiting for the GIL or a lock" in waited.describe()
    assert slept.kind == OURS and slept.blocking_calls >= 0.05 and "in blocking calls" in slept.describe()


def run_as_callback(reports: list[logging.LogRecord], filename: str, name: str, body: str,
                    threshold: float) -> SlowCallback:
    """Run ``def name(): body`` (its code said to live in ``filename``) as a plain loop callback; its report."""
    namespace: dict = {}
    exec(compile(f"def {name}():\n    {body}\n", str(ROOT / filename), "exec"), namespace)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(namespace[name])
        await asyncio.sleep(0.05)

    run_guarded(main, threshold=threshold)
    [report] = [r for r in slow_reports(reports) if r.callback == f"callback {name}"]
    return report


def test_cpu_time_the_kernel_spent_on_page_faults_is_named(reports) -> None:
    """A callback that touches fresh memory holds the GIL in C while the kernel faults the pages in: the report
    says how much of its CPU time that was, and how many faults."""
    report = run_as_callback(reports, "backend/toucher.py", "touch",
                             "buf = bytearray(64 << 20)\n    buf[::4096] = bytes(len(buf[::4096]))", 0.005)
    assert report.cpu is not None and report.kernel > report.cpu / 2, report.describe()
    assert f"of it in the kernel, {report.faults} page faults" in report.describe(), report.describe()
    assert report.faults >= 1000  # 64 MiB in 4 KiB pages, or in 2 MiB ones plus the zeroing in the kernel


def test_python_code_of_ours_that_allocates_is_still_ours(reports) -> None:
    """Python code of ours building objects on the loop is sampled and blamed, whatever the kernel's share."""
    report = run_as_callback(reports, "backend/builder.py", "build", "return [str(n) for n in range(600_000)]", 0.02)
    assert report.sampled and report.ours, report.describe()


def test_the_sampler_knows_how_long_it_was_kept_off_a_cpu() -> None:
    """A missing sample is explained: the sampler thread's own run-queue wait over the callback's time. Here the
    sampler shares one CPU, at idle priority, with a busy process, so it has to wait for it."""
    import os
    import subprocess
    import sys

    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    loop = asyncio.new_event_loop()
    try:
        os.sched_setaffinity(0, {cpu})  # this thread; the sampler started below inherits it
        sampler = slowcallbacks.enable(loop, 0.02)
        # SCHED_IDLE: it runs only when the CPU has nothing else to do, which with the hog beside it is rarely
        os.sched_setscheduler(sampler._thread.native_id, os.SCHED_IDLE, os.sched_param(0))
        start = time.monotonic()
        loop.run_until_complete(asyncio.sleep(0.5))
        waited = sampler.own_wait(start, time.monotonic())
    finally:
        os.sched_setaffinity(0, before)
        slowcallbacks.disable(loop)
        loop.close()
        hog.kill()
        hog.wait()
    assert waited > 0.05, waited
    report = SlowCallback("task 'x' (y)", wall=0.05, threshold=0.02, cpu=0.04, sampler_wait=waited)
    assert f"the sampler kept {waited * 1000:.0f} ms off a CPU" in report.describe()
