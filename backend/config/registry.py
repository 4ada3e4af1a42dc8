"""Every setting qaworker knows - upstream's worker settings and qaworker's own ``QAWORKER_*`` -
used by ``check-config``'s unknown-key warnings and by the README's configuration table.

To add a setting: a typed one is a ``tunable(...)`` field in tuning.py; one kept as a string goes
into ``STRING_SETTINGS`` below. Then run ``python -m backend.config.readme`` to update the README.
"""

from __future__ import annotations

from backend.config.keys import Setting
from backend.config.tuning import SLOT_SETTINGS, WORKER_SETTINGS

_OWN_CGROUPS = ("not used: each job gets its own cgroup v2 under `QAWORKER_CGROUP` (default: qaworker's own "
                "cgroup when systemd delegates it, the hierarchy found in /proc/self/mountinfo)")
_CACHE_IN_PROCESS = "not used: qaworker's asset cache runs in the worker process (no cache service to talk to)"
_PORTS = ("not used: they place the web UI's and the cache service's ports; qaworker has no cache service and "
          "takes each web UI's port from `HOST`")

# known, passed on or used as strings (no typed value)
STRING_SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "web UI hosts, space separated (`host`, `host:port`, `http(s)://host[:port]`); `--host` "
            "overrides it", shown_default="localhost"),
    Setting("WORKER_CLASS", "worker classes sent at registration, comma separated",
            shown_default="`qemu_<arch>` of the CPU and its compatible archs"),
    Setting("WORKER_HOSTNAME", "address the web UI and other workers reach this worker by",
            shown_default="`localhost` if every web UI is local, else the FQDN"),
    Setting("ARCH", "CPU architecture sent at registration (skips `lscpu`)"),
    Setting("PARALLEL_ONE_HOST_ONLY", "sent at registration as `parallel_one_host_only`"),
    Setting("CACHEDIRECTORY", "enables the shared asset and test cache in this directory", env="OPENQA_CACHE_DIR"),
    Setting("LOG_LEVEL", "log level (`--verbose` = debug)", shown_default="info"),
    Setting("LOG_DIR", "where the dashboard writes `qaworker.log` (headless: stderr/journald)",
            env="OPENQA_WORKER_LOG_DIR"),
    Setting("GENERAL_HW_CMD_DIR", "passed to jobs; only honoured from the worker config (removed from job settings)"),
    Setting("GIT_CACHE_DIR", "passed to jobs; only honoured from the worker config (removed from job settings)"),
    Setting("GIT_CACHE_DIR_LIMIT", "passed to jobs; only honoured from the worker config"),
    Setting("EXTERNAL_VIDEO_ENCODER", "passed to jobs; only honoured from the worker config", prefix=True),
    # [<host>] sections
    Setting("SHARE_DIRECTORY", "the web UI's share directory as mounted here",
            where="host", shown_default="`$OPENQA_BASEDIR/openqa/share`"),
    Setting("TESTPOOLSERVER", "rsync source of the tests (with `CACHEDIRECTORY`)", where="host"),
    # job settings the worker interprets; in workers.ini they go into vars.json (and win over the job's)
    Setting("MAX_JOB_TIME", "job setting: seconds the test may run", where="job", default=7200),
    Setting("MAX_SETUP_TIME", "job setting: seconds the setup may take", where="job", default=3600),
    Setting("TIMEOUT_SCALE", "job setting: multiplies `MAX_JOB_TIME`", where="job"),
    Setting("OPTIMIZE_IMAGES", "job setting: 0 skips screenshot optimisation", where="job", default=True),
    Setting("USE_PNGQUANT", "job setting: optimise screenshots with pngquant", where="job", default=False),
    Setting("ISOTOVIDEO", "job setting: a custom isotovideo command", where="job"),
    Setting("OS_AUTOINST_GIT_REPO", "job setting: run isotovideo from a fresh clone of this os-autoinst "
            "repository in rootless podman (no podman: `setup failure`); `ISOTOVIDEO` wins", where="job"),
    Setting("OS_AUTOINST_GIT_BRANCH", "job setting: the branch cloned", where="job", shown_default="master"),
    Setting("OS_AUTOINST_CONTAINER_IMAGE", "job setting: the podman image (only with `OS_AUTOINST_GIT_REPO`)",
            where="job", shown_default="`registry.opensuse.org/devel/openqa/containers/os-autoinst_dev:latest`"),
    # environment only
    Setting("OPENQA_CONFIG", "directory searched first for workers.ini and client.conf", where="env"),
    Setting("OPENQA_BASEDIR", "base of the pool and share directories", where="env", shown_default="/var/lib"),
    Setting("OPENQA_API_KEY", "API key (client.conf fills in; `--apikey` wins)", where="env"),
    Setting("OPENQA_API_SECRET", "API secret (client.conf fills in; `--apisecret` wins)", where="env"),
    Setting("HTTP_PROXY", "proxy for `http://` web UIs (REST and websocket) and assets (also `http_proxy`); "
            "a loopback web UI is never proxied", where="env"),
    Setting("HTTPS_PROXY", "proxy for `https://` web UIs and assets (also `https_proxy`)", where="env"),
    Setting("NO_PROXY", "hosts never proxied, comma separated: names (`.example.com` = with subdomains), "
            "addresses, `*` (also `no_proxy`)", where="env"),
    Setting("QAWORKER_SYSTEM_CONFIG_DIRS", "colon-separated replacement of `/etc/openqa:/usr/etc/openqa`",
            where="env"),
)

