"""The Textual dashboard. The runtime (real Worker or a recorded/scripted one in tests) is injected;
the app only subscribes to ``runtime.bus`` and calls the runtime's small synchronous command API.

Data flow: the runtime folds every bus event into its read model (``runtime.view``, a synchronous
listener that never drops). The app's pump reads its own bounded subscription only to learn *that*
something changed (and to toast warnings): it marks the screen dirty, and a throttled render
(≤ 10×/s) draws everything from ``runtime.view`` in one ``batch_update()``. No Textual message per
bus event, so a burst of events costs one render, and the log tails read the view's bounded buffer
(in publish order, with a "lines dropped" marker if it overflowed between two renders).

If the pump raises, the dashboard says so and starts it again: it never freezes silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import termios
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from rich import _emoji_codes  # noqa: F401  rich imports its emoji table at the first markup, on the loop
from rich.console import RenderableType
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from backend import events as ev
from backend.api import Runtime
from backend.events import Subscription
from backend.state import WorkerView
from widgets.cache import CachePanel
from widgets.connection import ConnectionBar, StopBanner
from widgets.dialogs import ConfirmScreen, HelpScreen, QuitScreen
from widgets.footer import KeyFooter
from widgets.job import SlotDetail
from widgets.links import hosts_of
from widgets.logtail import LogTail
from widgets.slots import SlotTable

log = logging.getLogger(__name__)

RC_TERMINAL_LOST = 75  # EX_TEMPFAIL: the terminal went away; the caller goes on headless
RC_HAND_OVER = 76  # SIGUSR2: the terminal is given back, then the caller hands the jobs over (exit 75)
RENDER_INTERVAL = 0.1  # at most ~10 renders per second, however busy the bus is
NARROW_WIDTH = 120
TERMINAL_CHECK_INTERVAL = 2.0
PUMP_BATCH = 256  # events the pump handles before it lets the loop run other callbacks
PUMP_SUBSCRIPTION = 10_000  # the pump's bus queue; the view is complete even if it overflows
PUMP_RESTART_MAX_DELAY = 5.0  # a pump that fails on every event is restarted at most this often
# Frequent events nothing on the dashboard draws (the read model does not fold them; CacheQueue feeds
# /influxdb/minion): the pump skips them instead of scheduling a redraw that would change nothing.
NOT_DRAWN: tuple[type[ev.Event], ...] = (ev.CacheQueue,)
PUMP = "event-pump"
WAIT_STOPPED = "wait-stopped"


def terminal_alive() -> bool:
    """False once our controlling terminal is gone (SSH drop, closed window): not a tty, or EIO."""
    try:
        fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
        if fd < 0 or not os.isatty(fd):
            return False
        termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        return False
    return True


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker while sys.stderr is still the real one.

    Textual replaces sys.stderr with a capture whose fileno() is -1; the tracker, started lazily by
    the first process pool (the worker's image optimiser), passes that fd to its child and fails
    with "bad value(s) in fds_to_keep" — which would take the worker down with the dashboard on.
    """
    from multiprocessing import resource_tracker

    with contextlib.suppress(Exception):
        resource_tracker.ensure_running()


class ViewScreen(Screen):
    """A screen that shows part of the worker view; the app calls ``show_view`` on every render."""

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        raise NotImplementedError


class DashboardScreen(ViewScreen):
    """The main screen: connection bar, slot table, selected slot detail, cache panel."""

    def compose(self) -> ComposeResult:
        yield ConnectionBar(id="connection")
        yield StopBanner(id="banner")
        yield SlotTable(id="slots")
        yield SlotDetail(id="detail")
        yield CachePanel(id="cache")
        yield KeyFooter()

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        narrow = self.has_class("narrow")
        self.query_one(ConnectionBar).show(view, now)
        self.query_one(StopBanner).show(view)
        self.query_one(SlotTable).show(view, now, narrow, history_of(self.app))
        slot = view.slots.get(selected) if selected is not None else None
        self.query_one(SlotDetail).show(slot, now, history_of(self.app), screens_of(self.app),
                                        hosts_of(view, selected) if selected is not None else ())
        self.query_one(CachePanel).show(view.cache, 1 if narrow else 3, 30 if narrow else 50)


