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
