"""SVG snapshots of the dashboard in every important state at 80×24 and 160×48.

Deterministic: scenario events carry fixed timestamps and the app's clock is the scripted runtime's
frozen clock. Update with `pytest tests/tui --snapshot-update` after looking at the diff report.
"""

from __future__ import annotations

import pytest

from app.tui import QaworkerApp
from tests.tui.scripted import build

SCENARIOS = ["idle", "three_running", "uploading", "developer_session", "broken_host", "disconnected",
             "cache_downloading"]
SIZES = [(80, 24), (160, 48)]


async def _settle(pilot) -> None:
    await pilot.pause(0.3)  # the throttled first render


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_dashboard(snap_compare, scenario: str, size: tuple[int, int]) -> None:
    rt = build(scenario)
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=size, run_before=_settle)


def test_quit_dialog(snap_compare) -> None:
    rt = build("three_running")
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), press=["q"], terminal_size=(80, 24),
                        run_before=_settle)


def test_detail_screen(snap_compare) -> None:
    rt = build("three_running")
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), press=["down", "enter"], terminal_size=(120, 36),
                        run_before=_settle)
