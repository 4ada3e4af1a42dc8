"""The job history: a filterable table of finished jobs, their details, and a slot's recent jobs.

Entries are backend.history.HistoryEntry values (newest last, as the runtime's ``history`` keeps
them); everything here shows them newest first.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from backend.history import HistoryEntry, select
from widgets.format import human_duration, result_text, tidy, truncate, truncate_middle
from widgets.sparkline import durations_text

# (key, label); widths per layout below
_LABELS: dict[str, str] = {"when": "Finished", "slot": "Slot", "job": "Job", "result": "Result", "took": "Took",
                           "reason": "Reason", "link": "Web UI"}
# (terminal width from which it is used, {column: width}) — widest first
_LAYOUTS: tuple[tuple[int, dict[str, int]], ...] = (
    (160, {"when": 10, "slot": 4, "job": 42, "result": 18, "took": 8, "reason": 26, "link": 34}),
    (120, {"when": 10, "slot": 4, "job": 34, "result": 18, "took": 8, "reason": 18, "link": 30}),
    (0, {"when": 10, "slot": 4, "job": 28, "result": 16, "took": 8}),
)


def layout_for(width: int) -> dict[str, int]:
    return next(columns for minimum, columns in _LAYOUTS if width >= minimum)


def ago(seconds: float) -> str:
    """'42 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def link_text(url: str, width: int | None = None) -> Text:
    """The URL (without its scheme when short of room), clickable where the terminal has hyperlinks (OSC 8)."""
    if not url:
        return Text("—", style="dim")
    shown = url.split("://", 1)[-1] if width else url
    return Text(truncate_middle(shown, width) if width else shown, style=f"underline link {url}")


def entry_key(entry: HistoryEntry) -> str:
    return f"{entry.host}\t{entry.job_id}\t{entry.finished_at}"


class HistoryTable(DataTable):
    """Finished jobs, newest first, filtered by slot and result."""

    class Opened(Message):
        def __init__(self, entry: HistoryEntry) -> None:
            self.entry = entry
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._entries: dict[str, HistoryEntry] = {}
        self._shown: list[str] = []
        self._layout: dict[str, int] = {}

    def show(self, entries: Sequence[HistoryEntry], now: float, *, instance: int | None = None,
             result: str | None = None) -> None:
        picked = select(entries, instance=instance, result=result)
        keys = [entry_key(e) for e in picked]
        self._entries = dict(zip(keys, picked, strict=True))
        layout = layout_for(self.app.size.width)
        if layout != self._layout:
            self.clear(columns=True)
            self._layout, self._shown = layout, []
            for key, width in layout.items():
                self.add_column(_LABELS[key], key=key, width=width)
        if keys != self._shown:  # rebuild only when rows came or went; keep the cursor on its job
            current = self.selected_key
            self.clear()
            for key, entry in zip(keys, picked, strict=True):
                self.add_row(*self._cells(entry, now), key=key)
            self._shown = keys
            if current in keys:
                self.move_cursor(row=keys.index(current), animate=False)
        else:
            for key, entry in zip(keys, picked, strict=True):
                self.update_cell(key, "when", ago(now - entry.finished_at))

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    @property
    def selected(self) -> HistoryEntry | None:
        key = self.selected_key
        return self._entries.get(key) if key is not None else None

    def _cells(self, entry: HistoryEntry, now: float) -> tuple:
        width = self._layout
        job = Text.assemble((f"#{entry.job_id} ", "bold"))
        job.append(truncate_middle(entry.name or "(not started)", width["job"] - len(job)))
        cells: dict[str, object] = {
            "when": ago(now - entry.finished_at), "slot": str(entry.instance), "job": tidy(job),
            "result": tidy(result_text(entry.result)),
            "took": human_duration(entry.duration) if entry.duration else "–"}
        if "reason" in width:
            cells["reason"] = Text(truncate(entry.reason, width["reason"]), style="dim") if entry.reason else Text("")
        if "link" in width:
            cells["link"] = link_text(entry.url, width["link"])
        return tuple(cells[key] for key in width)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        entry = self._entries.get(event.row_key.value) if event.row_key.value is not None else None
        if entry is not None:
            event.stop()
            self.post_message(self.Opened(entry))


