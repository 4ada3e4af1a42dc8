"""Who may use the control socket: the kernel's word on the peer (SO_PEERCRED), checked per connection.

* root and the worker's own user may command (drain, quit, abort);
* members of the socket's group may watch: snapshots and events, commands refused with a clear line;
* everyone else is refused before anything is sent.

The socket file is 0660 as well, so without group membership a connect fails already; the check here
is what holds when an admin loosened the file's mode, and what tells watchers from commanders.
Lookups (passwd, groups) can hit NSS (LDAP…) and must run in a thread: ``decide`` is blocking.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum


class Access(StrEnum):
    CONTROL = "control"
    WATCH = "watch"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        return user_name(self.uid)

    def describe(self) -> str:
        return f"{self.user} (uid {self.uid}, pid {self.pid})"


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _groups_of(peer: Peer) -> set[int]:
    """The peer's groups: from /proc (what the kernel uses), else from the group database."""
    groups = {peer.gid}
    with contextlib.suppress(OSError):
        with open(f"/proc/{peer.pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:])
                    return groups
    with contextlib.suppress(KeyError, OSError):
        groups.update(os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid))
    return groups


@dataclass(frozen=True)
class AccessPolicy:
    service_uid: int  # the worker's user
    socket_gid: int  # the socket file's group: its members may watch

    def decide(self, peer: Peer) -> Access:
        if peer.uid in (0, self.service_uid):
            return Access.CONTROL
        if self.socket_gid in _groups_of(peer):
            return Access.WATCH
        return Access.NONE

    def refusal(self, peer: Peer) -> str:
        return (f"permission denied: {peer.user} (uid {peer.uid}) may not use this worker's control socket; "
                f"root and {user_name(self.service_uid)} may steer it, members of group "
                f"'{group_name(self.socket_gid)}' may watch it")

    def watch_only(self, peer: Peer, command: str) -> str:
        return (f"permission denied: {peer.user} may watch this worker (group '{group_name(self.socket_gid)}') "
                f"but not steer it; '{command}' needs root or {user_name(self.service_uid)}")