class DetailScreen(ViewScreen):
    """Full-screen detail of one slot (enter)."""

    BINDINGS = [Binding("escape,enter", "app.pop_screen", "Back")]

    def __init__(self, instance: int) -> None:
        super().__init__()
        self.instance = instance

    def compose(self) -> ComposeResult:
        yield SlotDetail(classes="full")
        yield KeyFooter()

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        self.query_one(SlotDetail).show(view.slots.get(self.instance), now, history_of(self.app),
                                        screens_of(self.app), hosts_of(view, self.instance))


def history_of(app: App) -> list:
    """The runtime's job history (newest last); empty for a runtime without one."""
    history = getattr(getattr(app, "runtime", None), "history", None)
    return history.entries() if history is not None else []


def screens_of(app: App) -> object:
    """Where the test screens come from (backend/screen.py, or over the control socket); None without."""
    return getattr(getattr(app, "runtime", None), "screens", None)


# (palette title, action, help)
_PALETTE: tuple[tuple[str, str, str], ...] = (
    ("Drain: stop after the current jobs", "drain", "Take no new jobs; exit when the running ones end"),
    ("Abort the selected job", "abort", "Stop the selected slot's job (asks first)"),
    ("Quit", "request_quit", "Quit now or drain when jobs are running"),
    ("Follow log: toggle auto-scroll", "toggle_follow", "Keep the log tail scrolled to the newest line"),
    ("Cache view", "cache", "Cache usage and downloads in flight"),
    ("Job history", "history", "Every finished job: filter by slot and result, open its details"),
    ("Slot detail", "detail", "Full-screen detail of the selected slot"),
    ("Help: keys and signals", "help", "What every key does"),
)


class QaworkerCommands(Provider):
    """The dashboard actions in the command palette (ctrl+p)."""

    def _run(self, action: str) -> None:
        getattr(self.app, f"action_{action}")()

    async def discover(self) -> Hits:
        for title, action, help_text in _PALETTE:
            yield DiscoveryHit(title, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in _PALETTE:
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=help_text)


