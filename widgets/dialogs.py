"""Modal dialogs: yes/no confirmation, the quit choice and the help screen."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

# The buttons of a dialog sit in a row: Left / Right move between them like Shift+Tab / Tab.
ROW_KEYS = [Binding("left", "app.focus_previous", "Previous button", show=False),
            Binding("right", "app.focus_next", "Next button", show=False)]


class ConfirmScreen(ModalScreen[bool]):
    """Ask one question; dismisses with True (confirm) or False (cancel / escape)."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("y", "confirm", "Confirm"), *ROW_KEYS]

    def __init__(self, title: str, question: str, confirm_label: str = "Yes", *,
                 danger: bool = False) -> None:
        super().__init__(classes="dialog-screen")
        self._dlg_title, self._dlg_question = title, question
        self._dlg_confirm, self._dlg_danger = confirm_label, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._dlg_title, classes="dialog-title")
            yield Static(self._dlg_question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                variant = "error" if self._dlg_danger else "primary"
                yield Button(self._dlg_confirm, id="confirm", variant=variant)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # the safe choice is the default

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class QuitScreen(ModalScreen[str]):
    """Jobs are running: quit now, drain, or cancel. Dismisses with "quit", "drain" or ""."""

    BINDINGS = [Binding("escape", "choose('')", "Cancel"), Binding("q", "choose('quit')", "Quit now"),
                Binding("d", "choose('drain')", "Drain"), *ROW_KEYS]

    def __init__(self, running: int) -> None:
        super().__init__(classes="dialog-screen")
        self._jobs_running = running

    def compose(self) -> ComposeResult:
        n = self._jobs_running
        with Vertical(classes="dialog"):
            yield Label("Quit qaworker?", classes="dialog-title")
            yield Static(f"{n} job{'s' if n != 1 else ''} running — quit now (jobs end incomplete) or drain "
                         "(take no new jobs, exit when the running ones are done)?", classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Quit now", id="quit", variant="error")
                yield Button("Drain", id="drain", variant="warning")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss("" if event.button.id == "cancel" else str(event.button.id))


HELP_TEXT = """\
[b]qaworker dashboard: keys[/b]

[b]↑ ↓[/b] / mouse  select a slot
[b]enter[/b]       full detail of the slot: modules, log, upload
[b]l[/b]           follow the log tail (auto-scroll on/off)
[b]c[/b]           cache: usage, downloads, the jobs waiting
[b]h[/b]           job history ([b]s[/b] / [b]r[/b] filter slot / result, [b]enter[/b] details)
[b]a[/b]           abort the slot's job (asks; it ends incomplete)
[b]d[/b]           drain: no new jobs, exit after the running ones
[b]q[/b] [b]ctrl+c[/b] [b]ctrl+q[/b]  quit (asks: quit now or drain, if jobs run)
[b]ctrl+p[/b]      command palette: all of the above
[b]?[/b]           this help; [b]escape[/b] closes a screen

[b]Signals[/b]: SIGTERM/SIGINT quit now, SIGHUP drains (as the classic
worker). Without a terminal the worker goes on headless.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):  # scrolls (↑ ↓ pgup pgdn) if it ever does not fit
            yield Static(HELP_TEXT.rstrip(), classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
