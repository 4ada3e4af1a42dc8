"""Job processes are watched through pidfds: no waiter thread is started on the loop per subprocess."""

import asyncio
import sys
import threading

import pytest

from backend.childwatch import pidfd_child_watcher

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ watches children through pidfds itself")


async def test_a_subprocess_is_reaped_with_its_exit_code_and_no_thread_per_child():
    loop = asyncio.get_running_loop()
    with pidfd_child_watcher(loop):
        before = threading.active_count()
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({n})")
                 for n in (0, 3, 7)]
        during = threading.active_count()
        codes = [await p.wait() for p in procs]
    assert codes == [0, 3, 7]
    assert during == before  # the default watcher starts one thread per child


async def test_after_the_block_subprocesses_still_work_with_the_default_watcher():
    with pidfd_child_watcher(asyncio.get_running_loop()):
        pass
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(5)")
    assert await proc.wait() == 5
