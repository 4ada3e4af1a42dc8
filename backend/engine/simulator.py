"""A stand-in isotovideo for the demo and tests: ``python -m backend.engine.simulator``.

Runs with cwd = pool dir, reads ``vars.json`` and writes the same files os-autoinst writes
(PROTOCOL.md §12.1): ``autoinst-status.json`` (atomic), ``testresults/test_order.json``,
``testresults/result-<module>.json``, real PNG screenshots + ``.thumbs/``, text results, ``serial0``,
``video.ogv``, ``ulogs/``, ``assets_public/``/``assets_private/``, ``base_state.json``. Log lines go
to stderr (the worker appends them to autoinst-log.txt). It serves the command server on
127.0.0.1:QEMUPORT+1 under ``/<JOBTOKEN>``: ``GET /isotovideo/version``, ``GET /vars``,
``POST /broadcast`` and ``WS /ws`` (``{"cmd":"status"}``, ``resume_test_execution``,
``set_pause_at_test``; broadcasts ``set_current_test``, ``paused``, ``stopping_test_execution``).
SIGTERM/SIGINT/SIGHUP: writes ``base_state.json`` ``{"component":"isotovideo","msg":"isotovideo
received signal TERM"}`` and exits 1. ``--version`` prints ``Current version is simulator [interface v34]``.

Settings (job settings from vars.json; the environment is used when vars.json lacks them):

=====================  ===================================================================================
SIM_MODULES            comma list of test modules (default ``boot,login,console,shutdown``)
SIM_MODULE_SECONDS     seconds per module (float, default 1)
SIM_SCREENSHOTS        screenshots per module (default 2)
SIM_SCREENSHOT_SIZE    ``WxH`` (default ``1024x768``); thumbnails are 1/8 of that
SIM_FAIL_MODULE        this module fails (its last screenshot too)
SIM_SOFTFAIL_MODULE    this module ends softfailed
SIM_CRASH              = module: during it write base_state.json (backend, "QEMU exited unexpectedly"), exit 1
SIM_HANG               = module: stop making progress forever (still honours SIGTERM)
SIM_IGNORE_SIGTERM     =1: ignore SIGTERM (needs the worker's SIGKILL)
SIM_ORPHAN             =1: double-fork a sleeping grandchild in its own session that outlives the simulator
SIM_QEMU_PID           =1: start a ``qemu-system-x86_64`` child (a symlink to sleep), pid in qemu.pid
SIM_PAUSE              = module: pause with "paused at needle mismatch" for SIM_PAUSE_SECONDS (default 5)
                       or until a ws ``{"cmd":"resume_test_execution"}``
SIM_NO_TESTS           =1: schedule no test modules
SIM_ULOG               =1: write ``ulogs/simulator-journal.txt``
SIM_ASSET_SIZE         bytes of each PUBLISH_HDD_<n>/STORE_HDD_<n> asset (default 1 MiB)
SIM_EXIT_CODE          exit code at the end of a normal run (default 0)
=====================  ===================================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a plain script path: make `backend` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.engine.png import screenshot_png
from backend.engine.simcmdsrv import CommandServer
from backend.engine.simsupport import (
    CATEGORY,
    INTERFACE_VERSION,
    PAUSE_REASON,
    SimSettings,
    _log,
    simulator_command,
    write_atomic,
    write_json_atomic,
    write_sized_file,
)

__all__ = ["INTERFACE_VERSION", "CommandServer", "SimSettings", "Simulator", "main", "simulator_command",
           "write_atomic", "write_json_atomic", "write_sized_file"]

class Crash(Exception):
    """The simulated backend died."""


class Simulator:
    def __init__(self, pool: Path, vars_: dict[str, str], settings: SimSettings) -> None:
        self.pool = pool
        self.vars = vars_
        self.s = settings
        self.results = pool / "testresults"
        self.status: dict[str, Any] = {"status": "initial", "current_test": "", "test_execution_paused": 0}
        self.current_full_name = ""
        self.pause_at = ""
        self._resume = asyncio.Event()
        self.server: CommandServer | None = None
        self.server_task: asyncio.Task[None] | None = None
        self.qemu: subprocess.Popen[bytes] | None = None

    # -- state output ---------------------------------------------------------------------------

    def write_status(self, **changes: Any) -> None:
        self.status.update(changes)
        write_json_atomic(self.pool / "autoinst-status.json", self.status)

    def write_base_state(self, component: str, msg: str) -> None:
        path = self.pool / "base_state.json"
        if not path.exists():  # first writer wins
            write_json_atomic(path, {"component": component, "msg": msg})

    def serial(self, line: str) -> None:
        with (self.pool / "serial0").open("a") as fh:
            fh.write(line + "\n")

    async def broadcast(self, msg: dict[str, Any]) -> None:
        if self.server is not None:
            await self.server.send_all(msg)

    def status_reply(self) -> dict[str, Any]:
        return {
            "tags": None, "running": self.status["current_test"] or None,
            "current_test_full_name": self.current_full_name or None, "current_api_function": None,
            "pause_test_name": self.pause_at or None, "pause_on_screen_mismatch": False,
            "pause_on_next_command": 0, "pause_on_failure": 0,
            "test_execution_paused": self.status["test_execution_paused"],
            "devel_mode_major_version": 1, "devel_mode_minor_version": 1,
        }

    async def handle_ws_command(self, cmd: dict[str, Any]) -> None:
        name = cmd.get("cmd")
        if name == "status":
            await self.broadcast(self.status_reply())  # os-autoinst broadcasts replies too
        elif name == "resume_test_execution":
            self._resume.set()
        elif name == "set_pause_at_test":
            self.pause_at = str(cmd.get("name") or "")
            await self.broadcast({"set_pause_at_test": self.pause_at or None})

    async def start_server(self, port: int) -> None:
        server = CommandServer(self, port, self.s.jobtoken)
        try:
            await server.start()
        except OSError as exc:
            _log(f"cmdsrv: cannot listen on port {port}: {exc}", "warn")
            await server.stop()
            return
        self.server = server

    async def stop_server(self) -> None:
        if self.server_task is not None and not self.server_task.done():
            self.server_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.server_task
        if self.server is not None:
            await self.server.stop()

    # -- processes ------------------------------------------------------------------------------

    def start_qemu(self) -> None:
        sleep = shutil.which("sleep") or "/bin/sleep"
        link = self.pool / "tmp" / "qemu-system-x86_64"
        link.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(sleep)
        self.qemu = subprocess.Popen([str(link), "3600"], stdin=subprocess.DEVNULL, cwd=self.pool)
        (self.pool / "qemu.pid").write_text(f"{self.qemu.pid}\n")
        _log(f"starting: {link} (pid {self.qemu.pid})")

    def stop_qemu(self) -> None:
        if self.qemu is not None and self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> int:
        self.results.mkdir(exist_ok=True)
        (self.results / ".thumbs").mkdir(exist_ok=True)
        (self.results / "ulogs").mkdir(exist_ok=True)
        if self.s.qemuport:
            # In the background: the tests start at once, like os-autoinst's separate cmdsrv process.
            self.server_task = asyncio.create_task(self.start_server(self.s.qemuport + 1))
        if self.s.qemu_pid:
            self.start_qemu()
        write_json_atomic(self.results / "test_order.json", [
            {"name": m, "category": CATEGORY, "flags": {}, "script": f"tests/{CATEGORY}/{m}.pm"}
            for m in self.s.modules])
        _log(f"scheduling {len(self.s.modules)} test modules: {','.join(self.s.modules)}")
        self.serial("Welcome to the simulated SUT")
        self.write_status(status="running")
        try:
            for module in self.s.modules:
                await self.run_module(module)
        except Crash:
            _log("backend process died: QEMU exited unexpectedly", "error")
            self.write_base_state("backend", "QEMU exited unexpectedly")
            self.stop_qemu()
            return 1
        self.write_status(status="finished", current_test="")
        await self.broadcast({"stopping_test_execution": "test execution ended"})
        await self.write_outputs()
        self.stop_qemu()
        _log(f"isotovideo done, exit code {self.s.exit_code}", "info")
        return self.s.exit_code

    async def run_module(self, module: str) -> None:
        s = self.s
        self.current_full_name = f"{CATEGORY}-{module}"
        self.write_status(current_test=module)
        await self.broadcast({"set_current_test": module, "current_test_full_name": self.current_full_name})
        _log(f"||| starting {module} tests/{CATEGORY}/{module}.pm")
        self.serial(f"{module}: started")
        if module == s.hang:
            _log(f"{module}: simulated hang, no more progress", "warn")
            await asyncio.Event().wait()
        if module in (s.pause, self.pause_at):
            await self.pause()
        step = s.module_seconds / (s.screenshots + 1)
        loop = asyncio.get_running_loop()
        start = loop.time()  # sleep to deadlines: screenshot encoding time is part of the module time
        details: list[dict[str, Any]] = []
        for n in range(1, s.screenshots + 1):
            await asyncio.sleep(max(0.0, start + n * step - loop.time()))
            if module == s.crash and n > s.screenshots // 2:
                raise Crash
            ok = not (module == s.fail and n == s.screenshots)
            await self.screenshot(module, n, details, ok)
        await asyncio.sleep(max(0.0, start + s.module_seconds - loop.time()))
        if module == s.crash:
            raise Crash
        result = "fail" if module == s.fail else "softfail" if module == s.softfail else "ok"
        text = f"{module}-{s.screenshots + 1}.txt"
        (self.results / text).write_text(f"simulated output of {module}\nresult: {result}\n")
        details.append({"text": text, "title": "Soft Failed" if result == "softfail" else f"{module} output",
                        "result": "softfail" if result == "softfail" else "ok"})
        write_json_atomic(self.results / f"result-{module}.json", {
            "details": details, "result": result, "dents": 0, "execution_time": round(loop.time() - start)})
        _log(f"||| finished {module} {CATEGORY} ({result})")
        self.serial(f"{module}: {result}")

    async def screenshot(self, module: str, n: int, details: list[dict[str, Any]], ok: bool) -> None:
        name = f"{module}-{n}.png"
        w, h = self.s.size
        seed = zlib.crc32(name.encode())  # same screen in every job, like real tests
        await asyncio.to_thread(self._write_png, name, w, h, seed)
        details.append({"screenshot": name, "result": "ok" if ok else "fail",
                        "title": f"{module} step {n}", "frametime": [f"{n:.2f}", f"{n + 0.04:.2f}"]})
        self.serial(f"{module}: screen {n}")
        _log(f"<<< testapi::assert_screen(mustmatch=\"{module}-{n}\") -> {'ok' if ok else 'no match'}")

    def _write_png(self, name: str, w: int, h: int, seed: int) -> None:
        write_atomic(self.results / name, screenshot_png(w, h, seed, level=1))
        write_atomic(self.results / ".thumbs" / name, screenshot_png(max(1, w // 8), max(1, h // 8), seed))

    async def pause(self) -> None:
        _log(f"isotovideo: pausing test execution ({PAUSE_REASON})")
        self._resume.clear()
        self.write_status(test_execution_paused=PAUSE_REASON)
        await self.broadcast({"paused": 1, "reason": PAUSE_REASON})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.s.pause_seconds):
                await self._resume.wait()
        self.write_status(test_execution_paused=0)
        await self.broadcast({"resume_test_execution": None})
        _log("isotovideo: test execution resumed")

    async def write_outputs(self) -> None:
        with (self.pool / "video.ogv").open("wb") as fh:
            fh.write(b"OggS\0" + os.urandom(4096))
        if self.s.ulog:
            ulogs = self.pool / "ulogs"
            ulogs.mkdir(exist_ok=True)
            (ulogs / "simulator-journal.txt").write_text("simulated journal\n" * 50)
        for target, name in self.s.assets:
            (self.pool / target).mkdir(exist_ok=True)
            _log(f"storing asset {target}/{name} ({self.s.asset_size} bytes)")
            await asyncio.to_thread(write_sized_file, self.pool / target / name, self.s.asset_size)


def spawn_orphan() -> None:
    """Double fork: a grandchild in its own session that outlives us (like an escaped QEMU helper)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "3600"])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


