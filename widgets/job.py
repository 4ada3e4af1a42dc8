"""The selected slot's detail: job summary, pause and upload state, developer session, modules, log tail."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from backend.events import SlotState
from backend.state import HostView, JobView, SlotView
from widgets.format import (
    RESULT_ICON,
    RESULT_STYLE,
    bar,
    human_bytes,
    human_duration,
    pause_reason,
    plural,
    result_text,
    slot_state_text,
    tidy,
    truncate,
)
from widgets.history import SlotHistory
from widgets.links import SlotLink, slot_link
from widgets.logtail import LogTail
from widgets.screen import ScreenPanel


def upload_text(job: JobView) -> Text | None:
    up = job.upload
    if not (up.files_total or up.bytes_total or up.current_file or up.last_error):
        return None
    if up.files_total and up.files_done >= up.files_total and not up.optipng_queue and not up.last_error:
        # between rounds: what was sent so far, without a stale "current file"
        size = f", {human_bytes(up.bytes_done)}" if up.bytes_done else ""
        return Text(f"⇪ uploaded {plural(up.files_done, 'file')}{size}", style="dim blue")
    text = Text("⇪ upload ", style="bold blue")
    text.append(bar(up.bytes_done or up.files_done, up.bytes_total or up.files_total, 12), style="blue")
    text.append(f" {up.files_done}/{plural(up.files_total, 'file')}")
    if up.bytes_total:
        text.append(f", {human_bytes(up.bytes_done)} / {human_bytes(up.bytes_total)}")
    if up.current_file:
        text.append(f" · {truncate(up.current_file, 40)}", style="italic")
    if up.optipng_queue:
        text.append(f" · optipng queue {up.optipng_queue}", style="dim")
    if up.last_error:
        text.append(f"\n  last error: {up.last_error}", style="red")
    return text


def summary_text(slot: SlotView, now: float, link: SlotLink | None = None) -> Text:
    text = Text(f"Slot {slot.instance} ", style="bold")
    job = slot.job
    if job is None and link is not None and slot.state is SlotState.IDLE:
        text.append_text(link.state_text())
        text.append(f"\n{link.detail_text().plain} — this slot gets no jobs until a web UI connects.",
                    style=link.style)
    else:
        text.append_text(slot_state_text(slot.state, slot.reason))
    if job is None:
        if slot.state is SlotState.BROKEN:
            text.append("\nThis slot takes no new jobs while the problem lasts; it checks again by itself.",
                        style="red")
        last = slot.last_finished
        if last is not None:
            text.append(f"\nlast job #{last.job_id}: ")
            text.append_text(result_text(last.result))
            if last.reason:
                text.append(f" ({truncate(last.reason, 80)})", style="dim")
        text.append(f"\njobs done since start: {slot.jobs_done}", style="dim")
        return text
    text.append(f"  #{job.job_id} ", style="bold")
    text.append(job.name)
    text.append(f"\n{job.host}", style="dim")
    text.append(f" · {human_duration(now - job.started_at)} / {human_duration(job.max_job_time)}")
    if job.live_viewers:
        text.append(f" · {job.live_viewers} live viewer{'s' if job.live_viewers != 1 else ''}", style="cyan")
    if job.memory_bytes is not None:  # the job's own cgroup (backend/engine/cgroup.py)
        text.append(f" · {human_bytes(job.memory_bytes)} RAM, {human_duration(job.cpu_seconds or 0)} CPU", style="dim")
    if job.pending_job_ids:
        text.append(f" · queued: {', '.join(f'#{j}' for j in job.pending_job_ids)}", style="dim")
    if job.paused:
        text.append(f"\n‖ PAUSED at {pause_reason(job.paused)}", style="bold yellow")
    if (up := upload_text(job)) is not None:
        text.append("\n")
        text.append_text(up)
    return text


def modules_text(job: JobView | None, categories: bool = False) -> Text:
    if job is None:
        return Text("no test modules", style="dim")
    if not job.modules:
        return Text("waiting for the test schedule…", style="dim italic")
    lines = []
    for m in job.modules:
        result = "running" if m.name == job.current_module and m.result == "pending" else m.result
        line = Text(f"{RESULT_ICON.get(result, '•')} ", style=RESULT_STYLE.get(result, ""))
        line.append(m.name, style="bold" if result == "running" else RESULT_STYLE.get(result, ""))
        if categories and m.category:
            line.append(f" {m.category}", style="dim")
        if result not in ("pending", "running"):
            line.append(f" {result}", style=RESULT_STYLE.get(result, ""))
        lines.append(line)
    return Text("\n").join(lines)


class JobSummary(Static):
    def show(self, slot: SlotView, now: float, link: SlotLink | None = None) -> None:
        self.update(tidy(summary_text(slot, now, link)))


class DeveloperPanel(Static):
    """Unmissable while a developer session is open: the job is under manual control."""

    def show(self, job: JobView | None) -> None:
        active = job is not None and job.developer_session
        self.display = active
        if active and job is not None:
            self.update(tidy(Text.assemble(
                ("⚠ DEVELOPER SESSION OPEN", "bold"),
                f" — job #{job.job_id} is under manual control from the web UI; "
                f"{job.live_viewers} viewer{'s' if job.live_viewers != 1 else ''} connected. "
                "Do not abort unless the developer agrees.",
            )))


class ModuleList(VerticalScroll):
    """Test modules with live results; keeps the running module in view."""

    _current_index: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="modules-text")

    def show(self, job: JobView | None, categories: bool = False) -> None:
        self.query_one("#modules-text", Static).update(tidy(modules_text(job, categories)))
        done = f" {job.modules_done}/{len(job.modules)}" if job and job.modules else ""
        self.border_title = f"modules{done}"
        names = [m.name for m in job.modules] if job is not None else []
        current = job.current_module if job is not None else ""
        self._current_index = names.index(current) if current in names else None
        # after the refresh the size is known, so the running module lands in the same place every time
        self.call_after_refresh(self._scroll_current)

    def _scroll_current(self) -> None:
        if self._current_index is not None and self.size.height:
            self.scroll_to(y=max(0, self._current_index - self.size.height // 2), animate=False)


class SlotDetail(Vertical):
    """The composite detail view; the main screen and the full-screen detail both use it."""

    def compose(self) -> ComposeResult:
        yield JobSummary(classes="summary")
        yield DeveloperPanel(classes="devsession")
        with Horizontal(classes="detail-body"):
            yield ModuleList(classes="modules")
            yield ScreenPanel(classes="screen")
            yield LogTail(classes="logtail")
        yield SlotHistory(classes="slot-history")  # instead of the two boxes while no job runs

    def show(self, slot: SlotView | None, now: float, history: list | None = None,
             screens: object = None, hosts: Sequence[HostView] = ()) -> None:
        summary = self.query_one(JobSummary)
        if slot is None:
            summary.update(Text("no slot selected", style="dim"))
            return
        summary.show(slot, now, slot_link(hosts, now))
        self.query_one(DeveloperPanel).show(slot.job)
        # the test's categories only where the module list has the room for them
        categories = self.has_class("full") and not self.app.has_class("narrow")
        self.query_one(ModuleList).show(slot.job, categories=categories)
        self.query_one(LogTail).sync(slot.instance, slot.job)
        self.query_one(ScreenPanel).show(slot, screens, now)
        self.set_class(slot.job is not None and slot.job.developer_session, "developer")
        self.set_class(slot.job is None, "idle")
        if slot.job is None:
            self.query_one(SlotHistory).show(history or [], slot.instance, now)
