"""One connection to a control socket: the hello exchange, then JSON lines in and out."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from backend import __version__
from backend.control import protocol as proto

CONNECT_TIMEOUT = 5.0


class AttachError(Exception):
    """Attaching cannot work and retrying will not help (access, protocol version): one line for the user."""


class CommandRefused(Exception):
    """The worker answered a command with an error (the message says why)."""


class ControlConnection:
    """One connection: the hello exchange done, then lines in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict[str, Any]) -> None:
        self.reader = reader
        self.writer = writer
        self.hello = hello

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False, client: str = f"qaworker attach {__version__}",
                   protocol: int = proto.PROTOCOL, timeout: float = CONNECT_TIMEOUT,
                   probe: bool = False) -> ControlConnection:
        """Connect and exchange hellos; ``probe`` only reads the worker's hello (it logs nothing for that)."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(path), limit=proto.MAX_LINE)
        except PermissionError as exc:
            raise AttachError(f"permission denied: cannot open {path} ({exc.strerror}); root, the worker's user "
                              "and members of the socket's group may attach") from exc
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
            if not line:
                raise ConnectionResetError(f"{path}: closed before the hello")
            first = proto.loads(line)
            if first["type"] == "error":
                raise AttachError(str(first.get("error")))
            if first["type"] != "hello":
                raise AttachError(f"{path}: not a qaworker control socket")
            if first.get("protocol") != protocol:
                raise AttachError(proto.mismatch(protocol, first.get("protocol"), side="client"))
            if probe:
                return cls(reader, writer, first)
            writer.write(proto.dumps({"type": "hello", "protocol": protocol, "client": client,
                                      "read_only": read_only}))
            await writer.drain()
        except proto.ProtocolError as exc:
            writer.close()
            raise AttachError(f"{path}: {exc}") from exc
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, first)

    async def read(self) -> dict[str, Any] | None:
        """The next message; None when the worker closed the connection."""
        line = await self.reader.readline()
        if not line:
            return None
        return proto.loads(line)

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(proto.dumps(message))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
