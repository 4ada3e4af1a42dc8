"""Whether a slot can get jobs at all: its web UI connections, told where the slot is shown.

The backend keeps a slot ``idle`` while none of its web UIs is connected (it publishes the
connections, up and down, on their own); shown as plain ``idle —`` that looked like a worker
waiting for work, for half an hour.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from backend.events import HostState
from backend.state import HostView, WorkerView

# "Failed to register at http://host:9526 - Connection error: …": the top bar names the host already
_REGISTER_PREFIX = re.compile(r"^Failed to register at \S+ - ")
_CONNECTING = (HostState.NEW, HostState.REGISTERING, HostState.ESTABLISHING_WS)


@dataclass(frozen=True)
class SlotLink:
    label: str  # the slot's state as shown: "disconnected", "connecting" or "disabled"
    style: str
    reason: str  # why, from the web UI that matters most (a failed one first)

    def state_text(self) -> Text:
        return Text(self.label, style=self.style)

    def detail_text(self) -> Text:
        return Text(f"no web UI up: {self.reason}" if self.reason else "no web UI up", style=self.style)


def hosts_of(view: WorkerView, instance: int) -> list[HostView]:
    return [hv for (_host, i), hv in sorted(view.hosts.items()) if i == instance]


def _retry(hv: HostView, now: float) -> str:
    if hv.next_retry_at is None:
        return ""
    wait = round(hv.next_retry_at - now)
    return f"retry in {wait}s" if wait > 0 else "retrying…"


def slot_link(hosts: Sequence[HostView], now: float) -> SlotLink | None:
    """None while at least one of the slot's web UIs is connected (or it has none configured)."""
    if not hosts or any(h.state is HostState.CONNECTED for h in hosts):
        return None
    failed = [h for h in hosts if h.state is HostState.FAILED]
    connecting = [h for h in hosts if h.state in _CONNECTING]
    if failed:
        label, style, main = "disconnected", "bold red", failed[0]
    elif connecting:
        label, style, main = "connecting", "yellow", connecting[0]
    else:
        label, style, main = "disabled", "red", hosts[0]
    reason = _REGISTER_PREFIX.sub("", main.reason) or main.state.value.replace("_", " ")
    parts = [p for p in (reason, _retry(main, now)) if p]
    return SlotLink(label, style, ", ".join(parts))
