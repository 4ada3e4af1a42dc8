"""The dashboard's cache view (c): usage and counters, every download in flight, the jobs waiting on them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from app.tui import ViewScreen
from backend.state import WorkerView
from widgets.cache import downloads_text, overview_text, waiting_text
from widgets.footer import KeyFooter
from widgets.format import tidy


class CacheScreen(ViewScreen):
    BINDINGS = [Binding("escape,c", "app.pop_screen", "Back")]

    def __init__(self) -> None:
        super().__init__(id="cache-screen")

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="cache-full"):
            yield Label("Asset cache", classes="screen-title")
            yield Static(id="cache-overview", classes="cache-section")
            yield Static(id="cache-text", classes="cache-section")
            yield Static(id="cache-waiting", classes="cache-section")
        yield KeyFooter()

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        width = max(40, self.size.width - 6)  # padding and scrollbar
        self.query_one("#cache-overview", Static).update(tidy(overview_text(view.cache, width)))
        self.query_one("#cache-text", Static).update(tidy(downloads_text(view.cache, width)))
        waiting = self.query_one("#cache-waiting", Static)
        waiting.display = view.cache.enabled
        waiting.update(tidy(waiting_text(view, width)))
