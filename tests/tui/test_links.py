"""What a slot without a connected web UI is called (issue 15 item 5): the words the slot table uses."""

from __future__ import annotations

from backend.events import HostState
from backend.state import HostView
from widgets.links import slot_link

NOW = 1000.0


def host(state: HostState, reason: str = "", retry_at: float | None = None, name: str = "a") -> HostView:
    return HostView(name, 1, state, reason=reason, next_retry_at=retry_at)


def test_one_connected_web_ui_is_enough() -> None:
    assert slot_link([host(HostState.FAILED, "down"), host(HostState.CONNECTED, name="b")], NOW) is None
    assert slot_link([], NOW) is None


def test_failed_wins_and_says_why_and_when_it_retries() -> None:
    link = slot_link([host(HostState.REGISTERING, name="b"),
                      host(HostState.FAILED, "Failed to register at a - Connection error: refused", NOW + 9)], NOW)
    assert link is not None
    assert (link.label, link.reason) == ("disconnected", "Connection error: refused, retry in 9s")


def test_still_connecting_and_all_refused() -> None:
    connecting = slot_link([host(HostState.NEW)], NOW)
    assert connecting is not None and (connecting.label, connecting.reason) == ("connecting", "new")
    refused = slot_link([host(HostState.DISABLED, "API key rejected (403)")], NOW)
    assert refused is not None and (refused.label, refused.reason) == ("disabled", "API key rejected (403)")