def filter_text(instance: int | None, result: str | None, shown: int, total: int) -> Text:
    text = Text.assemble(("Job history ", "bold"))
    text.append(f"· {shown} of {total} jobs", style="dim")
    text.append("  slot: ")
    text.append("all" if instance is None else str(instance), style="bold cyan")
    text.append(" [s]", style="dim")
    text.append("  result: ")
    text.append("all" if result is None else result, style="bold cyan")
    text.append(" [r]", style="dim")
    text.append("  · enter details · x clear filters · escape back", style="dim")
    return text


def cycle(current, options: Sequence) -> object:
    """None → first → … → last → None."""
    values = [None, *options]
    return values[(values.index(current) + 1) % len(values)] if current in values else None


def detail_text(entry: HistoryEntry) -> Text:
    import datetime as dt

    def stamp(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "–"

    text = Text.assemble((f"#{entry.job_id} ", "bold"))
    text.append(entry.name or "(never started)")
    rows = [("result", result_text(entry.result)),
            ("reason", Text(entry.reason or "—", style="" if entry.reason else "dim")),
            ("slot", Text(str(entry.instance))),
            ("web UI", Text(entry.host or "—")),
            ("started", Text(stamp(entry.started_at))),
            ("finished", Text(stamp(entry.finished_at))),
            ("took", Text(human_duration(entry.duration) if entry.duration else "–")),
            ("stopped by", Text(entry.stop_reason or "—", style="dim")),
            ("link", link_text(entry.url))]
    for label, value in rows:
        text.append(f"\n{label:>11}  ", style="dim")
        text.append_text(value)
    return text


class HistoryDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, entry: HistoryEntry) -> None:
        super().__init__(classes="dialog-screen")
        self.entry = entry

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Finished job", classes="dialog-title")
            yield Static(tidy(detail_text(self.entry)), classes="dialog-text", id="history-detail")
            yield Button("Close", id="close")

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


def slot_history_text(entries: Sequence[HistoryEntry], instance: int, now: float, limit: int = 12,
                      spark_width: int = 30) -> Text:
    """What an idle or broken slot shows instead of empty boxes: its recent jobs and their durations."""
    mine = select(entries, instance=instance)
    if not mine:
        return Text(f"no job of slot {instance} in the job history yet", style="dim")
    oldest_first = list(reversed(mine[:spark_width]))
    text = Text.assemble(("recent durations ", "dim"))
    text.append_text(durations_text([e.duration for e in oldest_first], [e.result for e in oldest_first],
                                    spark_width))
    longest = max(e.duration for e in oldest_first)
    text.append(f"  (longest {human_duration(longest)})", style="dim")
    for entry in mine[:limit]:
        line = Text("\n")
        line.append_text(result_text(entry.result))
        line.pad_right(max(0, 17 - len(line.plain)))
        line.append(f" #{entry.job_id} ", style="bold")
        line.append(truncate_middle(entry.name or "(not started)", 50))
        line.append(f"  {human_duration(entry.duration) if entry.duration else '–'}")
        line.append(f"  {ago(now - entry.finished_at)}", style="dim")
        if entry.reason:
            line.append(f"  {truncate(entry.reason, 60)}", style="dim")
        text.append_text(line)
    if len(mine) > limit:
        text.append(f"\n… {len(mine) - limit} more — press h for the job history", style="dim")
    return text


class SlotHistory(VerticalScroll):
    """Recent jobs of the selected slot (shown while it runs none)."""

    SCOPED_CSS = False  # the rules below hide the slot detail's module/log boxes
    DEFAULT_CSS = """
    SlotHistory { height: 1fr; border: round $primary-darken-2; border-title-color: $text-muted; padding: 0 1;
                  display: none; }
    SlotDetail.idle SlotHistory { display: block; }
    SlotDetail.idle .detail-body { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="slot-history-text")

    def show(self, entries: Sequence[HistoryEntry], instance: int, now: float) -> None:
        self.border_title = f"recent jobs · slot {instance}"
        self.query_one("#slot-history-text", Static).update(tidy(slot_history_text(entries, instance, now)))
