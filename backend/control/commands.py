"""The commands a control-socket client may send: the Runtime API plus follow, cache, history, screen, detach."""

from __future__ import annotations

import logging
from typing import Any

from backend.control import protocol as proto
from backend.control.access import Access
from backend.control.codec import encode
from backend.control.session import Client

log = logging.getLogger("qaworker.control")


class CommandHandlers:
    """Mixed into ControlServer; ``_reply`` and the attributes used here are the server's."""

    runtime: Any
    policy: Any
    history: Any
    screens: Any

    def _reply(self, client: Client, request_id: object, result: Any = None, *, error: str = "") -> None:
        raise NotImplementedError

    async def _command(self, client: Client, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        cmd = message.get("cmd")
        if cmd not in proto.COMMANDS:
            known = ", ".join(sorted(proto.COMMANDS))
            self._reply(client, request_id, error=f"unknown command {cmd!r}; known: {known}")
            return
        if cmd in proto.STEERING and client.read_only:
            assert self.policy is not None
            why = (self.policy.watch_only(client.peer, str(cmd)) if client.access is Access.WATCH
                   else f"this client attached read-only; '{cmd}' refused")
            log.info("control: refused %s from %s", cmd, client.describe())
            self._reply(client, request_id, error=why)
            return
        try:
            result = await getattr(self, f"_cmd_{cmd}")(client, message)
        except _CommandError as exc:
            self._reply(client, request_id, error=str(exc))
            return
        except Exception as exc:
            log.exception("control: command %s failed", cmd)
            self._reply(client, request_id, error=f"{cmd} failed: {exc}")
            return
        self._reply(client, request_id, result)
        if cmd == "detach":
            client.finish = True

    async def _cmd_ping(self, client: Client, message: dict[str, Any]) -> Any:
        return "pong"

    async def _cmd_drain(self, client: Client, message: dict[str, Any]) -> Any:
        log.info("control: drain requested by %s", client.describe())
        self.runtime.drain()
        return self.runtime.view.stopping

    async def _cmd_quit(self, client: Client, message: dict[str, Any]) -> Any:
        log.info("control: quit requested by %s", client.describe())
        self.runtime.quit()
        return self.runtime.view.stopping

    async def _cmd_abort(self, client: Client, message: dict[str, Any]) -> Any:
        instance = _int(message, "instance")
        slot = self.runtime.view.slots.get(instance)
        running = slot.job.job_id if slot is not None and slot.job is not None else None
        wanted = message.get("job_id")
        if running is None:
            raise _CommandError(f"slot {instance} has no job to abort")
        if wanted is not None and wanted != running:
            raise _CommandError(f"job {wanted} no longer runs on slot {instance} (now: job {running}); nothing aborted")
        log.info("control: abort of job %d on slot %d requested by %s", running, instance, client.describe())
        if not self.runtime.abort_job(instance, running):  # type: ignore[call-arg] - Worker.abort_job(i, job_id)
            raise _CommandError(f"slot {instance} has no job to abort")
        return running

    async def _cmd_follow(self, client: Client, message: dict[str, Any]) -> Any:
        """Which slots' log lines to send (``instances``: a list, or null for all); returns their tails."""
        wanted = message.get("instances")
        client.logs = None if wanted is None else {int(i) for i in wanted}
        lines = int(message.get("lines", 100))
        tails = []
        for instance, slot in sorted(self.runtime.view.slots.items()):
            if slot.job is not None and (client.logs is None or instance in client.logs):
                tails.append({"instance": instance, "job_id": slot.job.job_id,
                              "lines": list(slot.job.log_tail)[-lines:] if lines > 0 else []})
        return tails

    async def _cmd_cache(self, client: Client, message: dict[str, Any]) -> Any:
        return encode(self.runtime.view.cache)

    async def _cmd_history(self, client: Client, message: dict[str, Any]) -> Any:
        if self.history is None:
            return []
        entries = self.history.entries()
        instance, result = message.get("instance"), message.get("result")
        picked = [e for e in reversed(entries) if (instance is None or e.instance == instance)
                  and (result is None or e.result == result)]
        return [encode(e) for e in picked[: int(message.get("limit", 100))]]

    async def _cmd_screen(self, client: Client, message: dict[str, Any]) -> Any:
        """The slots whose screen this client shows (``instances``), at most ``max_width``×``max_height``."""
        wanted = {int(i) for i in message.get("instances") or ()}
        width = max(16, min(1920, int(message.get("max_width", 640))))
        height = max(16, min(1200, int(message.get("max_height", 480))))
        client.screen_size = (width, height)
        client.screens = wanted
        if self.screens is None:
            return {"instances": [], "available": False}
        self.screens.want(client, wanted)
        return {"instances": sorted(wanted), "available": True}

    async def _cmd_detach(self, client: Client, message: dict[str, Any]) -> Any:
        log.info("control: %s detached", client.describe())
        return "bye"


class _CommandError(Exception):
    pass


def _int(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _CommandError(f"'{key}' must be a number, got {value!r}")
    return value
