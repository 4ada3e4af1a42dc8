"""A scripted runtime with a fixed job history (frozen clock), for the history and screen snapshots."""

from __future__ import annotations

from backend import events as ev
from backend.events import SlotState
from backend.history import HistoryEntry, job_url
from tests.tui.scripted import HOST, KDE, MICRO, SLE, TW, ScriptedRuntime, run_job, start

BASE = f"https://{HOST}"


class FixedHistory:
    def __init__(self, entries: list[HistoryEntry]) -> None:
        self._entries = entries

    def entries(self) -> list[HistoryEntry]:
        return list(self._entries)

    def add_listener(self, callback) -> None:
        pass


def entries(now: float) -> list[HistoryEntry]:
    """Oldest first, as the recorder keeps them."""
    plan = [  # (slot, job, name, result, reason, minutes ago, duration s)
        (1, 3724901, TW, "passed", "", 400, 2410), (2, 3724911, SLE, "failed", "", 390, 3102),
        (3, 3724922, KDE, "passed", "", 350, 1930), (1, 3724950, MICRO, "softfailed", "", 300, 2255),
        (2, 3724967, TW, "incomplete", "backend died: QEMU exited unexpectedly", 260, 611),
        (3, 3724970, SLE, "passed", "", 200, 2987), (1, 3724988, KDE, "user_cancelled", "cancel", 150, 402),
        (2, 3725001, TW, "passed", "", 120, 2378), (3, 3725010, MICRO, "timeout_exceeded",
                                                    "timeout: test execution exceeded MAX_JOB_TIME", 90, 7200),
        (1, 3725011, TW, "passed", "", 61, 2401), (2, 3725030, SLE, "passed", "", 35, 3044),
        (3, 3725044, KDE, "failed", "", 12, 1712),
    ]
    out = []
    for slot, job, name, result, reason, ago, took in plan:
        finished = now - ago * 60
        out.append(HistoryEntry(job_id=job, name=name, host=HOST, url=job_url(BASE, job), instance=slot,
                                result=result, reason=reason, stop_reason="done", started_at=finished - took,
                                finished_at=finished, duration=float(took)))
    return out


def history_runtime(*, running: bool = False) -> ScriptedRuntime:
    rt = ScriptedRuntime()
    start(rt, (1, 2, 3))
    rt.advance(7 * 3600)
    rt.emit(ev.SlotStateChanged, instance=3,
            state=SlotState.BROKEN, reason="The average load (95.00 60.00 30.00) is exceeding the configured threshold")
    if running:
        run_job(rt, 2, 3725102, TW, done=12, softfailed=(3,), started_ago=1500)
    rt.history = FixedHistory(entries(rt.now))  # type: ignore[attr-defined]
    return rt


class FixedScreens:
    """One fixed screenshot per slot: what a ScreenWatcher hands the panel (the watcher has its own tests)."""

    def __init__(self, frames: dict[int, object]) -> None:
        self.frames = frames
        self.wants: dict[object, frozenset[int]] = {}

    def want(self, owner: object, instances) -> None:
        self.wants[owner] = frozenset(instances)

    def latest(self, instance: int):
        return self.frames.get(instance)


def screen_runtime() -> ScriptedRuntime:
    from backend.engine.png import screenshot_png
    from backend.screen import ScreenFrame

    rt = history_runtime(running=True)
    png = screenshot_png(320, 240, 7, level=1)
    rt.screens = FixedScreens({2: ScreenFrame(2, 3725102, "logs_from_installation_system-3.png",  # type: ignore[attr-defined]
                                              rt.now - 4, png)})
    return rt
