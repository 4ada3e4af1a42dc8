"""Formatting helpers behind the polish: spaces that survive SVG screenshots, short job names, short log stamps."""

from __future__ import annotations

from rich.text import Text

from widgets.format import compact_log_line, tidy, truncate_middle


def runs(text: Text) -> list[str]:
    """The text of each styled run, as an SVG export would cut it."""
    return [text.plain[s.start:s.end] for s in text.spans]


def test_tidy_keeps_spaces_out_of_the_start_of_styled_runs() -> None:
    text = Text("Slot 1 ", style="bold")
    text.append("running", style="green")
    text.append("  #42 ", style="bold")
    text.append("name")
    tidy(text)
    assert text.plain == "Slot 1 running  #42 name"
    assert all(not run.startswith(" ") for run in runs(text))
    assert "#42 " in runs(text)


def test_tidy_does_not_stretch_a_background_over_spaces() -> None:
    text = Text("running")
    text.append(" DEV", style="bold reverse red")
    text.append(" next")
    tidy(text)
    assert runs(text) == ["DEV"]  # the reverse badge neither starts nor ends on a space


def test_truncate_middle_keeps_the_distinctive_tail() -> None:
    name = "opensuse-Tumbleweed-DVD-x86_64-Build20231113-textmode@64bit"
    short = truncate_middle(name, 24)
    assert len(short) == 24 and short.startswith("opensus") and short.endswith("textmode@64bit")
    assert truncate_middle("short", 24) == "short"


def test_compact_log_line_shortens_only_the_leading_timestamp() -> None:
    line = "[2026-11-28T03:59:41.882887+00:00] [info] [pid:86] at [2026-11-28T03:59:41Z] x"
    assert compact_log_line(line) == "03:59:41 [info] [pid:86] at [2026-11-28T03:59:41Z] x"
    assert compact_log_line("[2026-11-28T03:59:41.882Z] [debug] y") == "03:59:41 [debug] y"
    assert compact_log_line("no stamp here") == "no stamp here"