# known upstream settings qaworker does not act on, with the reason (check-config warns about them)
UNSUPPORTED: tuple[Setting, ...] = (
    Setting("CACHESERVICEURL", _CACHE_IN_PROCESS),
    Setting("OPENQA_CACHE_ATTEMPTS", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_ATTEMPT_SLEEP_TIME", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_SERVICE_POLL_DELAY", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_MAX_INACTIVE_JOBS", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_MAX_INACTIVE_JOBS_HARD_LIMIT", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_WORKER_CACHE_SERVICE_CHECK_INACTIVITY_TIMEOUT", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_SERVICE_QUIET", _CACHE_IN_PROCESS, where="env"),
    Setting("OPENQA_CACHE_SERVICE_SQLITE_JOURNAL_MODE", "not used: qaworker always opens `cache.sqlite` in WAL "
            "mode, so readers never wait for a download's write", where="env"),
    Setting("OPENQA_SQLITE_BUSY_TIMEOUT", "not used: qaworker waits up to 60 s for a busy `cache.sqlite`, in a "
            "thread of its own", where="env"),
    Setting("OPENQA_SQLITE_SLOW_QUERY", "not used: `cache.sqlite` work runs in a thread of its own; there is no "
            "slow-query log", where="env"),
    Setting("OPENQA_BASE_PORT", _PORTS, where="env"),
    Setting("OPENQA_SERVICE_PORT_DELTA", _PORTS, where="env"),
    Setting("OPENQA_PORT_", _PORTS, where="env", prefix=True),
    Setting("OPENQA_CGROUP_SLICE", _OWN_CGROUPS, where="env"),
    Setting("MOJO_CGROUP_FS", _OWN_CGROUPS, where="env"),
    Setting("OPENQA_LOGFILE", "not used: headless logs go to stderr/journald, the dashboard's to `LOG_DIR`",
            where="env"),
)

TYPED_SETTINGS: tuple[Setting, ...] = (*SLOT_SETTINGS, *WORKER_SETTINGS)
ALL_SETTINGS: tuple[Setting, ...] = (*TYPED_SETTINGS, *STRING_SETTINGS)


def known_setting(key: str) -> Setting | None:
    """The setting named ``key`` (a workers.ini key or an environment variable), if qaworker knows it."""
    for setting in (*ALL_SETTINGS, *UNSUPPORTED):
        if setting.name == key or (setting.prefix and key.startswith(setting.name)):
            return setting
    return None


def workers_ini_warning(key: str, origin: str) -> str | None:
    """One line about a workers.ini key qaworker does not act on (None: it does)."""
    setting = known_setting(key)
    if setting is None:
        return (f"{origin} {key}: not a setting qaworker knows; it is still passed into every job's "
                "settings (vars.json), as upstream does")
    if setting in UNSUPPORTED:
        return f"{origin} {key}: {setting.meaning}"
    if setting.where == "env":
        return f"{origin} {key}: read from the environment only; this workers.ini value only goes into vars.json"
    if setting.where == "host":
        return f"{origin} {key}: only read from a [<host>] section; here it only goes into vars.json"
    return None


def host_section_warning(key: str, origin: str, allowed: tuple[str, ...]) -> str | None:
    """One line about a key of a ``[<host>]`` section that is ignored there."""
    if key in allowed:
        return None
    return f"{origin} {key}: ignored in a [<host>] section (it may hold {', '.join(allowed)})"
