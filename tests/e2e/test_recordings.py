"""The committed recordings (tests/tui/recordings/) still match what the real worker does.

The dashboard's snapshots and the README's screenshots replay those recordings. This test records
every scenario again — the real Worker, the mock web UI served on 127.0.0.1, the simulator — and
compares the kinds of state it passes through and the state captured at the end, so a backend
change that the recordings no longer show fails here instead of drifting silently
(re-record with ``python -m tests.tui.recorder``, then update the snapshots and screenshots).
"""

from __future__ import annotations

import pytest

from tests.tui import recorder, replay

pytestmark = pytest.mark.timeout(120)

# Event kinds whose presence before the captured moment depends on timing, not on behaviour
# (live uploads happen while modules run; a log flush may land just before or after the capture).
TIMING = {"UploadProgress", "LogLines", "CacheTotals", "LiveViewers"}


def _stable(kinds: set[str]) -> set[str]:
    return kinds - TIMING


@pytest.mark.parametrize("scenario", list(recorder.SCENARIOS))
async def test_a_fresh_recording_shows_the_same_states_as_the_committed_one(scenario: str) -> None:
    committed = replay.read(scenario)
    fresh = replay.parse(await recorder.record(scenario))
    assert fresh.name == scenario
    assert _stable(replay.kinds(fresh.events)) == _stable(replay.kinds(committed.events)), (
        f"the real worker now passes through other states than tests/tui/recordings/{scenario}.jsonl: "
        "re-record it (python -m tests.tui.recorder) and update the snapshots")
    assert replay.final_state(fresh.events) == replay.final_state(committed.events)


def test_recordings_hold_only_states_the_backend_publishes() -> None:
    """The replayed states are the backend's own: every slot state in a recording comes from a real run."""
    for scenario in recorder.SCENARIOS:
        recording = replay.read(scenario)
        states = {k for k in replay.kinds(recording.events) if k.startswith("slot:")}
        assert "slot:offline" not in states, scenario  # a state SlotState does not know fails to decode
        assert "WorkerStarted" in replay.kinds(recording.events), scenario
