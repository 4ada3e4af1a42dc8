"""A scripted Runtime for the dashboard's tests and UI development (test code, never shipped).

``ScriptedRuntime`` implements backend.api.Runtime with a real EventBus + WorkerView and records the
commands the UI sends; tests/tui/replay.py fills one from a recording of the real worker, which is
what the snapshots and screenshots use. The scenario builders here publish hand-made sequences with
fixed timestamps for Pilot tests that need exact content; they use only the states and reasons the
real backend publishes (no ``offline`` or setup reasons — see the recordings).

``python -m tests.tui.scripted [scenario]`` runs the dashboard against a scenario that keeps moving.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from backend import events as ev
from backend.events import EventBus, HostState, ModuleStatus, SlotState
from backend.state import WorkerView

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: every scenario starts here
HOST = "openqa.example.com"
HOST2 = "openqa.backup.example.com"
VERSION = "0.1.0"


class ScriptedRuntime:
    """Runtime protocol implementation driven by code instead of a worker."""

    def __init__(self, *, now: float = T0) -> None:
        self.bus = EventBus()
        self.view = WorkerView(started_at=now)
        self.bus.add_listener(self.view.apply)
        self.commands: list[str] = []
        self.now = now
        self.exit_code = 0
        self._stopped = asyncio.Event()

    # ----- scripting helpers -----------------------------------------------------------------------
    def clock(self) -> float:
        """The scripted 'now' (frozen unless a script advances it)."""
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def emit(self, cls: type[ev.Event], **fields: object) -> None:
        self.bus.publish(cls(ts=self.now, **fields))  # type: ignore[arg-type]

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, exit_code: int = 0) -> None:
        if self._stopped.is_set():
            return
        self.exit_code = exit_code
        self.emit(ev.WorkerStopped, exit_code=exit_code)
        self._stopped.set()

    def finish_job(self, instance: int, result: str = "passed", reason: str = "") -> None:
        """End the job of a slot the way the worker would; exits when draining and nothing runs any more."""
        job = self.view.slots[instance].job
        if job is None:
            return
        self.emit(ev.JobFinished, instance=instance, job_id=job.job_id, result=result, reason=reason,
                  stop_reason="done" if result == "passed" else "cancel", duration=self.now - job.started_at)
        self.emit(ev.SlotStateChanged, instance=instance, state=SlotState.IDLE)
        if self.view.stopping and self.view.running_jobs == 0:
            self.stop()

    # ----- the Runtime command API -----------------------------------------------------------------
    def drain(self) -> None:
        self.commands.append("drain")
        if self.view.stopping:
            return
        self.emit(ev.WorkerStopping, mode="drain")
        if self.view.running_jobs == 0:
            self.stop()

    def quit(self) -> None:
        self.commands.append("quit")
        if self.view.stopping != "quit":
            self.emit(ev.WorkerStopping, mode="quit")
        for instance, slot in sorted(self.view.slots.items()):
            if slot.job is not None:
                self.finish_job(instance, "incomplete", "quit: worker has been stopped or restarted")
        self.stop()

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        self.commands.append(f"abort:{instance}")
        slot = self.view.slots.get(instance)
        if slot is None or slot.job is None or (job_id is not None and slot.job.job_id != job_id):
            return False
        self.emit(ev.SlotStateChanged, instance=instance, state=SlotState.STOPPING, job_id=slot.job.job_id)
        self.finish_job(instance, "incomplete", "abort: aborted from the qaworker dashboard")
        return True

    async def wait_stopped(self) -> int:
        await self._stopped.wait()
        return self.exit_code


# ----- realistic content --------------------------------------------------------------------------

INSTALL_MODULES: tuple[tuple[str, str], ...] = (
    ("bootloader", "installation"), ("welcome", "installation"), ("accept_license", "installation"),
    ("scc_registration", "installation"), ("system_role", "installation"), ("partitioning", "installation"),
    ("partitioning_finish", "installation"), ("installer_timezone", "installation"),
    ("user_settings", "installation"), ("installation_overview", "installation"),
    ("start_install", "installation"), ("await_install", "installation"),
    ("logs_from_installation_system", "installation"), ("reboot_after_installation", "installation"),
    ("grub_test", "installation"), ("first_boot", "installation"), ("consoletest_setup", "console"),
    ("zypper_lr", "console"), ("zypper_ref", "console"), ("yast2_lan", "console"), ("hostname", "console"),
    ("curl_https", "console"), ("glibc_sanity", "console"), ("zypper_in", "console"), ("sshd", "console"),
    ("mtab", "console"), ("check_system_info", "console"), ("shutdown", "console"),
)


def modules(done: int, *, failed: tuple[int, ...] = (), softfailed: tuple[int, ...] = (),
            catalogue: tuple[tuple[str, str], ...] = INSTALL_MODULES) -> tuple[tuple[ModuleStatus, ...], str]:
    """The module list with ``done`` finished modules (the next one running) and the current module name."""
    out = []
    for i, (name, cat) in enumerate(catalogue):
        if i < done:
            result = "failed" if i in failed else "softfailed" if i in softfailed else "passed"
        elif i == done:
            result = "running"
        else:
            result = "pending"
        out.append(ModuleStatus(name, cat, result))
    current = catalogue[done][0] if done < len(catalogue) else ""
    return tuple(out), current


def log_lines(n: int, *, start: float = T0, module: str = "zypper_ref") -> tuple[str, ...]:
    """Plausible autoinst-log.txt lines with fixed timestamps."""
    templates = (
        "[debug] [pid:4711] <<< testapi::assert_screen(mustmatch=\"{m}\", timeout=90)",
        "[debug] [pid:4711] >>> testapi::_handle_found_needle: found {m}-20231110, similarity 1.00 @ 0/0",
        "[debug] [pid:4711] <<< testapi::script_run(cmd=\"zypper -n ref\", timeout=300, quiet=undef)",
        "[debug] [pid:4711] tests/console/{m}.pm:23 called testapi::wait_serial",
        "[debug] [pid:4712] >>> backend::baseclass::check_asserted_screen: no match: 29.8s, best candidate: "
        "{m}-20231020 (0.71)",
        "[info] [pid:4711] ::: basetest::runtest: # Test died: command 'zypper -n in vim' timed out",
    )
    lines = []
    for i in range(n):
        stamp = _iso(start + i * 1.7)
        lines.append(f"[{stamp}] " + templates[i % len(templates)].format(m=module))
    return tuple(lines)


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ----- scenario building blocks -------------------------------------------------------------------

def start(rt: ScriptedRuntime, instances: tuple[int, ...] = (1, 2, 3, 4),
          hosts: tuple[str, ...] = (HOST,), *, connect: bool = True) -> None:
    rt.emit(ev.WorkerStarted, version=VERSION, instances=instances, hosts=hosts)
    for host in hosts:
        for i in instances:
            rt.emit(ev.ConnectionChanged, host=host, instance=i, state=HostState.REGISTERING)
    rt.advance(2)
    if connect:
        for h, host in enumerate(hosts):
            for i in instances:
                rt.emit(ev.ConnectionChanged, host=host, instance=i, state=HostState.CONNECTED,
                        worker_id=40 + 10 * h + i)
    for i in instances:
        rt.emit(ev.SlotStateChanged, instance=i, state=SlotState.IDLE)
    rt.emit(ev.CacheTotals, used_bytes=38_654_705_664, limit_bytes=53_687_091_200, assets=57, hits=412,
            misses=23, evictions=4)


def run_job(rt: ScriptedRuntime, instance: int, job_id: int, name: str, *, done: int,
            failed: tuple[int, ...] = (), softfailed: tuple[int, ...] = (), started_ago: float = 600,
            log: int = 30, host: str = HOST, max_job_time: float = 7200) -> None:
    """A job that was accepted ``started_ago`` seconds before ``rt.now`` and has ``done`` modules done."""
    now = rt.now
    rt.now = now - started_ago
    rt.emit(ev.JobAccepted, instance=instance, job_id=job_id, name=name, host=host, max_job_time=max_job_time)
    rt.emit(ev.SlotStateChanged, instance=instance, state=SlotState.SETUP, job_id=job_id)
    rt.now = now - started_ago + 20
    rt.emit(ev.SlotStateChanged, instance=instance, state=SlotState.RUNNING, job_id=job_id)
    rt.now = now
    mods, current = modules(done, failed=failed, softfailed=softfailed)
    rt.emit(ev.JobProgress, instance=instance, job_id=job_id, current_module=current, modules=mods,
            isotovideo_status="running")
    if log:
        lines = log_lines(log, start=now - log * 1.7, module=current or "shutdown")
        rt.emit(ev.LogLines, instance=instance, job_id=job_id, lines=lines)


def finished(rt: ScriptedRuntime, instance: int, job_id: int, name: str, result: str,
             reason: str = "") -> None:
    run_job(rt, instance, job_id, name, done=len(INSTALL_MODULES), started_ago=3000, log=0)
    rt.finish_job(instance, result, reason)


TW = "opensuse-Tumbleweed-DVD-x86_64-Build20231113-textmode@64bit"
SLE = "sle-15-SP5-Server-DVD-Updates-x86_64-Build20231114-1-qam-regression-installation@64bit"
KDE = "opensuse-Tumbleweed-NET-x86_64-Build20231113-kde@64bit"
MICRO = "opensuse-MicroOS-DVD-x86_64-Build20231113-microos-selinux@uefi"


# ----- scenarios ----------------------------------------------------------------------------------

def idle(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2))
    finished(rt, 1, 3725011, TW, "passed")
    rt.advance(3600 * 5 + 1234)


def three_running(rt: ScriptedRuntime) -> None:
    start(rt)
    rt.advance(3 * 3600 + 17 * 60)
    finished(rt, 4, 3725011, TW, "passed")
    run_job(rt, 1, 3725102, TW, done=18, softfailed=(3,), started_ago=1843)
    run_job(rt, 2, 3725140, SLE, done=9, failed=(6,), started_ago=2710)
    run_job(rt, 3, 3725177, KDE, done=2, started_ago=131, log=12)
    rt.emit(ev.LiveViewers, instance=2, job_id=3725140, viewers=1)


def developer_session(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2))
    rt.advance(7200)
    run_job(rt, 1, 3725230, MICRO, done=11, started_ago=2405)
    rt.emit(ev.JobProgress, instance=1, job_id=3725230, current_module="start_install",
            modules=modules(10)[0], paused="needle mismatch: assert_screen 'installation-overview' (30 s)")
    rt.emit(ev.DeveloperSession, instance=1, job_id=3725230, active=True)
    rt.emit(ev.LiveViewers, instance=1, job_id=3725230, viewers=2)


def broken_host(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2, 3), (HOST, HOST2), connect=False)
    for i in (1, 2, 3):
        rt.emit(ev.ConnectionChanged, host=HOST, instance=i, state=HostState.CONNECTED, worker_id=40 + i)
    rt.emit(ev.SlotStateChanged, instance=3, state=SlotState.BROKEN,
            reason="qemu-system-x86_64 not found in PATH (QEMU_BINARY)")
    rt.advance(3 * 60 + 12)
    run_job(rt, 1, 3725301, TW, done=5, started_ago=190)
    for i in (1, 2, 3):
        rt.emit(ev.ConnectionChanged, host=HOST2, instance=i, state=HostState.FAILED,
                reason="503 Service Unavailable", next_retry_in=45)
    rt.advance(3)
    rt.emit(ev.Notice, level="error", message="registration at openqa.backup.example.com failed: 503")


def cache_downloading(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2, 3))
    rt.advance(600)
    for i, (job_id, name) in enumerate(((3725410, TW), (3725411, SLE), (3725412, KDE)), start=1):
        rt.emit(ev.JobAccepted, instance=i, job_id=job_id, name=name, host=HOST, max_job_time=7200)
        rt.emit(ev.SlotStateChanged, instance=i, state=SlotState.SETUP, job_id=job_id)
    rt.advance(42)
    rt.emit(ev.CacheProgress, key=f"{HOST}/openSUSE-Tumbleweed-DVD-x86_64-Snapshot20231113-Media.iso",
            bytes_done=2_684_354_560, bytes_total=4_617_928_704, rate=63_963_136,
            waiting_jobs=(3725410, 3725412))
    rt.emit(ev.CacheProgress, key=f"{HOST}/SLE-15-SP5-Full-x86_64-GM-Media1.iso",
            bytes_done=471_859_200, bytes_total=16_106_127_360, rate=31_457_280, waiting_jobs=(3725411,))
    rt.emit(ev.CacheProgress, key=f"{HOST}/tests", bytes_done=0, bytes_total=0, waiting_jobs=(3725411,))


def uploading(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2))
    rt.advance(5000)
    run_job(rt, 1, 3725501, SLE, done=len(INSTALL_MODULES), started_ago=3342, failed=(20,))
    rt.emit(ev.SlotStateChanged, instance=1, state=SlotState.UPLOADING, job_id=3725501)
    rt.emit(ev.UploadProgress, instance=1, job_id=3725501, files_done=148, files_total=231,
            bytes_done=1_932_735_283, bytes_total=2_791_728_742,
            current_file="hdd/sle-15-SP5-x86_64-gnome.qcow2",
            optipng_queue=12)


def disconnected(rt: ScriptedRuntime) -> None:
    start(rt, (1, 2), (HOST, HOST2), connect=False)
    for i in (1, 2):
        rt.emit(ev.ConnectionChanged, host=HOST, instance=i, state=HostState.FAILED,
                reason="connection refused", next_retry_in=12)
        rt.emit(ev.ConnectionChanged, host=HOST2, instance=i, state=HostState.DISABLED,
                reason="API key rejected (403)")
    # no SlotStateChanged: the real worker keeps such slots idle and publishes only the connections
    rt.advance(3)


SCENARIOS: dict[str, Callable[[ScriptedRuntime], None]] = {
    "idle": idle, "three_running": three_running, "developer_session": developer_session,
    "broken_host": broken_host, "cache_downloading": cache_downloading, "uploading": uploading,
    "disconnected": disconnected,
}


def build(name: str) -> ScriptedRuntime:
    rt = ScriptedRuntime()
    SCENARIOS[name](rt)
    return rt


async def animate(rt: ScriptedRuntime, interval: float = 0.5) -> None:
    """Keep a scenario moving (for UI development): time passes, logs grow, modules advance."""
    n = 0
    while not rt.stopped:
        await asyncio.sleep(interval)
        rt.advance(interval)
        n += 1
        for instance, slot in list(rt.view.slots.items()):
            job = slot.job
            if job is None or slot.state is not SlotState.RUNNING:
                continue
            rt.emit(ev.LogLines, instance=instance, job_id=job.job_id,
                    lines=log_lines(2, start=rt.now, module=job.current_module or "shutdown"))
            if n % 6 == 0:
                done = min(job.modules_done + 1, len(INSTALL_MODULES))
                if done >= len(INSTALL_MODULES):
                    rt.finish_job(instance, "passed")
                    continue
                mods, current = modules(done)
                rt.emit(ev.JobProgress, instance=instance, job_id=job.job_id, current_module=current,
                        modules=mods)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - interactive
    from app.tui import QaworkerApp

    name = (argv if argv is not None else sys.argv[1:] or ["three_running"])[0]
    rt = build(name)

    class LiveApp(QaworkerApp):
        def on_ready(self) -> None:
            self.run_worker(animate(rt), group="animate", exit_on_error=False)

    return LiveApp(rt, clock=rt.clock).run() or 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
