"""One client of the control socket: who it is, what it wants, and its bounded outbox."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.control.access import Access, Peer

log = logging.getLogger("qaworker.control")


class HistoryFeed(Protocol):
    def entries(self) -> list[Any]: ...
    def add_listener(self, callback: Callable[[Any], None]) -> None: ...


class ScreenFeed(Protocol):
    def want(self, owner: object, instances: Iterable[int]) -> None: ...
    def add_listener(self, callback: Callable[[Any], None]) -> None: ...
    async def encoded_for_wire(self, frame: Any, max_size: tuple[int, int]) -> bytes: ...


@dataclass(eq=False)
class Client:
    peer: Peer
    access: Access
    writer: asyncio.StreamWriter
    name: str = ""
    read_only: bool = False
    ready: bool = False  # hello exchanged: events flow
    outbox: deque[bytes] = field(default_factory=deque)
    outbox_bytes: int = 0
    resync: bool = True  # the first snapshot is a re-sync from nothing
    dropped: int = 0  # backlogs dropped (a slow reader)
    logs: set[int] | None = None  # slots whose log lines it wants; None = all
    screens: set[int] = field(default_factory=set)  # slots whose screen it shows
    screen_size: tuple[int, int] = (640, 480)
    replies: deque[bytes] = field(default_factory=deque)  # never dropped with a backlog
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    finish: bool = False  # close once everything queued is written (detach, bye)

    def describe(self) -> str:
        extra = " read-only" if self.read_only else ""
        return f"{self.peer.describe()}{extra}"

    def queue(self, line: bytes, limit: int) -> None:
        if not self.ready or self.closing or self.resync:
            return  # a pending snapshot already covers this
        buffered = self.outbox_bytes + self.writer.transport.get_write_buffer_size()
        if buffered + len(line) > limit:
            self.outbox.clear()
            self.outbox_bytes = 0
            self.resync = True
            self.dropped += 1
            log.warning("control: %s is not reading; its backlog was dropped, it gets a new snapshot", self.describe())
        else:
            self.outbox.append(line)
            self.outbox_bytes += len(line)
        self.wake.set()
