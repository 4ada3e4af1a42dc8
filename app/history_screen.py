"""The dashboard's job history screen (h): every finished job, filterable, enter for details."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from app.tui import ViewScreen
from backend.history import select
from backend.state import WorkerView
from widgets.footer import KeyFooter
from widgets.format import tidy
from widgets.history import HistoryDetailScreen, HistoryTable, cycle, filter_text


class HistoryScreen(ViewScreen):
    BINDINGS = [
        Binding("escape,h", "app.pop_screen", "Back"),
        Binding("s", "cycle_slot", "Slot filter"),
        Binding("r", "cycle_result", "Result filter"),
        Binding("x", "clear_filters", "Clear filters"),
    ]

    def __init__(self, instance: int | None = None) -> None:
        super().__init__(id="history")
        self.instance: int | None = instance
        self.result: str | None = None
        self._last: tuple[WorkerView, float] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="history-filters")
        yield HistoryTable(id="history-table")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(HistoryTable).focus()

    def _entries(self) -> list:
        history = getattr(self.app.runtime, "history", None)  # type: ignore[attr-defined]
        return history.entries() if history is not None else []

    def show_view(self, view: WorkerView, now: float, selected: int | None) -> None:
        self._last = (view, now)
        entries = self._entries()
        shown = select(entries, instance=self.instance, result=self.result)
        self.query_one("#history-filters", Static).update(
            tidy(filter_text(self.instance, self.result, len(shown), len(entries))))
        self.query_one(HistoryTable).show(entries, now, instance=self.instance, result=self.result)

    def _refresh(self) -> None:
        if self._last is not None:
            view, now = self._last
            self.show_view(view, now, None)

    def action_cycle_slot(self) -> None:
        self.instance = cycle(self.instance, sorted({e.instance for e in self._entries()}))  # type: ignore[assignment]
        self._refresh()

    def action_cycle_result(self) -> None:
        self.result = cycle(self.result, sorted({e.result for e in self._entries()}))  # type: ignore[assignment]
        self._refresh()

    def action_clear_filters(self) -> None:
        self.instance = self.result = None
        self._refresh()

    def on_history_table_opened(self, message: HistoryTable.Opened) -> None:
        self.app.push_screen(HistoryDetailScreen(message.entry))
