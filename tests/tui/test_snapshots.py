"""SVG snapshots of the dashboard in every important state at 80×24 and 160×48.

The states are event streams recorded from the real worker against the mock web UI
(tests/tui/recordings/, made by tests/tui/recorder.py) and replayed into a test runtime whose clock
is frozen at the recorded moment, so the snapshots are deterministic and show only states the
product reaches. Update with `pytest tests/tui --snapshot-update` after looking at the diff report.
"""

from __future__ import annotations

import pytest

from app.tui import QaworkerApp
from tests.tui.recorder import SCENARIOS
from tests.tui.replay import load
from tests.tui.settle import settle, then_settle

SIZES = [(80, 24), (160, 48)]


def _app(scenario: str) -> QaworkerApp:
    rt = load(scenario)
    return QaworkerApp(rt, clock=rt.clock)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_dashboard(snap_compare, scenario: str, size: tuple[int, int]) -> None:
    assert snap_compare(_app(scenario), terminal_size=size, run_before=settle)


def test_quit_dialog(snap_compare) -> None:
    assert snap_compare(_app("three_running"), terminal_size=(80, 24), run_before=then_settle("q"))


def test_detail_screen(snap_compare) -> None:
    assert snap_compare(_app("three_running"), terminal_size=(120, 36), run_before=then_settle("down", "enter"))
