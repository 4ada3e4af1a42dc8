"""The slot table: one row per worker instance with its job, module, progress and time."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from backend.events import SlotState
from backend.state import SlotView, WorkerView
from widgets.format import SLOT_STYLE, bar, human_duration, slot_state_text, tidy, truncate, truncate_middle
from widgets.links import SlotLink, hosts_of, slot_link
from widgets.sparkline import SlotSparks

# (key, label, wide width, narrow width)
_COLUMNS: tuple[tuple[str, str, int, int], ...] = (
    ("slot", "Slot", 4, 4),
    ("state", "State", 18, 12),
    ("job", "Job", 34, 20),
    ("module", "Module", 18, 12),
    ("progress", "Modules", 15, 9),
    ("time", "Elapsed / max", 15, 7),
    ("recent", "Recent", 14, 0),  # ≥ RECENT_WIDTH columns: recent job durations, or upload throughput
)


RECENT_WIDTH = 140  # the terminal width from which the "Recent" sparkline column fits
# A wider terminal goes to the job name first (openQA names run to ~100 characters), then the module.
JOB_MAX, MODULE_MAX = 100, 36


def column_widths(width: int, narrow: bool, recent: bool, job_need: int = 0, module_need: int = 0) -> dict[str, int]:
    """Each column's width for a terminal ``width`` wide: the base widths, then what is left over goes
    to what the job names need, then to what the modules need, then to the job column again."""
    columns = [c for c in _COLUMNS if c[0] != "recent" or recent]
    widths = {key: (small if narrow else wide) for key, _label, wide, small in columns}
    spare = width - 2 - sum(widths.values()) - 2 * len(columns)  # cell padding; a scrollbar's room
    for key, need in (("job", job_need), ("module", module_need), ("job", JOB_MAX)):
        cap = JOB_MAX if key == "job" else MODULE_MAX
        extra = max(0, min(spare, min(need, cap) - widths[key]))
        widths[key] += extra
        spare -= extra
    return widths


def _needs(view: WorkerView) -> tuple[int, int]:
    """How wide the job and module cells would like to be (rounded up: fewer column rebuilds)."""
    jobs = [s.job for s in view.slots.values() if s.job is not None]
    job = max((len(f"#{j.job_id} {j.name}") for j in jobs), default=0)
    module = max((len(j.current_module) + 2 for j in jobs), default=0)
    return -(-job // 4) * 4, -(-module // 4) * 4


class SlotTable(DataTable):
    """A DataTable kept in sync with ``WorkerView.slots``; rows are keyed by instance number."""

    class Selected(Message):
        """The highlighted slot changed."""

        def __init__(self, instance: int) -> None:
            self.instance = instance
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._narrow: bool | None = None
        self._recent = False
        self._widths: dict[str, int] = {}
        self._sparks = SlotSparks()
        self._history: list = []

    @property
    def selected_instance(self) -> int | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def _set_columns(self, narrow: bool, view: WorkerView) -> None:
        width = self.app.size.width
        recent = not narrow and width >= RECENT_WIDTH
        widths = column_widths(width, narrow, recent, *_needs(view))
        if (narrow, recent, widths) == (self._narrow, self._recent, self._widths):
            return
        self._narrow, self._recent, self._widths = narrow, recent, widths
        self.clear(columns=True)
        for key, label, _wide, _small in self._columns():
            self.add_column(label, key=key, width=widths[key])

    def _columns(self) -> tuple[tuple[str, str, int, int], ...]:
        return tuple(c for c in _COLUMNS if c[0] != "recent" or self._recent)

    def _cells(self, slot: SlotView, now: float, link: SlotLink | None = None) -> tuple[Text | str, ...]:
        narrow = bool(self._narrow)
        state = slot_state_text(slot.state)
        job = slot.job
        if job is None:
            last = slot.last_finished
            if link is not None and slot.state is SlotState.IDLE:  # idle, but no web UI can give it a job
                state = link.state_text()
                job_cell = Text(truncate(link.reason, self._widths["job"]), style=link.style)
            elif slot.reason:  # broken / offline: the reason matters more than history
                style = SLOT_STYLE.get(slot.state, "")
                job_cell = Text(truncate(slot.reason, self._widths["job"]), style=style)
            elif last:
                job_cell = Text(f"last #{last.job_id} {last.result}", style="dim")
            else:
                job_cell = Text("—", style="dim")
            return (str(slot.instance), state, job_cell, "", "", "")
        if job.developer_session:
            state.append(" DEV", style="bold reverse red")
        job_cell = Text(f"#{job.job_id} ", style="bold")
        job_cell.append(truncate_middle(job.name, self._widths["job"] - len(job_cell)))
        current = job.current_module or (slot.reason if slot.state is not SlotState.RUNNING else "") or "—"
        room = self._widths["module"] - (2 if job.paused else 0)
        module = Text(truncate(current, room),
                      style="" if job.current_module else "dim")
        if job.paused:
            module.append(" ‖", style="bold yellow")
        total = len(job.modules)
        done = job.modules_done
        failed = any(m.result == "failed" for m in job.modules)
        progress = Text(bar(done, total, 3 if narrow else 8), style="red" if failed else "green")
        progress.append(f" {done}/{total}" if total else " –")
        elapsed = now - job.started_at
        over = job.max_job_time and elapsed > 0.9 * job.max_job_time
        time_cell = Text(human_duration(elapsed), style="bold red" if over else "")
        if not narrow:
            time_cell.append(f" / {human_duration(job.max_job_time)}", style="dim")
        return (str(slot.instance), state, job_cell, module, progress, time_cell)

    def show(self, view: WorkerView, now: float, narrow: bool, history: list | None = None) -> None:
        self._set_columns(narrow, view)
        self._history = history or []
        wanted = [str(i) for i in sorted(view.slots)]
        existing = {str(k.value) for k in self.rows}
        for key in existing - set(wanted):
            self.remove_row(key)
        for key in wanted:
            slot = view.slots[int(key)]
            cells = self._cells(slot, now, slot_link(hosts_of(view, slot.instance), now))
            if self._recent:
                cells = (*cells, self._sparks.cell(slot, self._history, now))
            cells = tuple(tidy(c) if isinstance(c, Text) else c for c in cells)
            if key in existing:
                for (col, *_), value in zip(self._columns(), cells, strict=True):
                    self.update_cell(key, col, value)
            else:
                self.add_row(*cells, key=key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.post_message(self.Selected(int(event.row_key.value)))
