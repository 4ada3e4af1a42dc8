"""A quit's cancel is never lost when the thing a task waits for happens at the same moment.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops the cancel when both land in the
same loop iteration (gh-86296, fixed in 3.12). ``WebUIConnection.close()`` does exactly that to the
status loop — it sets the wakeup the loop waits on and its owner cancels the loop — and the worker then
never finished its quit (tests/integration/test_worker_process.py::test_sigterm_when_web_ui_is_gone_still_exits
hung 1 run in ~10). The code uses ``asyncio.timeout`` instead, which keeps the cancel.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from backend.config.model import HostConfig
from backend.events import EventBus
from backend.webui.connection import WebUIConnection

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:9"


def connection() -> WebUIConnection:
    async def status() -> dict:
        return {"type": "worker_status", "status": "free"}

    async def capabilities() -> dict[str, str]:
        return {}

    return WebUIConnection(HostConfig(configured=URL, base_url=URL), 1, None, EventBus(),  # type: ignore[arg-type]
                           capabilities=capabilities, held_job_ids=list, status_message=status,
                           on_message=lambda conn, message: None)


async def test_the_status_loop_ends_when_woken_and_cancelled_at_once() -> None:
    conn = connection()
    loop_task = asyncio.create_task(conn._status_loop())
    await asyncio.sleep(0.05)  # it sent its first status (not connected: nothing goes out) and waits
    conn.send_status_soon()  # what close() does ...
    loop_task.cancel()  # ... while the slot's TaskGroup cancels the loop
    done, _ = await asyncio.wait([loop_task], timeout=5)
    assert done and loop_task.cancelled(), "the status loop swallowed its cancel and kept running"


def test_no_asyncio_wait_for_in_the_product() -> None:
    pattern = re.compile(r"\basyncio\.wait_for\(")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for top in ("backend", "app", "widgets")
                 for path in sorted((ROOT / top).rglob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not offenders, f"asyncio.wait_for can drop a cancel on 3.11; use asyncio.timeout: {offenders}"
