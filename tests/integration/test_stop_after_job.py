"""A quit or drain that arrives while a slot tidies up after a job still ends the worker.

After set_done the slot is busy for a moment longer: it re-checks its availability and then reports
itself free. A stop in that window found the slot busy and was never looked at again, so the worker
waited for ever (the hang of test_sigterm_at_every_phase at its second quit, right after a job).

Here the window is held open for sure: the slot is of class ``tap``, so its availability check asks
the system bus with ``busctl``, and the fake ``busctl`` (no system bus here) waits for the test
during the check that follows the job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakebin import FakeBin, fakebin  # noqa: F401 (fixture)
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered


def holding_busctl(fake: FakeBin, gate: Path) -> Path:
    """busctl answers "the switch is there"; while ``gate`` exists, it first waits until it is removed."""
    held = gate.with_name("held")
    fake.add("busctl", f"""\
        if [ -e {gate} ]; then
            touch {held}
            while [ -e {gate} ]; do sleep 0.02; done
        fi
        echo "b true"
        """)
    return held


@pytest.mark.parametrize("stop", ["quit", "drain"])
async def test_stop_while_the_slot_tidies_up_after_a_job_ends_the_worker(tmp_path, fakebin, stop):  # noqa: F811
    gate = tmp_path / "gate"
    held = holding_busctl(fakebin, gate)
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"WORKER_CLASS": "qemu_x86_64,tap,test"})
        async with running_worker(config) as worker:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 20)
            gate.touch()  # the check after this job waits inside busctl
            job = await web.wait_job_done(job_id, 30)
            await web.wait_for(held.exists, 20)
            worker.quit() if stop == "quit" else worker.drain()
            gate.unlink()  # the check ends; the slot must now see the stop it was asked for
            code = await asyncio.wait_for(worker.wait_stopped(), 20)  # a hang here is the bug
        assert (job.result, code) == ("passed", 0)
        wid = next(iter(web.workers))
        assert not web.workers[wid].connected  # it said goodbye instead of reporting itself free
