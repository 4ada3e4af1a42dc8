"""Live tail of a job's autoinst-log.txt, read from the read model.

The view's ``JobView.log_tail`` is the bounded buffer (the newest TAIL_LINES lines, in publish order)
and ``JobView.log_lines_total`` counts every line ever added, so a tail never duplicates or skips a
line unseen: when more lines arrived between two renders than the buffer keeps, the tail says how
many it never showed.
"""

from __future__ import annotations

from textual.widgets import Log

from backend.state import JobView
from widgets.format import compact_log_line

TAIL_LINES = 500


def dropped_marker(count: int) -> str:
    return f"··· {count} line{'s' if count != 1 else ''} dropped (more arrived than the tail keeps) ···"


class LogTail(Log):
    """A Log that appends only the lines it has not shown yet; ``follow`` toggles auto-scroll."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=TAIL_LINES, auto_scroll=True, highlight=False, **kwargs)
        self._shown_key: tuple[int, int] | None = None
        self._shown_total = 0
        self.dropped = 0  # lines of the shown job this tail never displayed
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

    def sync(self, instance: int, job: JobView | None) -> None:
        if job is None:
            if self._shown_key is not None or not self.line_count:
                self.clear()
                self.write_line("(no job running)")
            self._shown_key, self._shown_total, self.dropped = None, 0, 0
            return
        key = (instance, job.job_id)
        tail = job.log_tail
        total = max(job.log_lines_total, len(tail))  # a view decoded from an older worker has no total
        if key != self._shown_key:
            # A job shown for the first time starts with what the buffer holds: nothing is dropped yet.
            self.clear()
            self._shown_key, self._shown_total, self.dropped = key, total - len(tail), 0
        new = total - self._shown_total
        if new <= 0:
            return
        if new <= len(tail):
            self.write_lines([compact_log_line(line) for line in list(tail)[-new:]])
        else:
            # The buffer overflowed between two renders: say so in the tail, then its newest lines
            # (one fewer, so the marker itself stays inside the widget's TAIL_LINES).
            keep = list(tail)[-(TAIL_LINES - 1):]
            missed = new - len(keep)
            self.dropped += missed
            self.write_lines([dropped_marker(missed), *(compact_log_line(line) for line in keep)])
        self._shown_total = total