class QaworkerApp(App[int]):
    """The dashboard. ``runtime`` implements backend.api.Runtime; ``clock`` is injectable for snapshots."""

    CSS_PATH = Path(__file__).with_name("qaworker.tcss")  # absolute: subclasses live elsewhere too
    TITLE = "qaworker"
    COMMANDS = App.COMMANDS | {QaworkerCommands}
    BINDINGS = [
        Binding("q", "request_quit", "Quit"),
        Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True),
        Binding("d", "drain", "Drain"),
        Binding("a", "abort", "Abort"),
        Binding("l", "toggle_follow", "Follow"),
        Binding("c", "cache", "Cache"),
        Binding("h", "history", "History"),
        Binding("enter", "detail", "Detail", show=False),
        Binding("question_mark", "help", "Help"),
    ]
    _DIALOG_ACTIONS = frozenset({"drain", "abort", "toggle_follow", "cache", "detail", "help", "history"})

    def __init__(self, runtime: Runtime, *, clock: Callable[[], float] = time.time,
                 terminal_check: Callable[[], bool] | None = None) -> None:
        super().__init__()
        start_resource_tracker()
        self.runtime = runtime
        self.clock = clock
        self.selected: int | None = None
        self._terminal_check = terminal_check
        self.terminal_check_interval = TERMINAL_CHECK_INTERVAL
        self._sub: Subscription | None = None
        self._signals: list[int] = []
        self._resume_guarded = False
        self._terminal_gone = False
        self._render_pending = False
        self._last_render = 0.0
        self._pump_failures = 0  # in a row; reset by the first event handled after a restart
        self._dropped_seen = 0
        self._render_error = ""

    def get_default_screen(self) -> Screen:
        return DashboardScreen(id="dashboard")

    @property
    def dashboard(self) -> DashboardScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    # ----- lifecycle -------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._sub = self.runtime.bus.subscribe(PUMP_SUBSCRIPTION)
        self._start_pump()
        self._start_wait_stopped()
        self._install_signal_handlers()
        self._guard_resume()
        self.set_interval(1.0, self._schedule_render, name="clock")  # uptime / elapsed / retry countdowns
        if self._terminal_check is not None or not self.is_headless:
            self.set_interval(self.terminal_check_interval, self._check_terminal, name="tty-watchdog")
        self._apply_width(self.size.width)
        self.call_after_refresh(self._render_now)

    def on_unmount(self) -> None:
        self._remove_signal_handlers()
        if self._resume_guarded:  # the driver is gone: a later SIGCONT must not revive it
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGCONT, signal.SIG_DFL)
        if self._sub is not None:
            self._sub.close()

    def _install_signal_handlers(self) -> None:
        # Textual's Linux driver handles none of these; without them SIGTERM would kill us mid-screen.
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGTERM: self._on_sigterm, signal.SIGINT: self._on_sigterm,
                    signal.SIGHUP: self._on_sighup, signal.SIGUSR2: self._on_sigusr2}
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler)
                self._signals.append(sig)
            except (NotImplementedError, RuntimeError, ValueError) as exc:  # not the main thread, or Windows
                log.debug("cannot handle %s: %s", sig, exc)

    def _guard_resume(self) -> None:
        """Let the driver re-enter application mode on SIGCONT only while the terminal is alive.

        A hangup (closed SSH session, ``tmux kill-session``) brings SIGCONT along with SIGHUP.
        Textual's driver answers SIGCONT by starting application mode again: on the dead terminal
        that starts a second writer thread whose queue fills up, and the app's shutdown then blocks
        the event loop for ever in ``WriterThread.stop()`` — the worker with it.
        """
        try:
            resume = signal.getsignal(signal.SIGCONT)  # the driver's handler, if it installed one
        except ValueError:  # not the main thread
            return
        if not callable(resume):
            return

        def on_sigcont(signum: int, frame: object) -> None:
            if self._alive():
                resume(signum, frame)  # type: ignore[arg-type]

        try:
            signal.signal(signal.SIGCONT, on_sigcont)
            self._resume_guarded = True
        except (ValueError, OSError) as exc:  # not the main thread
            log.debug("cannot guard SIGCONT: %s", exc)

    def _remove_signal_handlers(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for sig in self._signals:
            loop.remove_signal_handler(sig)
            if sig == signal.SIGHUP and self._terminal_gone:
                # Until app/run.py installs the worker's handlers again, a second hangup (they come
                # in pairs when a terminal closes) must not kill the worker we fall back to.
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._signals.clear()

    def _on_sigterm(self) -> None:
        log.info("SIGTERM/SIGINT: quitting")
        self._command("quit", self.runtime.quit)

    def _on_sigusr2(self) -> None:
        # Hand-over: leave the screen first (a bare exit would leave the terminal in application mode),
        # then app/run.py exits 75 with the jobs running on (backend.slot.adopthandover).
        log.info("SIGUSR2: leaving the dashboard for the hand-over")
        self.exit(RC_HAND_OVER, return_code=RC_HAND_OVER)

    def _on_sighup(self) -> None:
        # A hangup with a dead terminal is an SSH drop, not a request to drain: hand over to headless.
        if not self._alive():
            self._terminal_lost()
            return
        log.info("SIGHUP: draining")
        self._command("drain", self.runtime.drain)

    def _alive(self) -> bool:
        if self._terminal_check is not None:
            return self._terminal_check()
        return self.is_headless or terminal_alive()  # headless (tests, screenshots) has no terminal to lose

    def _check_terminal(self) -> None:
        if not self._alive():
            self._terminal_lost()

    def _terminal_lost(self) -> None:
        self._terminal_gone = True
        log.warning("terminal lost; leaving the dashboard (return code %d)", RC_TERMINAL_LOST)
        self.exit(RC_TERMINAL_LOST, return_code=RC_TERMINAL_LOST)

    def panic(self, *renderables: RenderableType) -> None:
        # The driver's input thread panics on EIO when the terminal vanishes: exit distinctly instead.
        if not self._alive():
            self._terminal_lost()
            return
        super().panic(*renderables)

    # ----- the pump: bus → dirty flag (+ toasts) → throttled render from the view ------------------

    def _start_pump(self) -> None:
        if self._sub is not None:
            self.run_worker(self._pump(self._sub), exit_on_error=False, group="events", name=PUMP)

    def _start_wait_stopped(self) -> None:
        self.run_worker(self._wait_stopped(), exit_on_error=False, group="lifetime", name=WAIT_STOPPED)

    async def _pump(self, sub: Subscription) -> None:
        handled = 0
        async for event in sub:
            self._report_dropped(sub)  # an int comparison: cheap enough for every event
            self.handle_event(event)
            self._pump_failures = 0
            handled += 1
            if handled % PUMP_BATCH == 0:
                await asyncio.sleep(0)  # a burst must not starve input and rendering

    def _report_dropped(self, sub: Subscription) -> None:
        """The bus dropped events for us (the app fell behind): the view is complete, toasts may be lost."""
        if sub.dropped > self._dropped_seen:
            missed, self._dropped_seen = sub.dropped - self._dropped_seen, sub.dropped
            log.warning("dashboard fell behind: %d events skipped", missed)
            self.notify(f"the dashboard fell behind: {missed} events skipped (the screen shows the current "
                        "state; warnings among them are in the log)", severity="warning", timeout=8)

    def handle_event(self, event: ev.Event) -> None:
        """One bus event: toast what needs attention, and mark the screen dirty (the view has the rest)."""
        if isinstance(event, NOT_DRAWN):
            return
        match event:
            case ev.Notice(level="warning" | "error"):
                where = f"slot {event.instance}: " if event.instance is not None else ""
                self.notify(where + event.message, severity="error" if event.level == "error" else "warning",
                            timeout=8, markup=False)
            case ev.JobFinished():
                # Good results show in the slot table ("last #N passed"); toasts for them would pile
                # up over the log on a busy worker, so only the bad ones get one.
                if event.result not in ("passed", "softfailed"):
                    reason = f" ({event.reason})" if event.reason else ""
                    self.notify(f"slot {event.instance}: job #{event.job_id} {event.result}{reason}",
                                severity="warning", timeout=6, markup=False)
            case ev.WorkerStopping():
                self.notify("draining: no new jobs" if event.mode == "drain" else "quitting: stopping jobs",
                            severity="warning")
        self._schedule_render()

    async def _wait_stopped(self) -> None:
        code = await self.runtime.wait_stopped()
        self.exit(code, return_code=code)

    def on_worker_state_changed(self, message: Worker.StateChanged) -> None:
        """A pump or the stop watcher raised: say so, log the traceback, and start it again."""
        worker = message.worker
        if message.state is not WorkerState.ERROR or worker.name not in (PUMP, WAIT_STOPPED):
            return
        error = worker.error
        log.error("dashboard %s failed; restarting it", worker.name, exc_info=error)
        if worker.name == WAIT_STOPPED:
            self.notify(f"dashboard: watching for the worker's stop failed ({error!r}); watching again",
                        severity="error", timeout=10, markup=False)
            self.set_timer(1.0, self._start_wait_stopped)
            return
        self._pump_failures += 1
        delay = min(PUMP_RESTART_MAX_DELAY, 0.25 * 2 ** (self._pump_failures - 1)) if self._pump_failures > 1 else 0
        again = "restarted" if not delay else f"restarting in {delay:g} s"
        self.notify(f"dashboard: the event pump failed ({error!r}); {again} — the screen may have missed "
                    "a notice, the state shown is current", severity="error", timeout=10, markup=False)
        self._schedule_render()  # the view is complete: redraw it even while the pump is down
        if delay:
            self.set_timer(delay, self._start_pump)
        else:
            self._start_pump()

    def _schedule_render(self) -> None:
        if self._render_pending:
            return
        self._render_pending = True
        wait = self._last_render + RENDER_INTERVAL - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._render_now)
        else:
            self.call_later(self._render_now)

    def _render_now(self) -> None:
        self._render_pending = False
        self._last_render = time.monotonic()
        view, now = self.runtime.view, self.clock()
        if self.selected not in view.slots:
            self.selected = min(view.slots) if view.slots else None
        try:
            with self.batch_update():
                for screen in self.screen_stack:
                    if isinstance(screen, ViewScreen) and screen.is_mounted:
                        screen.show_view(view, now, self.selected)
        except Exception as exc:  # a rendering bug must not take the worker's dashboard down
            log.exception("render failed")
            if repr(exc) != self._render_error:  # once per distinct error, not 10 toasts a second
                self._render_error = repr(exc)
                self.notify(f"dashboard: drawing the screen failed ({exc!r}); see the log", severity="error",
                            timeout=10, markup=False)
        else:
            self._render_error = ""

    def on_resize(self, event: events.Resize) -> None:
        self._apply_width(event.size.width)
        self._schedule_render()

    def _apply_width(self, width: int) -> None:
        self.dashboard.set_class(width < NARROW_WIDTH, "narrow")
        self.set_class(width < NARROW_WIDTH, "narrow")  # for the other screens (full detail, cache, history)

    @on(SlotTable.Selected)
    def _slot_selected(self, message: SlotTable.Selected) -> None:
        if message.instance != self.selected:
            self.selected = message.instance
            self._schedule_render()

    @on(SlotTable.RowSelected)
    def _row_entered(self) -> None:
        self.action_detail()

    # ----- commands --------------------------------------------------------------------------------

    def _command(self, name: str, func: Callable[..., object], *args: object) -> object:
        """Call a runtime command; an error becomes a notification, never a crash."""
        try:
            return func(*args)
        except Exception as exc:
            log.exception("command %s failed", name)
            self.notify(f"{name} failed: {exc}", severity="error", timeout=10)
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With a dialog open its keys win; the dashboard's other keys must not stack more dialogs.
        if action in self._DIALOG_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        return True

    def _running_jobs(self) -> int:
        return self.runtime.view.running_jobs

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Quit" would exit without asking while jobs run; the palette has ours.
        return (command for command in super().get_system_commands(screen) if command.callback != self.action_quit)

    async def action_quit(self) -> None:
        """Every way out (Textual's own quit action included) asks like ``q`` while jobs run."""
        self.action_request_quit()

    def action_request_quit(self) -> None:
        if isinstance(self.screen, QuitScreen):
            return
        view = self.runtime.view
        if view.stopping == "quit":
            self.notify("already quitting — waiting for the jobs to stop", severity="warning")
            return
        running = self._running_jobs()
        if running == 0:
            self._command("quit", self.runtime.quit)
            return

        def chosen(choice: str | None) -> None:
            if choice == "quit":
                self._command("quit", self.runtime.quit)
            elif choice == "drain":
                self._drain_now()

        self.push_screen(QuitScreen(running), chosen)

    def _drain_now(self) -> None:
        if self.runtime.view.stopping:
            self.notify(f"already {'draining' if self.runtime.view.stopping == 'drain' else 'quitting'}")
            return
        self._command("drain", self.runtime.drain)

    def action_drain(self) -> None:
        if self.runtime.view.stopping:
            self._drain_now()
            return
        running = self._running_jobs()
        question = (f"Take no new jobs and exit after the {running} running job{'s' if running != 1 else ''}?"
                    if running else "No job is running: the worker will exit now.")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._drain_now()

        self.push_screen(ConfirmScreen("Drain this worker?", question, "Drain"), confirmed)

    def action_abort(self) -> None:
        instance = self.selected
        slot = self.runtime.view.slots.get(instance) if instance is not None else None
        if slot is None or slot.job is None:
            what = f"slot {instance} has no job to abort" if instance is not None else "no slot selected"
            self.notify(what, severity="warning")
            return
        job = slot.job
        question = (f"Abort job #{job.job_id} {job.name} on slot {instance}? "
                    "It stops now and ends incomplete.")
        if job.developer_session:
            question += "\nA developer session is open on this job!"

        job_id = job.job_id  # the dialog asks about this job: a later one on the slot must not be hit

        def confirmed(yes: bool | None) -> None:
            if yes and instance is not None:
                if self._command(f"abort slot {instance}", self.runtime.abort_job, instance, job_id) is False:
                    self.notify(f"job #{job_id} no longer runs on slot {instance}: nothing aborted",
                                severity="warning")

        self.push_screen(ConfirmScreen("Abort job?", question, "Abort job", danger=True), confirmed)

    def action_toggle_follow(self) -> None:
        tails = list(self.screen.query(LogTail))
        for tail in tails:
            on_ = tail.toggle_follow()
            self.notify(f"log follow {'on' if on_ else 'off'}", timeout=2)

    def action_cache(self) -> None:
        from app.cache_screen import CacheScreen

        if isinstance(self.screen, CacheScreen):
            self.pop_screen()
            return
        self.push_screen(CacheScreen())
        self.call_after_refresh(self._render_now)

    def action_detail(self) -> None:
        if self.selected is None or isinstance(self.screen, DetailScreen):
            return
        self.push_screen(DetailScreen(self.selected))
        self.call_after_refresh(self._render_now)

    def action_history(self) -> None:
        from app.history_screen import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            self.pop_screen()
            return
        self.push_screen(HistoryScreen())
        self.call_after_refresh(self._render_now)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

