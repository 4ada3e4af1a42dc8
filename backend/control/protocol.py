"""The qaworker control protocol: JSON lines over a Unix socket (version ``PROTOCOL``).

Server → client, one JSON object per line:

* ``{"type": "hello", "protocol": 1, "qaworker": "0.1.0", "pid": …, "instances": […], "access": "control"|"watch"}``
  first, always;
* ``{"type": "snapshot", "view": <WorkerView>, "history": [<HistoryEntry>…], "log_totals": [[inst, job, n]…]}``
  after the client's hello, and again whenever the client fell behind (re-sync);
* ``{"type": "event", "event": "<backend.events class>", "data": {…}}`` — every bus event in order;
* ``{"type": "history", "entry": <HistoryEntry>}`` — a job went into the history;
* ``{"type": "screen", "instance": n, "job_id": j, "name": "boot-1.png", "ts": t, "png": "<base64>"}`` —
  only to clients that asked for that slot's screen;
* ``{"type": "reply", "id": n, "ok": true, "result": …}`` or ``{"…", "ok": false, "error": "…"}``;
* ``{"type": "bye", "reason": "…"}`` when the worker stops; ``{"type": "error", "error": "…"}`` before a
  refusal (access, version) closes the connection.

Client → server: ``{"type": "hello", "protocol": 1, "client": "…", "read_only": false}`` first, then
``{"type": "command", "id": n, "cmd": "…", …}`` with cmd one of ``COMMANDS``.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL = 1
MAX_LINE = 16 * 1024 * 1024  # a snapshot of a big worker fits; anything longer is not ours

STEERING = frozenset({"drain", "quit", "abort"})  # change what the worker does: control access only
COMMANDS = STEERING | {"follow", "cache", "history", "screen", "detach", "ping"}


class ProtocolError(Exception):
    """The other side does not speak our protocol (or a version of it we cannot talk to)."""


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def loads(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a qaworker control message: {line[:80]!r}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"not a qaworker control message: {line[:80]!r}")
    return message


def mismatch(ours: int, theirs: object, *, side: str) -> str:
    """The one line both sides print when the versions differ."""
    return (f"protocol version mismatch: this {side} speaks qaworker control protocol {ours}, the other side "
            f"{theirs}; use qaworker attach from the same qaworker version as the worker")
