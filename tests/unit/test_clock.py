"""The virtual-clock loop of tests/clock.py: idle time is skipped, real work (threads, sockets) is not."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.virtual_clock


async def test_idle_time_is_skipped() -> None:
    loop = asyncio.get_running_loop()
    real, virtual = time.monotonic(), loop.time()
    await asyncio.sleep(30)
    assert loop.time() - virtual >= 30
    assert time.monotonic() - real < 5


async def test_the_clock_waits_for_a_thread() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    timer = asyncio.create_task(asyncio.sleep(10))
    await asyncio.to_thread(time.sleep, 0.2)  # real work: the 10 s timer must not fire meanwhile
    assert not timer.done() and loop.time() - start < 5
    await timer
    assert loop.time() - start >= 10


async def test_socket_io_within_the_loop_is_not_timed_out() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)  # the server takes 2 s of (virtual) time to answer
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        with pytest.raises(TimeoutError):  # and a real timeout still happens on the virtual clock
            await asyncio.wait_for(asyncio.sleep(60), 30)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
