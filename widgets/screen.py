"""The test's screen: the newest screenshot of the running job, drawn with textual-image.

Kitty's graphics protocol or Sixel where the terminal has them, coloured half cells elsewhere (plain
SSH, tmux) — textual-image asks the terminal once, when this module is imported, which is why it
must be imported before the app starts. ``QAWORKER_SCREEN=halfcell|sixel|tgp|unicode`` overrides the
choice (the snapshot tests use half cells).

The panel tells the runtime's ``screens`` source which slot it shows (``want``): only then is the
pool looked at, and only then do screenshots travel over the control socket. PNGs are decoded and
scaled in a thread, never on the event loop the worker may share with the dashboard.
"""

from __future__ import annotations

import io
import os
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_image import widget as image_widgets

from backend.state import SlotView
from widgets.format import tidy

ENV = "QAWORKER_SCREEN"
MAX_PIXELS = (800, 600)  # decoded size kept for drawing: enough for Sixel/Kitty at panel size

_RENDERERS = {"halfcell": image_widgets.HalfcellImage, "sixel": image_widgets.SixelImage,
              "tgp": image_widgets.TGPImage, "unicode": image_widgets.UnicodeImage}


def image_class(choice: str | None = None) -> type:
    choice = (choice if choice is not None else os.environ.get(ENV, "")).strip().lower()
    return _RENDERERS.get(choice, image_widgets.Image)


def decode(png: bytes, max_size: tuple[int, int] = MAX_PIXELS) -> Any:
    """PNG bytes → an RGB PIL image no larger than ``max_size`` (blocking: run it in a thread)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
    rgb.thumbnail(max_size)
    return rgb


def caption(slot: SlotView | None, frame: Any, now: float) -> Text:
    if slot is None or slot.job is None:
        return Text("no job running", style="dim")
    if frame is None or frame.job_id != slot.job.job_id:
        return Text("waiting for the first screenshot…", style="dim italic")
    text = Text.assemble((frame.name, "bold"))
    age = max(0, int(now - frame.ts))
    text.append(f" · {age} s ago" if age < 120 else f" · {age // 60} min ago", style="dim")
    return text


class ScreenPanel(Vertical):
    """Newest screenshot of one slot's running job."""

    DEFAULT_CSS = """
    ScreenPanel { border: round $primary-darken-2; border-title-color: $text-muted; height: 1fr; }
    ScreenPanel.empty { display: none; }
    ScreenPanel > .screen-image { width: auto; height: auto; max-height: 100%; }
    ScreenPanel > .screen-caption { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, renderer: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image_class = image_class(renderer)
        self._shown: tuple[int, str, float] | None = None  # (job, file, mtime) on screen
        self._decoding: tuple[int, str, float] | None = None
        self._source: Any = None
        self.border_title = "screen"

    def compose(self) -> ComposeResult:
        yield Static(classes="screen-caption", id="screen-caption")
        yield self._image_class(classes="screen-image")

    def on_unmount(self) -> None:
        if self._source is not None:
            self._source.want(self, ())

    def show(self, slot: SlotView | None, source: Any, now: float) -> None:
        """``source`` is the runtime's ``screens`` (ScreenWatcher, RemoteScreens) or None."""
        self._source = source
        narrow = any(a.has_class("narrow") for a in self.ancestors)  # no room: do not even fetch
        running = slot is not None and slot.job is not None and not narrow
        if source is not None:
            source.want(self, (slot.instance,) if running and slot is not None else ())
        frame = source.latest(slot.instance) if source is not None and slot is not None and running else None
        if frame is not None and slot is not None and slot.job is not None and frame.job_id != slot.job.job_id:
            frame = None
        if source is None:
            self.query_one("#screen-caption", Static).update(Text("no screens from this worker", style="dim"))
        else:
            self.query_one("#screen-caption", Static).update(tidy(caption(slot, frame, now)))
        key = (frame.job_id, frame.name, frame.ts) if frame is not None else None
        self.set_class(key is None and self._shown is None and self._decoding is None, "empty")  # room for the log
        if key is None:
            if self._shown is not None:
                self.query_one(".screen-image").image = None  # type: ignore[attr-defined]
                self._shown = None
            return
        if key != self._shown and key != self._decoding:
            self._decoding = key
            self.run_worker(self._decode(key, frame.png), exclusive=True, group="screen-decode",
                            exit_on_error=False)

    async def _decode(self, key: tuple[int, str, float], png: bytes) -> None:
        import asyncio

        try:
            image = await asyncio.to_thread(decode, png)
        except Exception:  # a broken PNG: keep the last good one
            self._decoding = None
            return
        if self._decoding == key and self.is_mounted:
            self.query_one(".screen-image").image = image  # type: ignore[attr-defined]
            self._shown, self._decoding = key, None
