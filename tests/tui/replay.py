"""Replay a recording of the real worker's bus events (tests/tui/recorder.py) into a test runtime.

``load(name)`` returns a ``ScriptedRuntime`` (the Runtime command API, a real EventBus and
WorkerView, and the worker's real ``HistoryRecorder`` in memory, as the dashboard of a running worker
has it) that has published every recorded event with its recorded timestamp; its frozen clock
stands at the moment the recording was captured, so a snapshot of it is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from backend import events as ev
from backend.control.codec import decode_event
from backend.history import HistoryRecorder
from backend.state import WorkerView
from tests.tui.recorder import RECORDINGS
from tests.tui.scripted import ScriptedRuntime


@dataclass(frozen=True)
class Recording:
    name: str
    started: float  # wall-clock time of the first event
    now: float  # seconds after the first event when the state was captured
    events: tuple[ev.Event, ...]  # timestamps relative to the first event


def parse(lines: list[str]) -> Recording:
    header = json.loads(lines[0])
    events = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        event = decode_event(json.loads(line))
        if event is None:
            raise ValueError(f"recording {header.get('recording')!r} line {n}: unknown event {line[:80]}")
        events.append(event)
    if len(events) != header["events"]:
        raise ValueError(f"recording {header['recording']!r}: {len(events)} events, header says {header['events']}")
    return Recording(header["recording"], float(header["started"]), float(header["now"]), tuple(events))


def read(name: str, directory: Path = RECORDINGS) -> Recording:
    return parse((directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())


def load(name: str, directory: Path = RECORDINGS) -> ScriptedRuntime:
    recording = read(name, directory)
    rt = ScriptedRuntime(now=recording.started)
    hosts = {h for e in recording.events if isinstance(e, ev.WorkerStarted) for h in e.hosts}
    rt.history = HistoryRecorder(rt.bus, None, {h: h for h in hosts})  # type: ignore[attr-defined]
    for event in recording.events:
        rt.bus.publish(dataclasses.replace(event, ts=recording.started + event.ts))
    rt.now = recording.started + recording.now
    return rt


def kinds(events: tuple[ev.Event, ...] | list[ev.Event]) -> set[str]:
    """The kinds of state a stream shows: event types, and each slot and connection state reached."""
    found = {type(e).__name__ for e in events}
    for e in events:
        if isinstance(e, ev.SlotStateChanged):
            found.add(f"slot:{e.state.value}")
        elif isinstance(e, ev.ConnectionChanged):
            found.add(f"host:{e.state.value}")
    return found


def final_state(events: tuple[ev.Event, ...] | list[ev.Event]) -> dict[str, object]:
    """What the captured moment looks like: slot states, connection states, jobs running, downloads."""
    view = WorkerView()
    for e in events:
        view.apply(e)
    return {"slots": Counter(s.state.value for s in view.slots.values()),
            "hosts": Counter(h.state.value for h in view.hosts.values()),
            "running_jobs": view.running_jobs,
            "developer_session": any(s.job is not None and s.job.developer_session for s in view.slots.values()),
            "paused": any(s.job is not None and bool(s.job.paused) for s in view.slots.values()),
            "downloads": len(view.cache.downloads),
            "finished": Counter(s.last_finished.result for s in view.slots.values() if s.last_finished)}
