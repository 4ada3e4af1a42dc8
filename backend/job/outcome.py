"""The one place that decides a job's final ``set_done`` result and reason (PROTOCOL.md §14.2-§14.3)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class StopReason(StrEnum):
    """Why a job stops (PROTOCOL.md §14.1). The values are the protocol's words."""

    DONE = "done"
    DIED = "died"
    CANCEL = "cancel"
    OBSOLETE = "obsolete"
    ABORT = "abort"
    QUIT = "quit"
    API_FAILURE = "api-failure"
    TIMEOUT = "timeout"
    SETUP_FAILURE = "setup failure"
    WORKER_BROKEN = "worker broken"
    NO_TESTS = "no tests scheduled"
    EXCEPTION = "exception"


DONE = StopReason.DONE
DIED = StopReason.DIED
CANCEL = StopReason.CANCEL
OBSOLETE = StopReason.OBSOLETE
ABORT = StopReason.ABORT
QUIT = StopReason.QUIT
API_FAILURE = StopReason.API_FAILURE
TIMEOUT = StopReason.TIMEOUT
SETUP_FAILURE = StopReason.SETUP_FAILURE
WORKER_BROKEN = StopReason.WORKER_BROKEN
NO_TESTS = StopReason.NO_TESTS
EXCEPTION = StopReason.EXCEPTION

# the stop commands the web UI sends (and the worker itself, for quit)
COMMANDS = (QUIT, ABORT, CANCEL, OBSOLETE)
# results are not uploaded for these (§14.2 step 4)
SKIP_UPLOADS = (QUIT, ABORT, API_FAILURE)
UPLOAD_ASSETS = (DONE, CANCEL)
OK_RESULTS = ("passed", "softfailed")


@dataclass(frozen=True)
class StopRequest:
    reason: StopReason
    detail: str = ""  # setup error text, timeout kind, api error text, ...


@dataclass(frozen=True)
class SetDone:
    result: str | None
    reason: str | None
    newbuild: bool = False

    def params(self, worker_id: int) -> list[tuple[str, object]]:
        params: list[tuple[str, object]] = []
        if self.newbuild:
            params.append(("newbuild", 1))
        if self.reason:
            params.append(("reason", self.reason))
        if self.result:
            params.append(("result", self.result))
        params.append(("worker_id", worker_id))
        return params


@dataclass(frozen=True)
class BaseState:
    exists: bool
    component: str = ""
    msg: str = ""
    result: str = ""
    corrupted: bool = False


def read_base_state(pool_dir: Path) -> BaseState:
    """Read ``base_state.json`` (small file; called from a thread by the job)."""
    path = pool_dir / "base_state.json"
    try:
        raw = path.read_text(errors="replace")
    except FileNotFoundError:
        return BaseState(False)
    except OSError:
        return BaseState(True, corrupted=True)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        return BaseState(True, corrupted=True)
    return BaseState(True, str(data.get("component") or ""), str(data.get("msg") or ""),
                     str(data.get("result") or ""))


QEMU_HINTS = (re.compile(r"Failed to allocate KVM .*Cannot allocate memory"),
              re.compile(r"Could not find .*smbd.*please install it"))


def decide(stop: StopRequest, base: BaseState, *, upload_error: str | None = None,
           log_tail: str = "", no_space: bool = False) -> SetDone:
    """Map a stop reason (+ isotovideo's base_state.json) to set_done's result and reason."""
    reason = stop.reason
    if reason == TIMEOUT:
        text = stop.detail or "timeout: test execution exceeded MAX_JOB_TIME"
        return SetDone("timeout_exceeded", text)
    if reason == SETUP_FAILURE:
        return SetDone("incomplete", stop.detail or "setup failure")
    if reason == API_FAILURE:
        return SetDone("incomplete", f"api failure: {stop.detail}" if stop.detail else "api failure")
    if reason == QUIT:
        return SetDone("incomplete", stop.detail or "quit: worker has been stopped or restarted")
    if reason == CANCEL:
        return SetDone("user_cancelled", None)
    if reason == WORKER_BROKEN:
        return SetDone("incomplete", f"worker broken: {stop.detail}" if stop.detail else "worker broken")
    if reason == DONE and upload_error:
        return SetDone("incomplete", f"api failure: {upload_error}")

    result = None if reason == DONE else "incomplete"
    newbuild = reason == OBSOLETE  # the web UI marks the job obsoleted by a newer build
    if base.exists and base.corrupted:
        suffix = ": No space left on device" if no_space else ""
        if reason == DONE:
            return SetDone(result, f"done: terminated with corrupted state file{suffix}")
        return SetDone(result, f"terminated prematurely: Encountered corrupted state file{suffix}, "
                               "see log output for details", newbuild=newbuild)
    if base.exists:
        first_line = base.msg.splitlines()[0] if base.msg else ""
        text = f"{base.component} {reason}" if base.component else reason
        if first_line:
            text += f": {first_line}"
        if re.match(r"backend died: QEMU (exited unexpectedly|terminated)", text):
            for hint in QEMU_HINTS:
                if match := hint.search(log_tail):
                    text = f"QEMU terminated: {match.group(0)}, see log output of details"
                    break
        if base.result:
            result = base.result
        return SetDone(result, text, newbuild=newbuild)
    if reason == DIED:
        cause = ": No space left on device" if no_space else ""
        return SetDone(result, f"died: terminated prematurely{cause}, see log output for details")
    if reason == NO_TESTS:
        return SetDone(result, "no tests scheduled")
    if reason == DONE:
        return SetDone(result, None)
    if reason in (ABORT, OBSOLETE):  # upstream sends the bare command as the reason (issue 12 row 11)
        return SetDone(result, str(reason), newbuild=newbuild)
    return SetDone(result, f"{reason}: {stop.detail}" if stop.detail else reason)
