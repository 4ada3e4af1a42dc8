"""The dashboard of a worker in another process (``qaworker attach``): QaworkerApp over a RemoteRuntime.

The differences from the in-process dashboard: ``q`` (and Ctrl+C, Ctrl+Q, SIGTERM, a lost terminal)
detaches and leaves the worker running; ``Q`` / the palette's "Stop the worker" asks and then stops
the worker itself; a bar on top says where we are attached, or that the worker went away and that
we re-attach when it is back.
"""

from __future__ import annotations

import logging
from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from app.tui import DashboardScreen, QaworkerApp
from backend.control.client import RemoteRuntime
from backend.state import WorkerView
from widgets.attachbar import AttachBar
from widgets.dialogs import ConfirmScreen, QuitScreen

log = logging.getLogger("qaworker.attach")

_PALETTE = (
    ("Detach: leave the worker running", "detach", "Close this dashboard; the worker goes on"),
    ("Stop the worker", "stop_worker", "Quit the worker itself (asks first)"),
)


class AttachCommands(Provider):
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


class AttachedDashboard(DashboardScreen):
    def compose(self) -> ComposeResult:
        yield AttachBar(id="attach-bar")
        yield from super().compose()

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        super().show_view(view, now, selected)
        runtime = self.app.runtime  # type: ignore[attr-defined]
        self.query_one(AttachBar).show(runtime.link, now)


class AttachApp(QaworkerApp):
    TITLE = "qaworker attach"
    COMMANDS = QaworkerApp.COMMANDS | {AttachCommands}
    BINDINGS = [
        Binding("q", "detach", "Detach"),
        Binding("Q", "stop_worker", "Stop worker"),
        Binding("ctrl+c", "detach", "Detach", show=False, priority=True),
        Binding("ctrl+q", "detach", "Detach", show=False, priority=True),
    ]
    _DIALOG_ACTIONS = QaworkerApp._DIALOG_ACTIONS | {"stop_worker"}

    runtime: RemoteRuntime

    def get_default_screen(self) -> Screen:
        return AttachedDashboard(id="dashboard")

    def action_detach(self) -> None:
        self.runtime.detach()  # wait_stopped() returns: the app exits, the worker goes on

    def action_request_quit(self) -> None:  # the in-process dashboard's "quit" is "leave" here
        self.action_detach()

    def _on_sigterm(self) -> None:
        self.action_detach()

    def _on_sighup(self) -> None:
        self.action_detach()

    def _on_sigusr2(self) -> None:  # the hand-over signal is the worker's; here it only detaches
        self.action_detach()

    def _terminal_lost(self) -> None:
        self.runtime.detach()
        super()._terminal_lost()

    def action_stop_worker(self) -> None:
        if isinstance(self.screen, QuitScreen | ConfirmScreen):
            return
        view = self.runtime.view
        if view.stopping == "quit":
            self.notify("the worker is already stopping", severity="warning")
            return
        running = view.running_jobs

        def chosen(choice: str | bool | None) -> None:
            if choice in ("quit", True):
                self._command("quit", self.runtime.quit)
            elif choice == "drain":
                self._command("drain", self.runtime.drain)

        if running:
            self.push_screen(QuitScreen(running), chosen)
        else:
            self.push_screen(ConfirmScreen("Stop the worker?", "No job is running. The worker process exits; "
                                           "under systemd it stays stopped until started again.", "Stop the worker",
                                           danger=True), chosen)

    async def _wait_stopped(self) -> None:
        code = await self.runtime.wait_stopped()
        if self.runtime.link.state == "failed":
            self.exit(code, return_code=code, message=self.runtime.link.reason)
        else:
            self.exit(code, return_code=code)
