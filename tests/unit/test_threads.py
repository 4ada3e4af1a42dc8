"""The loop's default pool is started before the loop runs, so to_thread never starts a thread on the loop."""

import asyncio
import threading

from app import threads


def test_to_thread_never_starts_a_thread_while_the_loop_runs():
    size = threads.default_size()

    async def main() -> tuple[int, int, set[str]]:
        before = threading.active_count()
        gate = threading.Barrier(size)
        names = await asyncio.gather(*(asyncio.to_thread(lambda: (gate.wait(), threading.current_thread().name)[1])
                                       for _ in range(size)))
        return before, threading.active_count(), set(names)

    before, after, names = threads.run(main())
    assert after == before  # all `size` threads ran at once, and none of them was new
    assert len(names) == size and all(n.startswith("asyncio") for n in names)


def test_the_pool_is_gone_after_run():
    count = threading.active_count()
    threads.run(asyncio.sleep(0))
    assert threading.active_count() == count
