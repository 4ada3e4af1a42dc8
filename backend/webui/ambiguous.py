"""Refuse an ambiguous registration (upstream commit 39e7a69e2, PROTOCOL.md §5.1, issue 12 row 10).

A worker that calls itself ``localhost`` - its short host name, or ``WORKER_HOSTNAME`` - while the web UI
is on another machine would register there as "localhost": the web UI would then talk to its own
machine for the command server, the live view and parallel jobs. Such a registration is refused with
a clear reason and the slot stays disabled at that web UI (the config has to change, a retry cannot help).
"""

from __future__ import annotations

from backend.config import HostConfig

LOCALHOST = "localhost"


def short_name(hostname: str) -> str:
    return hostname.split(".", 1)[0].strip().lower()


def ambiguous_localhost(host: HostConfig, node_name: str, worker_hostname: str | None) -> str | None:
    """The reason a registration at ``host`` must not happen, or None."""
    if host.is_local:
        return None
    for what, name in (("host name", node_name), ("WORKER_HOSTNAME", worker_hostname or "")):
        if name and short_name(name) == LOCALHOST:
            return (f"Rejecting registration as ambiguous '{LOCALHOST}' ({what} {name!r}) to remote web UI host "
                    f"{host.configured}: set WORKER_HOSTNAME (and the host name) to an address the web UI "
                    "can reach this worker by")
    return None
