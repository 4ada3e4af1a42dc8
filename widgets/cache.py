"""The asset cache: usage, hits/misses and downloads in flight with the jobs waiting on them."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from backend.state import CacheView, DownloadView, WorkerView
from widgets.format import bar, human_bytes, plural, tidy, truncate


def usage_text(cache: CacheView) -> Text:
    if not cache.enabled:
        return Text("cache: not configured (assets are used from the share directory)", style="dim")
    text = Text("cache ", style="bold")
    pct = 100 * cache.used_bytes / cache.limit_bytes if cache.limit_bytes else 0
    text.append(bar(cache.used_bytes, cache.limit_bytes, 12), style="red" if pct > 95 else "magenta")
    text.append(f" {human_bytes(cache.used_bytes)} / {human_bytes(cache.limit_bytes)} ({pct:.0f}%)")
    text.append(f" · {plural(cache.assets, 'asset')} · hits {cache.hits} · misses {cache.misses}", style="dim")
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


# ----- the cache view (c): the whole cache on one screen --------------------------------------------


def overview_text(cache: CacheView, width: int = 60) -> Text:
    """Usage with free room, then the counters with the hit rate."""
    if not cache.enabled:
        return Text("The asset cache is not configured (CACHEDIRECTORY in workers.ini): every job uses the\n"
                    "assets in the web UI's share directory directly, and nothing is downloaded here.",
                    style="dim")
    pct = 100 * cache.used_bytes / cache.limit_bytes if cache.limit_bytes else 0
    text = Text("usage   ", style="bold")
    text.append(bar(cache.used_bytes, cache.limit_bytes, max(10, min(40, width - 56))),
                style="red" if pct > 95 else "magenta")
    text.append(f" {human_bytes(cache.used_bytes)} of {human_bytes(cache.limit_bytes)} ({pct:.0f}%)")
    if cache.limit_bytes:
        text.append(f" · {human_bytes(max(0, cache.limit_bytes - cache.used_bytes))} free", style="dim")
    asked = cache.hits + cache.misses
    text.append("\ncounts  ", style="bold")
    text.append(f"{plural(cache.assets, 'asset')} · hits {cache.hits} · "
                f"misses {cache.misses}")
    text.append(f" · hit rate {100 * cache.hits / asked:.0f}%" if asked else " · no asset asked for yet", style="dim")
    text.append(f" · evicted {cache.evictions}", style="dim")
    return text


def _eta(dl: DownloadView) -> str:
    if not dl.rate or not dl.bytes_total or dl.bytes_done >= dl.bytes_total:
        return ""
    seconds = (dl.bytes_total - dl.bytes_done) / dl.rate
    return f" · ~{seconds / 60:.0f} min left" if seconds >= 90 else f" · ~{seconds:.0f} s left"


def downloads_text(cache: CacheView, width: int = 60) -> Text:
    downloads = list(cache.downloads.values())
    head = Text(f"Downloads in flight ({len(downloads)})", style="bold")
    if not downloads:
        head.append("\n  none: an asset is downloaded here once and shared by every slot's jobs", style="dim")
        return head
    lines = [head]
    for dl in downloads:  # two lines each: the asset's whole name, then how far it is
        name = Text("↓ ", style="bold cyan")
        name.append(truncate(dl.key, width - 2))
        state = Text("  ")
        state.append(bar(dl.bytes_done, dl.bytes_total, 16 if width >= 100 else 8), style="cyan")
        total = human_bytes(dl.bytes_total) if dl.bytes_total else "size unknown yet"
        state.append(f" {human_bytes(dl.bytes_done)} / {total}")
        if dl.rate:
            state.append(f" · {human_bytes(dl.rate)}/s{_eta(dl)}")
        if dl.waiting_jobs:
            jobs = len(dl.waiting_jobs)
            state.append(f" · {jobs} job{'s' if jobs != 1 else ''} waiting", style="dim")
        lines += [name, state]
        if dl.error:
            lines.append(Text(f"  {truncate(dl.error, width - 2)}", style="bold red"))
    return Text("\n").join(lines)


def waiting_text(view: WorkerView, width: int = 60) -> Text:
    """Which job (on which slot) waits for which download."""
    slot_of = {s.job.job_id: s.instance for s in view.slots.values() if s.job is not None}
    waits: dict[int, list[str]] = {}
    for dl in view.cache.downloads.values():
        for job_id in dl.waiting_jobs:
            waits.setdefault(job_id, []).append(dl.key.rsplit("/", 1)[-1])
    text = Text("Jobs waiting for the cache", style="bold")
    if not waits:
        text.append("\n  none", style="dim")
    for job_id, names in sorted(waits.items()):
        where = f" (slot {slot_of[job_id]})" if job_id in slot_of else ""
        head = f"\n  #{job_id}{where}: "
        text.append(head)
        text.append(truncate(", ".join(names), max(10, width - len(head))), style="dim")
    return text
