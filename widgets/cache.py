"""The asset cache: usage, hits/misses and downloads in flight with the jobs waiting on them."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from backend.state import CacheView, DownloadView
from widgets.format import bar, human_bytes, tidy, truncate


def usage_text(cache: CacheView) -> Text:
    if not cache.enabled:
        return Text("cache: not configured (assets are used from the share directory)", style="dim")
    text = Text("cache ", style="bold")
    pct = 100 * cache.used_bytes / cache.limit_bytes if cache.limit_bytes else 0
    text.append(bar(cache.used_bytes, cache.limit_bytes, 12), style="red" if pct > 95 else "magenta")
    text.append(f" {human_bytes(cache.used_bytes)} / {human_bytes(cache.limit_bytes)} ({pct:.0f}%)")
    text.append(f" · {cache.assets} assets · hits {cache.hits} · misses {cache.misses}", style="dim")
    if cache.evictions:
        text.append(f" · evicted {cache.evictions}", style="dim")
    return text


def download_text(dl: DownloadView, width: int = 40) -> Text:
    text = Text("↓ ", style="bold cyan")
    text.append(truncate(dl.key, width))
    text.append(" ")
    text.append(bar(dl.bytes_done, dl.bytes_total, 10), style="cyan")
    total = human_bytes(dl.bytes_total) if dl.bytes_total else "?"
    text.append(f" {human_bytes(dl.bytes_done)} / {total}")
    if dl.rate:
        text.append(f" · {human_bytes(dl.rate)}/s")
    if dl.waiting_jobs:
        text.append(f" · for {' '.join(f'#{j}' for j in dl.waiting_jobs)}", style="dim")
    if dl.error:
        text.append(f" · {dl.error}", style="bold red")
    return text


def cache_text(cache: CacheView, max_downloads: int | None, width: int = 40) -> Text:
    lines = [usage_text(cache)]
    downloads = list(cache.downloads.values())
    shown = downloads if max_downloads is None else downloads[:max_downloads]
    lines.extend(download_text(dl, width) for dl in shown)
    if len(downloads) > len(shown):
        lines.append(Text(f"  +{len(downloads) - len(shown)} more downloads — press c", style="dim"))
    return Text("\n").join(lines)


class CachePanel(Static):
    def show(self, cache: CacheView, max_downloads: int | None = 2, width: int = 40) -> None:
        self.update(tidy(cache_text(cache, max_downloads, width)))
