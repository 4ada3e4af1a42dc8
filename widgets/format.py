"""Pure formatting helpers shared by the widgets (no Textual imports, easy to unit-test)."""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Span, Text

from backend.events import HostState, SlotState

# One colour per slot state, so the table reads at a glance.
SLOT_STYLE: dict[SlotState, str] = {
    SlotState.IDLE: "dim",
    SlotState.BROKEN: "bold red",
    SlotState.SETUP: "cyan",
    SlotState.RUNNING: "bold green",
    SlotState.UPLOADING: "bold blue",
    SlotState.STOPPING: "bold yellow",
    SlotState.OFFLINE: "red",
}

HOST_STYLE: dict[HostState, str] = {
    HostState.NEW: "dim",
    HostState.REGISTERING: "yellow",
    HostState.ESTABLISHING_WS: "yellow",
    HostState.CONNECTED: "green",
    HostState.FAILED: "bold red",
    HostState.DISABLED: "dim red",
}

HOST_ICON: dict[HostState, str] = {
    HostState.NEW: "○",
    HostState.REGISTERING: "◌",
    HostState.ESTABLISHING_WS: "◌",
    HostState.CONNECTED: "●",
    HostState.FAILED: "✖",
    HostState.DISABLED: "⊘",
}

RESULT_STYLE: dict[str, str] = {
    "passed": "green",
    "ok": "green",
    "failed": "bold red",
    "fail": "bold red",
    "softfailed": "yellow",
    "softfail": "yellow",
    "running": "bold cyan",
    "pending": "dim",
    "skipped": "dim",
    "none": "dim",
    "incomplete": "bold red",
    "user_cancelled": "yellow",
    "timeout_exceeded": "red",
}

RESULT_ICON: dict[str, str] = {
    "passed": "✔",
    "failed": "✘",
    "softfailed": "⚠",
    "running": "▶",
    "pending": "·",
    "skipped": "-",
    "none": "-",
}

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; keeps three significant digits."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def human_duration(seconds: float | None) -> str:
    """Compact H:MM:SS (or M:SS under an hour); '–' when unknown."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def bar(done: float, total: float, width: int = 10) -> str:
    """A fixed-width block progress bar; empty when the total is unknown."""
    if total <= 0:
        return "░" * width
    frac = min(1.0, max(0.0, done / total))
    full = int(frac * width)
    partial = " ▏▎▍▌▋▊▉"[int((frac * width - full) * 8)] if full < width else ""
    return ("█" * full + partial.strip() + "░" * width)[:width]


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def truncate_middle(text: str, width: int) -> str:
    """Cut the middle, not the end: openQA job names differ in their tail (test suite, machine)."""
    if len(text) <= width:
        return text
    if width < 8:
        return truncate(text, width)
    head = (width - 1) // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


_LOG_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\] ")


def compact_log_line(line: str) -> str:
    """'[2026-11-28T03:59:41.882887+00:00] [info] …' -> '03:59:41 [info] …': the date and the
    microseconds only cost room in a narrow tail (autoinst-log.txt itself keeps them)."""
    return _LOG_STAMP.sub(r"\2 ", line, count=1)


_PAUSED_PREFIX = re.compile(r"^\s*paused\b\s*(?:at\b|:)?\s*", re.IGNORECASE)


def pause_reason(reason: str) -> str:
    """'paused at needle mismatch' (the simulator) and 'needle mismatch' both → 'needle mismatch'."""
    return _PAUSED_PREFIX.sub("", reason).strip() or reason.strip()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def result_text(result: str) -> Text:
    icon = RESULT_ICON.get(result, "•")
    return Text(f"{icon} {result}", style=RESULT_STYLE.get(result, ""))


def slot_state_text(state: SlotState, reason: str = "") -> Text:
    text = Text(state.value, style=SLOT_STYLE.get(state, ""))
    if reason and state in (SlotState.BROKEN, SlotState.OFFLINE, SlotState.SETUP, SlotState.STOPPING):
        text.append(f" ({reason})", style="dim" if state is SlotState.SETUP else SLOT_STYLE[state])
    return text


def _invisible_on_spaces(style: str | Style) -> bool:
    """True when a space in this style looks like a plain space (no background, reverse or underline)."""
    try:
        parsed = Style.parse(style) if isinstance(style, str) else style
    except Exception:
        return False
    return parsed.bgcolor is None and not parsed.reverse and not parsed.underline and not parsed.strike


def tidy(text: Text) -> Text:
    """Move span boundaries off spaces, in place: no styled run may start with a space.

    Terminals do not care, but SVG screenshots do: every run becomes one ``<text>`` element, and
    renderers such as rsvg drop its leading (non-breaking) space, so "boot" + " passed" showed as
    "bootpassed" and "running" + "  #42" as "running#42". Spaces go to the run before them instead.
    """
    plain = text.plain
    n = len(plain)

    def past_spaces(pos: int) -> int:
        while pos < n and plain[pos] == " ":
            pos += 1
        return pos

    spans = []
    for span in text.spans:
        start, end = span.start, span.end
        if start < n and plain[start] == " ":
            start = past_spaces(start)
        if end < n and plain[end] == " " and _invisible_on_spaces(span.style):
            end = past_spaces(end)
        if start < end:
            spans.append(Span(start, end, span.style))
    text.spans = spans
    return text
