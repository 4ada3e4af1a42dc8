"""What a slot needs from the process it runs in, passed in instead of the Worker itself.

The worker owns these shared resources (event bus, asset cache, image pool, stop flags) and gives
every slot the same ``SlotServices``. A slot never reaches into the Worker: everything it may use
or tell the worker is here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.config.proxy import ProxySettings
from backend.engine.cgroup import Cgroups
from backend.events import EventBus
from backend.job.imageopt import ImagePool
from backend.ports import AssetProvider, TestsProvider

if TYPE_CHECKING:
    from backend.cache.service import AssetCache
    from backend.config import HostConfig
    from backend.webui.client import ApiClient

RequestObserver = Callable[[str, str, int | None, bool], None]


@dataclass
class StopFlags:
    """The worker's stop mode, shared by all slots (set by the worker, read by the slots)."""

    draining: bool = False  # finish current jobs and their sequences, take no new ones
    quitting: bool = False  # stop every job now (reason quit)

    @property
    def stopping(self) -> bool:
        return self.draining or self.quitting


@dataclass
class SlotServices:
    bus: EventBus
    prjdir: Path
    isotovideo: str
    no_cleanup: bool
    env: Mapping[str, str]  # the OPENQA_* environment seen at load time
    interface_version: int
    worker_hostname: str | None
    image_pool: ImagePool
    cgroups: Cgroups = field(default_factory=lambda: Cgroups(None, "not set up"))  # per-job cgroups (or off)
    flags: StopFlags = field(default_factory=StopFlags)
    cache: AssetCache | None = None
    test_sync_attempts: int = 3  # OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS
    proxies: ProxySettings = field(default_factory=ProxySettings)  # WorkerConfig.proxies
    request_observer: Callable[[str], RequestObserver | None] = lambda _url: None
    # what a slot tells the worker
    on_incompatible: Callable[[], None] = lambda: None  # a web UI said this worker is incompatible
    on_all_disabled: Callable[[], None] = lambda: None  # every web UI refused this slot
    on_jobs_done: Callable[[int], None] = lambda _instance: None  # TERMINATE_AFTER_JOBS_DONE: queue empty

    def asset_provider(self, client: ApiClient, host: HostConfig, job_id: int) -> AssetProvider | None:
        if self.cache is None:
            return None
        from backend.cache.provider import CacheAssetProvider

        return CacheAssetProvider(self.cache, client, host, job_id)

    def tests_provider(self, host: HostConfig) -> TestsProvider | None:
        if self.cache is None or not host.testpoolserver:
            return None
        from backend.cache.provider import CacheTestsProvider

        return CacheTestsProvider(self.cache, host, attempts=self.test_sync_attempts)
