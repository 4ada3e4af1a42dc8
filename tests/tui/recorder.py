"""Record the bus events of the REAL worker for the dashboard's snapshots and screenshots.

Each scenario runs a real ``Worker`` (slots, web UI connections, cache, the simulator as isotovideo)
against the real mock web UI on 127.0.0.1, drives the mock the way a web UI would (schedule jobs,
open a developer session, fail a second host, raise the load) and stops recording the moment the
worker's own read model reaches the scenario's state: a synchronous bus listener checks the
predicate after every event, so the recording ends at exactly that event however fast the machine is.

The recording is one JSON line per event (``backend.control.codec``'s wire form) after a header line.
What differs from run to run is normalised so a re-recording diffs cleanly: slot numbers become
1..n, the mock's URL ``http://127.0.0.1:9526``, the temporary directory ``/var/lib/openqa``, and
timestamps are seconds since the first event.

    python -m tests.tui.recorder [scenario …]     # re-record (all by default) into tests/tui/recordings/
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from backend import events as ev
from backend.control.codec import encode_event
from backend.events import HostState, SlotState
from backend.mockweb.server import MockWebUI
from backend.state import WorkerView
from backend.worker import Worker
from tests.helpers import free_instance
from tests.integration.harness import KEY, SECRET, job_settings, make_config

log = logging.getLogger("qaworker.recorder")

RECORDINGS = Path(__file__).with_name("recordings")
WEB_URL = "http://127.0.0.1:9526"  # what the mock's URL becomes in a recording
BACKUP_URL = "http://127.0.0.1:9527"
PRJDIR = "/var/lib/openqa"
RECORD_TIMEOUT = 90.0
HIGH_LOAD = "95.00 60.00 30.00 9/300 1\n"
LOW_LOAD = "0.10 0.10 0.10 1/100 1\n"


@dataclass
class Stage:
    """What a scenario gets to drive: the mock web UI(s), the worker, its view, its temp dir."""

    web: MockWebUI
    worker: Worker
    tmp: Path
    backup: MockWebUI | None = None

    @property
    def view(self) -> WorkerView:
        return self.worker.view

    async def until(self, predicate: Callable[[WorkerView], bool], timeout: float = 60) -> None:
        sub = self.worker.bus.subscribe()
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.view):
                    await sub.get()
        finally:
            sub.close()

    async def worker_id_of(self, job_id: int) -> int:
        await self.web.wait_for(lambda: self.web.jobs[job_id].state == "running", 60)
        worker_id = self.web.jobs[job_id].assigned_worker_id
        assert worker_id is not None
        return worker_id


@dataclass
class Scenario:
    slots: int
    drive: Callable[[Stage], Awaitable[None]]
    done: Callable[[WorkerView], bool]  # the state to capture, checked after every event
    cache: bool = False
    backup_host: str = ""  # "", "failing" (answers 503) or "refused" (nothing listens)
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    connect_interval: float = 1.0  # seconds between registration attempts (the "retry in" countdown)


def _slots(view: WorkerView) -> list:
    return [view.slots[i] for i in sorted(view.slots)]


def _all_connected(view: WorkerView) -> bool:
    return bool(view.hosts) and all(h.state is HostState.CONNECTED for h in view.hosts.values())


def _modules_done(slot) -> int:
    return slot.job.modules_done if slot.job is not None else -1


# ----- scenarios ------------------------------------------------------------------------------------

async def _idle(stage: Stage) -> None:
    await stage.until(_all_connected)
    stage.web.schedule_job(job_settings(TEST="textmode", SIM_MODULES="boot,installer,first_boot,console,shutdown",
                                        SIM_MODULE_SECONDS="0.2"))


def _idle_done(view: WorkerView) -> bool:
    slots = _slots(view)
    return (_all_connected(view) and any(s.last_finished is not None for s in slots)
            and all(s.state is SlotState.IDLE and s.job is None for s in slots))


async def _three_running(stage: Stage) -> None:
    await stage.until(_all_connected)
    for test, modules, seconds, extra in (
        ("textmode", "boot,installer,partitioning,user_settings,first_boot,zypper_ref,zypper_in,console,shutdown",
         "0.3", {"SIM_SOFTFAIL_MODULE": "partitioning"}),
        ("kde", "boot,installer,desktop,firefox,kwrite,dolphin,shutdown", "0.4", {"SIM_FAIL_MODULE": "desktop"}),
        ("gnome", "boot,gnome,nautilus,gedit,shutdown", "2", {}),
    ):
        stage.web.schedule_job(job_settings(TEST=test, SIM_MODULES=modules, SIM_MODULE_SECONDS=seconds,
                                            SIM_SCREENSHOTS="0", **extra))
        await stage.until(lambda v: v.running_jobs >= len(stage.web.jobs))  # one slot per job, in order


def _three_running_done(view: WorkerView) -> bool:
    slots = _slots(view)
    running = [s for s in slots if s.state is SlotState.RUNNING and s.job is not None]
    return len(running) == 3 and sorted(_modules_done(s) for s in running)[1:] >= [2, 4]


async def _uploading(stage: Stage) -> None:
    await stage.until(_all_connected)
    stage.web.schedule_job(job_settings(TEST="upgrade", SIM_MODULES="boot,zypper_up,reboot,console",
                                        SIM_MODULE_SECONDS="0.2", SIM_SCREENSHOTS="6",
                                        SIM_SCREENSHOT_SIZE="320x240", SIM_FAIL_MODULE="console"))


def _uploading_done(view: WorkerView) -> bool:
    return any(s.state is SlotState.UPLOADING and s.job is not None and s.job.upload.files_total > 0
               for s in view.slots.values())


async def _developer_session(stage: Stage) -> None:
    await stage.until(_all_connected)
    job_id = stage.web.schedule_job(job_settings(TEST="devmode", SIM_MODULES="boot,needle_check,console,shutdown",
                                                 SIM_PAUSE="needle_check", SIM_PAUSE_SECONDS="60",
                                                 SIM_MODULE_SECONDS="0.3"))
    worker_id = await stage.worker_id_of(job_id)
    await stage.until(lambda v: any(s.job is not None and s.job.job_id == job_id for s in v.slots.values()))
    await stage.web.send_ws(worker_id, {"type": "developer_session_start", "jobid": job_id})
    await stage.web.send_ws(worker_id, {"type": "livelog_start", "jobid": job_id})


def _developer_session_done(view: WorkerView) -> bool:
    return any(s.job is not None and s.job.developer_session and s.job.paused for s in view.slots.values())


async def _broken_host(stage: Stage) -> None:
    await stage.until(lambda v: any(h.state is HostState.CONNECTED for h in v.hosts.values()))
    stage.web.schedule_job(job_settings(TEST="textmode", SIM_MODULES="boot,installer,first_boot,console,shutdown",
                                        SIM_MODULE_SECONDS="1.5"))
    await stage.until(lambda v: v.running_jobs == 1)
    (stage.tmp / "loadavg").write_text(HIGH_LOAD)  # the idle slots see the load and report broken


def _broken_host_done(view: WorkerView) -> bool:
    failed = [h for h in view.hosts.values() if h.state is HostState.FAILED and h.next_retry_at]
    broken = [s for s in view.slots.values() if s.state is SlotState.BROKEN]
    return bool(failed) and len(broken) >= 1 and view.running_jobs == 1 and any(
        s.job is not None and s.job.modules_done >= 1 for s in view.slots.values())


async def _disconnected(stage: Stage) -> None:
    return None


def _disconnected_done(view: WorkerView) -> bool:
    hosts = list(view.hosts.values())
    return bool(hosts) and all(h.state is HostState.FAILED and h.next_retry_at for h in hosts)


async def _cache_downloading(stage: Stage) -> None:
    await stage.until(_all_connected)
    stage.web.add_asset("iso", "openSUSE-Tumbleweed-DVD-x86_64-Snapshot.iso", size=48 * 1024 * 1024)
    stage.web.add_asset("hdd", "sle-15-SP5-x86_64-gnome.qcow2", size=24 * 1024 * 1024)
    stage.web.faults.delay(r"/assets/", 0.2, times=None)
    stage.web.schedule_job(job_settings(TEST="install", ISO="openSUSE-Tumbleweed-DVD-x86_64-Snapshot.iso"),
                           assets={"iso": ["openSUSE-Tumbleweed-DVD-x86_64-Snapshot.iso"]})
    stage.web.schedule_job(job_settings(TEST="upgrade", HDD_1="sle-15-SP5-x86_64-gnome.qcow2"),
                           assets={"hdd": ["sle-15-SP5-x86_64-gnome.qcow2"]})


def _cache_downloading_done(view: WorkerView) -> bool:
    downloads = list(view.cache.downloads.values())
    return len(downloads) >= 2 and all(d.bytes_done > 0 for d in downloads)


SCENARIOS: dict[str, Scenario] = {
    "idle": Scenario(2, _idle, _idle_done),
    "three_running": Scenario(4, _three_running, _three_running_done),
    "uploading": Scenario(2, _uploading, _uploading_done),
    "developer_session": Scenario(2, _developer_session, _developer_session_done),
    "broken_host": Scenario(3, _broken_host, _broken_host_done, backup_host="failing", connect_interval=30,
                            settings={"CRITICAL_LOAD_AVG_THRESHOLD": "40", "QAWORKER_HEALTH_INTERVAL": "0.5"}),
    "disconnected": Scenario(2, _disconnected, _disconnected_done, backup_host="refused", connect_interval=15),
    "cache_downloading": Scenario(3, _cache_downloading, _cache_downloading_done, cache=True),
}


# ----- recording ------------------------------------------------------------------------------------

class Recorder:
    """A bus listener: keeps every event until ``done(view)`` holds, then stops listening."""

    def __init__(self, worker: Worker, done: Callable[[WorkerView], bool]) -> None:
        self.worker = worker
        self.done = done
        self.events: list[ev.Event] = []
        self.finished = asyncio.Event()
        worker.bus.add_listener(self._on_event)  # after the view's listener: it sees the applied state

    def _on_event(self, event: ev.Event) -> None:
        if self.finished.is_set():
            return
        self.events.append(event)
        if self.done(self.worker.view):
            self.finished.set()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _instances(n: int) -> list[int]:
    found: list[int] = []
    while len(found) < n:
        i = free_instance()
        if i not in found:
            found.append(i)
    return sorted(found)


async def record(name: str) -> list[str]:
    """Run one scenario on the real worker; the normalised JSON lines (header first)."""
    scenario = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix="qaworker-rec-") as tmpdir:
        tmp = Path(tmpdir)
        web = MockWebUI(tmp / "webui", api_key=KEY, api_secret=SECRET)
        await web.start()
        backup: MockWebUI | None = None
        urls = [web.url]
        if scenario.backup_host == "failing":
            backup = MockWebUI(tmp / "webui2", api_key=KEY, api_secret=SECRET)
            await backup.start()
            backup.faults.fail(r"/api/v1/workers", 503, times=10_000)
            urls.append(backup.url)
        elif scenario.backup_host == "refused":
            urls = [f"http://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:{_closed_port()}"]
        (tmp / "loadavg").write_text(LOW_LOAD)
        settings = {"QAWORKER_LOADAVG_FILE": str(tmp / "loadavg"), **scenario.settings}
        instances = _instances(scenario.slots)
        config = make_config(tmp, urls, instances=instances, settings=settings, cache=scenario.cache,
                             env={"OPENQA_WORKER_CONNECT_INTERVAL": str(scenario.connect_interval)})
        worker = Worker(config)
        recorder = Recorder(worker, scenario.done)
        task = asyncio.create_task(worker.run(), name=f"record-{name}")
        try:
            stage = Stage(web, worker, tmp, backup)
            async with asyncio.timeout(RECORD_TIMEOUT):
                driving = asyncio.create_task(scenario.drive(stage))
                await recorder.finished.wait()
                driving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await driving
        finally:
            worker.quit()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 30)
            if backup is not None:
                await backup.stop()
            await web.stop()
        replace = {str(tmp): PRJDIR, urls[0]: WEB_URL}
        if len(urls) > 1:
            replace[urls[1]] = BACKUP_URL
        return to_lines(name, recorder.events, slot_numbers(instances, recorder.events), replace)


def slot_numbers(instances: list[int], events: list[ev.Event]) -> dict[int, int]:
    """Slots become 1..n in the order they took their first job (then the idle ones): the dashboard
    selects slot 1 first, so a snapshot shows the slot the scenario is about."""
    first_job = {}
    for n, event in enumerate(events):
        if isinstance(event, ev.JobAccepted):
            first_job.setdefault(event.instance, n)
    order = sorted(instances, key=lambda i: (first_job.get(i, len(events)), i))
    return {inst: n for n, inst in enumerate(order, start=1)}


def _renumber(event: ev.Event, slots: dict[int, int]) -> ev.Event:
    changes: dict[str, object] = {}
    if isinstance(getattr(event, "instance", None), int):
        changes["instance"] = slots.get(event.instance, event.instance)  # type: ignore[attr-defined]
    if isinstance(event, ev.WorkerStarted):
        changes["instances"] = tuple(slots.get(i, i) for i in event.instances)
    return dataclasses.replace(event, **changes) if changes else event  # type: ignore[arg-type]


def to_lines(name: str, events: list[ev.Event], slots: dict[int, int], replace: dict[str, str]) -> list[str]:
    t0 = events[0].ts if events else 0.0
    lines = [json.dumps({"recording": name, "events": len(events), "started": round(t0, 3),
                         "now": round(events[-1].ts - t0, 3) if events else 0.0})]
    for event in events:
        event = dataclasses.replace(_renumber(event, slots), ts=round(event.ts - t0, 3))
        line = json.dumps(encode_event(event), ensure_ascii=False)
        for old, new in sorted(replace.items(), key=lambda kv: -len(kv[0])):  # longest first: URLs in paths
            line = line.replace(old, new)
        for old, new in slots.items():  # pool directories carry the slot number
            line = re.sub(rf"/pool/{old}(?!\d)", f"/pool/{new}", line)
        lines.append(line)
    return lines


async def record_all(names: list[str], out: Path = RECORDINGS) -> list[Path]:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    written = []
    for name in names:
        lines = await record(name)
        path = out / f"{name}.jsonl"
        await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("QAWORKER_LOG", "WARNING"))
    for path in asyncio.run(record_all(names)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
