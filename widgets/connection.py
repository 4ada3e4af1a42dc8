"""The top bar: qaworker version, uptime and the state of every web UI connection."""

from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual.widgets import Static

from backend.events import HostState
from backend.state import HostView, WorkerView
from widgets.format import HOST_ICON, HOST_STYLE, human_duration, tidy


def _host_groups(view: WorkerView) -> dict[str, list[HostView]]:
    groups: dict[str, list[HostView]] = defaultdict(list)
    for (host, _instance), hv in sorted(view.hosts.items()):
        groups[host].append(hv)
    return groups


def _state_label(hv: HostView, now: float) -> Text:
    style = HOST_STYLE.get(hv.state, "")
    label = Text(hv.state.value.replace("_", " "), style=style)
    if hv.state is HostState.FAILED:
        if hv.reason:
            label.append(f": {hv.reason}", style="red")
        if hv.next_retry_at is not None:
            wait = round(hv.next_retry_at - now)
            label.append(f" · retry in {wait}s" if wait > 0 else " · retrying…", style="yellow")
    elif hv.reason and hv.state is not HostState.CONNECTED:
        label.append(f" ({hv.reason})", style="dim")
    return label


def host_line(host: str, views: list[HostView], now: float) -> Text:
    """One line per web UI: icon, host, then each distinct state with the slots (and worker ids) in it."""
    order = list(HostState)
    worst = max(views, key=lambda v: -1 if v.state is HostState.CONNECTED else order.index(v.state))
    line = Text(f"{HOST_ICON.get(worst.state, '?')} ", style=HOST_STYLE.get(worst.state, ""))
    line.append(host, style="bold")
    by_label: dict[str, tuple[Text, list[str]]] = {}
    for hv in views:
        label = _state_label(hv, now)
        who = f"#{hv.instance}" + (f"→{hv.worker_id}" if hv.worker_id is not None else "")
        by_label.setdefault(label.plain, (label, []))[1].append(who)
    for label, who in by_label.values():
        line.append("  ")
        line.append_text(label)
        line.append(f" [{' '.join(who)}]", style="dim")
    return line


class ConnectionBar(Static):
    """Version, uptime, host states. Content is rebuilt by ``show`` from the worker view."""

    def show(self, view: WorkerView, now: float) -> None:
        head = Text("qaworker", style="bold")
        head.append(f" {view.version or '?'}", style="dim")
        head.append(f" · up {human_duration(now - view.started_at)}")
        head.append(f" · {len(view.slots)} slot{'s' if len(view.slots) != 1 else ''}")
        connected = sum(1 for h in view.hosts.values() if h.state is HostState.CONNECTED)
        head.append(f" · {connected}/{len(view.hosts)} connections up",
                    style="green" if view.hosts and connected == len(view.hosts) else "yellow")
        lines = [head]
        groups = _host_groups(view)
        if not groups:
            lines.append(Text("no web UI configured", style="bold red"))
        lines.extend(host_line(host, views, now) for host, views in groups.items())
        self.update(tidy(Text("\n").join(lines)))


class StopBanner(Static):
    """A loud one-line banner while the worker drains or quits; hidden otherwise."""

    def show(self, view: WorkerView) -> None:
        self.display = bool(view.stopping)
        if view.stopping == "drain":
            running = view.running_jobs
            self.update(f"DRAINING — taking no new jobs; exiting after {running} running job"
                        f"{'s' if running != 1 else ''}")
        elif view.stopping:
            self.update("QUITTING — stopping all jobs now")
        self.set_class(view.stopping == "quit", "quit")
