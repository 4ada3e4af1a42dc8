"""Tiny plots in one line of text: recent job durations of a slot, upload throughput while it uploads.

Pure functions plus a small sampler; no Textual here, so the table cells, the slot history and the
detail view can all embed them as Rich Text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rich.text import Text

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, *, floor: float | None = 0.0) -> str:
    """The newest ``width`` values as block characters, scaled to their maximum ('' for no values)."""
    shown = [max(0.0, float(v)) for v in values][-width:] if width > 0 else []
    if not shown:
        return ""
    low = min(shown) if floor is None else floor
    high = max(shown)
    if high <= low:
        return BLOCKS[0 if high == 0 else len(BLOCKS) // 2] * len(shown)
    scale = (len(BLOCKS) - 1) / (high - low)
    return "".join(BLOCKS[round((v - low) * scale)] for v in shown)


def durations_text(durations: Sequence[float], results: Sequence[str], width: int) -> Text:
    """Job durations (oldest left), each bar coloured by its job's result."""
    from widgets.format import RESULT_STYLE

    line = sparkline(durations, width)
    text = Text()
    for char, result in zip(line, list(results)[-len(line):], strict=True):
        text.append(char, style=RESULT_STYLE.get(result, "magenta"))
    return text


class RateSampler:
    """Bytes/s from a growing byte counter, sampled whenever the UI renders (≤ 10×/s, ≥ 1×/s)."""

    def __init__(self, keep: int = 60, min_interval: float = 0.5) -> None:
        self.rates: deque[float] = deque(maxlen=keep)
        self.min_interval = min_interval
        self._key: object = None
        self._last: tuple[float, int] | None = None

    def sample(self, key: object, now: float, bytes_done: int) -> None:
        if key != self._key:  # another job: start afresh
            self._key, self._last = key, (now, bytes_done)
            self.rates.clear()
            return
        assert self._last is not None
        then, before = self._last
        if now - then < self.min_interval:
            return
        self.rates.append(max(0, bytes_done - before) / (now - then))
        self._last = (now, bytes_done)

    @property
    def current(self) -> float:
        return self.rates[-1] if self.rates else 0.0


def short_rate(rate: float) -> str:
    """Bytes/s in at most 7 characters: '950B/s', '12.3K/s', '48.6M/s', '1.2G/s'."""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if rate >= size:
            value = rate / size
            return f"{value:.1f}{unit}/s" if value < 100 else f"{value:.0f}{unit}/s"
    return f"{rate:.0f}B/s"


class SlotSparks:
    """The slot table's "Recent" cell: upload throughput while a job uploads, else recent job durations."""

    WIDTH = 8

    def __init__(self) -> None:
        self._uploads: dict[int, RateSampler] = {}

    def cell(self, slot, history: Sequence, now: float) -> Text:
        job = slot.job
        up = job.upload if job is not None else None
        uploading = up is not None and up.bytes_total > 0 and up.bytes_done < up.bytes_total
        if uploading and job is not None and up is not None:
            sampler = self._uploads.setdefault(slot.instance, RateSampler())
            sampler.sample(job.job_id, now, up.bytes_done)
            if sampler.rates:
                text = Text.assemble((sparkline(sampler.rates, self.WIDTH - 2), "blue"))
                text.append(f" {short_rate(sampler.current)}", style="dim blue")
                return text
        elif slot.instance in self._uploads:
            del self._uploads[slot.instance]
        mine = [e for e in history if e.instance == slot.instance][-self.WIDTH:]
        if not mine:
            return Text("")
        text = durations_text([e.duration for e in mine], [e.result for e in mine], self.WIDTH)
        return text
