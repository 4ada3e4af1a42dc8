"""The line that tells an attached dashboard where it is attached, or that the worker went away."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from widgets.format import human_duration, tidy


def link_text(link, now: float) -> Text:
    """``link`` is backend.control.client.Link."""
    where = str(link.socket) if link.socket else "?"
    since = human_duration(now - link.since)
    match link.state:
        case "attached":
            text = Text.assemble(("⇄ attached", "bold green"))
            text.append(f" to qaworker pid {link.pid} · {where}", style="")
            if link.read_only or link.access == "watch":
                text.append(" · watching only" if link.access == "watch" else " · read-only", style="bold yellow")
            text.append(" · q detach · Q stop the worker", style="dim")
        case "connecting":
            text = Text.assemble(("… connecting", "bold yellow"))
            text.append(f" to {where}")
            if link.reason:
                text.append(f" · {link.reason}", style="dim")
        case "lost":
            text = Text.assemble(("⚠ worker gone", "bold red"))
            text.append(f" for {since}: {link.reason or 're-attaching…'}", style="red")
            text.append(" · q leaves", style="dim")
        case "failed":
            text = Text.assemble(("✖ cannot attach", "bold red"))
            text.append(f": {link.reason}", style="red")
        case _:
            text = Text(f"{link.state}: {link.reason}", style="dim")
    return text


class AttachBar(Static):
    DEFAULT_CSS = """
    AttachBar { height: 1; padding: 0 1; background: $panel; color: $text; text-wrap: nowrap; text-overflow: ellipsis; }
    AttachBar.gone { background: $error 25%; }
    """

    def show(self, link, now: float) -> None:
        self.update(tidy(link_text(link, now)))
        self.set_class(link.state in ("lost", "failed"), "gone")
