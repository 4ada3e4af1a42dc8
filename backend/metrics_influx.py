"""``GET /influxdb/minion``: the classic cache service's monitoring endpoint, in InfluxDB line protocol.

Telegraf setups that scrape the Perl cache service (``openqa-workercache``) keep working when pointed at
qaworker's metrics server. The figures map onto Minion's: a download or test sync waiting for one of the
host's ``CACHEWORKERS`` slots is an ``inactive`` job, a running one ``active``, one that ended with an
error ``failed``; ``registered`` workers are the slots. qaworker has no ``delayed`` jobs (always 0) and
adds one line of its own, ``qaworker_cache`` (bytes used, limit, assets).
"""

from __future__ import annotations

from backend import events as ev


def _line(measurement: str, url: str, fields: dict[str, int]) -> str:
    values = ",".join(f"{name}={value}i" for name, value in sorted(fields.items()))
    return f"{measurement},url={_escape_tag(url)} {values}\n"


def _escape_tag(value: str) -> str:
    """Line protocol: commas, spaces and equal signs in a tag value are backslash-escaped."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


class MinionFigures:
    """Keeps the last cache figures from the event bus; ``render`` answers /influxdb/minion."""

    def __init__(self) -> None:
        self.queue: ev.CacheQueue | None = None
        self.totals: ev.CacheTotals | None = None

    def observe(self, event: ev.Event) -> None:
        if isinstance(event, ev.CacheQueue):
            self.queue = event
        elif isinstance(event, ev.CacheTotals):
            self.totals = event

    def render(self, url: str) -> str:
        q = self.queue
        active, queued, failed, limit = (q.active, q.queued, q.failed, q.limit) if q else (0, 0, 0, 0)
        text = _line("openqa_minion_jobs", url,
                     {"active": active, "delayed": 0, "failed": failed, "inactive": queued})
        text += _line("openqa_minion_workers", url,
                      {"active": active, "inactive": max(0, limit - active), "registered": limit})
        text += _line("openqa_download_count", url, {"count": q.downloads if q else 0})
        if q is not None and q.download_rate is not None:
            text += _line("openqa_download_rate", url, {"bytes": q.download_rate})
        t = self.totals
        if t is not None:
            text += _line("qaworker_cache", url, {"bytes": t.used_bytes, "limit": t.limit_bytes, "assets": t.assets})
        return text
