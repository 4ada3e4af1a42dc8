"""Live tail of a job's autoinst-log.txt.

The app keeps a ``LogBuffers`` fed in event order from the bus (seeded once from the view at subscribe
time), so a tail never duplicates or skips lines even though the view may run ahead of the UI.
"""

from __future__ import annotations

from collections import deque

from textual.widgets import Log

from backend.state import JobView
from widgets.format import compact_log_line

TAIL_LINES = 500


class LogBuffers:
    """Per (instance, job_id): the last TAIL_LINES lines and how many lines arrived in total."""

    def __init__(self) -> None:
        self._lines: dict[tuple[int, int], deque[str]] = {}
        self._totals: dict[tuple[int, int], int] = {}

    def add(self, instance: int, job_id: int, lines: tuple[str, ...] | list[str]) -> None:
        key = (instance, job_id)
        buf = self._lines.setdefault(key, deque(maxlen=TAIL_LINES))
        buf.extend(lines)
        self._totals[key] = self._totals.get(key, 0) + len(lines)

    def tail(self, instance: int, job_id: int) -> deque[str]:
        return self._lines.get((instance, job_id), deque())

    def total(self, instance: int, job_id: int) -> int:
        return self._totals.get((instance, job_id), 0)

    def forget_except(self, live: set[tuple[int, int]]) -> None:
        """Drop the buffers of jobs no slot runs any more (bounded memory over weeks of uptime)."""
        for key in [k for k in self._lines if k not in live]:
            self._lines.pop(key, None)
            self._totals.pop(key, None)


class LogTail(Log):
    """A Log that appends only the lines it has not shown yet; ``follow`` toggles auto-scroll."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=TAIL_LINES, auto_scroll=True, highlight=False, **kwargs)
        self._shown_key: tuple[int, int] | None = None
        self._shown_total = 0
        self.border_title = "autoinst-log.txt"
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        self.border_subtitle = "follow: on [l]" if self.auto_scroll else "follow: OFF [l]"

    def toggle_follow(self) -> bool:
        self.auto_scroll = not self.auto_scroll
        self._update_subtitle()
        if self.auto_scroll:
            self.scroll_end(animate=False)
        return self.auto_scroll

    def sync(self, instance: int, job: JobView | None, buffers: LogBuffers) -> None:
        if job is None:
            if self._shown_key is not None or not self.line_count:
                self.clear()
                self.write_line("(no job running)")
            self._shown_key, self._shown_total = None, 0
            return
        key = (instance, job.job_id)
        total = buffers.total(*key)
        tail = buffers.tail(*key)
        if key != self._shown_key:
            self.clear()
            self._shown_key, self._shown_total = key, 0
        new = total - self._shown_total
        if new > 0:
            lines = list(tail)[-min(new, len(tail)):]
            self.write_lines([compact_log_line(line) for line in lines])
            self._shown_total = total