async def _amain(sim: Simulator) -> int:
    loop = asyncio.get_running_loop()
    got_signal: asyncio.Future[str] = loop.create_future()
    signals = [signal.SIGINT, signal.SIGHUP] + ([] if sim.s.ignore_sigterm else [signal.SIGTERM])
    for sig in signals:
        loop.add_signal_handler(sig, lambda s=sig: got_signal.done() or got_signal.set_result(s.name[3:]))
    main = asyncio.ensure_future(sim.run())
    try:
        await asyncio.wait([main, got_signal], return_when=asyncio.FIRST_COMPLETED)
        if got_signal.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await main
            name = got_signal.result()
            _log(f"isotovideo received signal {name}", "info")
            sim.write_base_state("isotovideo", f"isotovideo received signal {name}")
            sim.stop_qemu()
            return 1
        return main.result()
    finally:
        await sim.stop_server()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--version" in args or "-v" in args:
        print(f"Current version is simulator [interface v{INTERFACE_VERSION}]")
        return 0
    pool = Path.cwd()
    try:
        vars_ = json.loads((pool / "vars.json").read_text())
    except (OSError, ValueError) as exc:
        _log(f"cannot read vars.json: {exc}", "warn")
        vars_ = {}
    vars_ = {str(k): str(v) for k, v in vars_.items()} if isinstance(vars_, dict) else {}
    settings = SimSettings.load(vars_, dict(os.environ))
    sim = Simulator(pool, vars_, settings)
    sim.write_status()  # "initial", right away
    _log(f"simulator starting (interface v{INTERFACE_VERSION}) in {pool}", "info")
    if settings.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if settings.orphan:
        spawn_orphan()
    return asyncio.run(_amain(sim))


if __name__ == "__main__":
    sys.exit(main())
