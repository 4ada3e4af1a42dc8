"""Benchmark (issue 7 §3): qaworker vs the Perl openqa-worker on the real stack (../shared/realstack), same run.

Needs the realstack up (Perl worker instance 1, WORKER_CLASS realstack) and root (to start 3 more Perl
workers exactly like up.sh does: instances 2-4, WORKER_CLASS realstack_extra; they are stopped by PID at
the end, instance 1 is never touched). qaworker runs as one process with 4 slots (WORKER_CLASS
qaworker_bench). Phases, medians of --runs (interleaved Perl/qaworker):

1. idle RSS of 4 slots: 4 Perl worker processes vs 1 qaworker process (+ its helper processes);
2. null-backend job (/usr/bin/isotovideo): POST -> first seen scheduled/running/uploading/done (poll --poll, 0.05 s),
   worker CPU seconds per job (the worker process itself, not isotovideo);
3. a job with 500 screenshots, 1024x768 by default (the simulator as ISOTOVIDEO job setting for both workers):
   uploading -> done, POST -> done, the image bytes the web UI stored, qaworker's event-loop lag (10 ms probe
   in its loop), OPTIMIZE_IMAGES=0 and =1 (oxipng, the default; the Perl worker of this stack never optimises);
4. cache: a 1 GiB HDD_1 asset needed by 4 jobs at once on qaworker's 4 slots (Perl: README figure only).

    .venv/bin/python bench/vs_perl.py [--runs 5] [--upload-runs 3] [--no-cache] [--no-upload] [--no-latency]
                                      [--screenshot-size 1024x768] [--poll 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    SIMULATOR,
    VENV_SITE,
    cpu_seconds,
    fmt_lag,
    helpers_of,
    is_job_process,
    lag_window,
    median,
    mib,
    print_table,
    rss_bytes,
    stop_process,
)
from tests.helpers import port_is_free
from tests.interop.conftest import RealWebUI

URL = os.environ.get("QAWORKER_REAL_WEBUI", "http://127.0.0.1:9526")
KEY = os.environ.get("QAWORKER_REAL_KEY", "AAAABBBBCCCCDDDD")
SECRET = os.environ.get("QAWORKER_REAL_SECRET", "0000111122223333")
STATE = Path(os.environ.get("REALSTACK_STATE", "/run/openqa-realstack"))
OURS_CLASS, PERL_CLASS, EXTRA_CLASS = "qaworker_bench", "realstack", "realstack_extra"
PERL_EXTRA = (2, 3, 4)
ASSET = Path("/var/lib/openqa/share/factory/hdd/qaworker-bench-1g.qcow2")
FINAL = ("done", "cancelled")
TESTRESULTS = Path("/var/lib/openqa/testresults")


# -- the workers --------------------------------------------------------------------------------------------

class PerlExtras:
    """3 more Perl workers (instances 2-4), started like up.sh's start_daemon, with their own config dir."""

    def __init__(self, tmp: Path) -> None:
        self.conf = tmp / "perl-config"
        self.procs: list[subprocess.Popen] = []
        self.made_pools: list[Path] = []
        self.log = tmp / "perl-extra.log"

    def start(self) -> list[int]:
        self.conf.mkdir()
        self.conf.chmod(0o755)
        ini = Path("/etc/openqa/workers.ini").read_text()
        ini += "".join(f"\n[{n}]\nWORKER_CLASS = {EXTRA_CLASS}\n" for n in PERL_EXTRA)
        (self.conf / "workers.ini").write_text(ini)
        shutil.copy("/etc/openqa/client.conf", self.conf / "client.conf")
        shutil.chown(self.conf / "client.conf", "_openqa-worker", "root")
        (self.conf / "client.conf").chmod(0o640)
        for n in PERL_EXTRA:
            pool = Path(f"/var/lib/openqa/pool/{n}")
            if not pool.exists():
                pool.mkdir(parents=True)
                self.made_pools.append(pool)
            shutil.chown(pool, "_openqa-worker", "root")
            cmd = ["setsid", "setpriv", "--reuid=_openqa-worker", "--regid=nogroup", "--init-groups",
                   "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/run/openqa", "USER=_openqa-worker",
                   "LANG=C.UTF-8", "OPENQA_BASE_PORT=9526", f"OPENQA_CONFIG={self.conf}",
                   "/usr/share/openqa/script/worker", "--instance", str(n)]
            # setsid does not fork (Popen's child is no group leader): the PID is the worker's
            self.procs.append(subprocess.Popen(cmd, cwd="/", stdin=subprocess.DEVNULL,
                                               stdout=self.log.open("ab"), stderr=subprocess.STDOUT))
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            try:  # left-over members of its process group (it was started with setsid)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(10)
        for pool in self.made_pools:
            shutil.rmtree(pool, ignore_errors=True)


def free_instances(count: int) -> list[int]:
    """Outside 40-400 (the interop tests' free_instance range): a second worker registering with the same
    host and instance at the real web UI would take over this slot's worker id and websocket."""
    for base in range(900, 1300, count):
        numbers = list(range(base, base + count))
        if all(port_is_free(20003 + 10 * n) and port_is_free(20002 + 10 * n) for n in numbers):
            return numbers
    raise RuntimeError("no free instance numbers")


def start_qaworker(tmp: Path, instances: list[int], *, lag_out: Path | None = None,
                   cache_dir: Path | None = None) -> subprocess.Popen:
    conf = tmp / "qaworker-config"
    conf.mkdir(exist_ok=True)
    cache = ""
    if cache_dir is not None:
        cache_dir.mkdir(exist_ok=True)
        cache = f"CACHEDIRECTORY = {cache_dir}\nCACHELIMIT = 5\n"
    (conf / "workers.ini").write_text(
        f"[global]\nHOST = {URL}\nWORKER_HOSTNAME = 127.0.0.1\nWORKER_CLASS = {OURS_CLASS}\n{cache}")
    (conf / "client.conf").write_text(f"[127.0.0.1]\nkey = {KEY}\nsecret = {SECRET}\n")
    env = {**os.environ, "OPENQA_CONFIG": str(conf), "PYTHONUNBUFFERED": "1"}
    args = ["--no-ui", "--instances", f"{instances[0]}-{instances[-1]}", "--isotovideo", "/usr/bin/isotovideo"]
    if lag_out is None:
        cmd = [sys.executable, "-m", "app.cli", *args]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "common.py"), "--lag-out", str(lag_out), "--", *args]
    log = (tmp / "qaworker.log").open("ab")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_idle(ui: RealWebUI, instances: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = {int(w["instance"]) for w in ui.workers() if w.get("status") == "idle"}
        if set(instances) <= idle:
            return
        time.sleep(0.3)
    raise RuntimeError(f"workers {instances} not idle after {timeout} s")


def own_pids(pid: int) -> list[int]:
    """The worker process and its helpers (not isotovideo)."""
    return [pid] + [p.pid for p in helpers_of(pid, is_job_process)]


def worker_cpu(pid: int) -> float:
    total = 0.0
    for p in own_pids(pid):
        try:
            total += cpu_seconds(p)
        except psutil.Error:
            pass
    return total


def reaped_cpu(pid: int) -> float:
    """CPU of the worker's reaped children: isotovideo (both) and the Perl worker's upload subprocesses."""
    t = psutil.Process(pid).cpu_times()
    return t.children_user + t.children_system


# -- measurements -------------------------------------------------------------------------------------------

def run_job(ui: RealWebUI, worker_pid: int, poll: float = 0.05, timeout: float = 300,
            **settings: str) -> dict:
    """POST one job, poll it, record when each state was first seen (s after the POST) and worker CPU."""
    cpu0, kids0 = worker_cpu(worker_pid), reaped_cpu(worker_pid)
    t0 = time.monotonic()
    job_id = ui.schedule(**settings)
    seen: dict[str, float] = {}
    while True:
        job = ui.job(job_id)
        now = time.monotonic() - t0
        seen.setdefault(job["state"], now)
        if job["state"] in FINAL or now > timeout:
            break
        time.sleep(poll)
    t_end = time.time()
    time.sleep(0.5)  # post-job bookkeeping of the worker belongs to the job
    return {"id": job_id, "result": job.get("result"), "seen": seen, "cpu": worker_cpu(worker_pid) - cpu0,
            "cpu_all": worker_cpu(worker_pid) - cpu0 + reaped_cpu(worker_pid) - kids0,
            "t_end": t_end, "t_start": t_end - seen.get("done", now)}


def stored_image_bytes(job_id: int) -> int:
    """Bytes of the job's screenshots in the web UI's image store (its result dir links to them)."""
    dirs = list(TESTRESULTS.glob(f"*/{job_id:08d}-*")) or list(TESTRESULTS.glob(f"{job_id:08d}-*"))
    total = 0
    for folder in dirs:
        for link in folder.glob("*.png"):
            try:
                total += link.stat().st_size
            except OSError:
                pass
    return total


def span(seen: dict[str, float], a: str, b: str) -> float:
    """Seconds from first seen state a (or the POST) to first seen state b (or the next later one)."""
    order = ["scheduled", "assigned", "setup", "running", "uploading", "done"]
    start = seen.get(a, 0.0)
    for state in order[order.index(b):]:
        if state in seen:
            return seen[state] - start
    return float("nan")


def show(tag: str, r: dict) -> None:
    states = " ".join(f"{k} {v:.2f}" for k, v in r["seen"].items())
    print(f"  {tag} job {r['id']} {r['result']}: {states} | worker CPU {r['cpu']:.3f} s, with reaped children "
          f"{r['cpu_all']:.3f} s", flush=True)


def idle_rss(perl_pids: list[int], ours: int, samples: int) -> tuple[float, float]:
    perl, mine = [], []
    for _ in range(samples):
        perl.append(rss_bytes(perl_pids))
        mine.append(rss_bytes(own_pids(ours)))
        time.sleep(1)
    return median(mine), median(perl)


def latency(ui: RealWebUI, perl_pid: int, ours: int, runs: int, poll: float) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"perl": [], "ours": []}
    print("\nnull-backend job (real isotovideo):", flush=True)
    for _ in range(runs):
        for tag, pid, cls in (("perl", perl_pid, PERL_CLASS), ("ours", ours, OURS_CLASS)):
            time.sleep(1)
            r = run_job(ui, pid, poll, WORKER_CLASS=cls)
            show(tag, r)
            out[tag].append(r)
    return out


def upload_settings(size: str) -> dict[str, str]:
    """Module names unique per job: the simulator seeds screenshots by name, and the web UI would otherwise
    already know every image (md5) after the first job and skip uploading it."""
    iso = f"env PYTHONPATH={VENV_SITE} /usr/bin/python3 {SIMULATOR}"
    token = f"{time.time_ns() % 10**12:x}"
    return {"ISOTOVIDEO": iso, "SIM_MODULES": ",".join(f"j{token}m{i}" for i in range(1, 6)), "SIM_SCREENSHOTS": "100",
            "SIM_SCREENSHOT_SIZE": size, "SIM_MODULE_SECONDS": "0.1", "TEST": "bench-500-screenshots"}


def uploads(ui: RealWebUI, perl_pid: int, ours: int, runs: int, size: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"perl": [], "ours0": [], "ours1": []}
    print(f"\n500 screenshots ({size}, simulator as ISOTOVIDEO):", flush=True)
    for _ in range(runs):
        for tag, pid, cls, opt in (("perl", perl_pid, PERL_CLASS, "0"), ("ours0", ours, OURS_CLASS, "0"),
                                   ("ours1", ours, OURS_CLASS, "1")):
            time.sleep(1)
            r = run_job(ui, pid, WORKER_CLASS=cls, OPTIMIZE_IMAGES=opt, **upload_settings(size))
            r["stored"] = stored_image_bytes(r["id"])
            show(tag, r)
            print(f"    images stored by the web UI: {r['stored'] / 1e6:.2f} MB", flush=True)
            out[tag].append(r)
    return out


def cache_download(ui: RealWebUI, ours: int) -> list[float]:
    """4 jobs needing the same 1 GiB HDD_1 on 4 slots; returns POST -> done of each (seconds)."""
    with ASSET.open("wb") as f:
        f.write(b"qaworker bench 1 GiB asset\n")
        f.truncate(1 << 30)
    ASSET.chmod(0o644)
    print("\ncache: 4 jobs, one 1 GiB HDD_1 asset, 4 qaworker slots:", flush=True)
    t0 = time.monotonic()
    ids = [ui.schedule(WORKER_CLASS=OURS_CLASS, HDD_1=ASSET.name) for _ in range(4)]
    done: dict[int, float] = {}
    while len(done) < 4 and time.monotonic() - t0 < 600:
        for job_id in ids:
            if job_id not in done and ui.job(job_id)["state"] in FINAL:
                done[job_id] = time.monotonic() - t0
        time.sleep(0.1)
    results = [ui.job(i).get("result") for i in ids]
    print(f"  jobs {ids}: {results}, POST -> done {sorted(round(v, 2) for v in done.values())} s", flush=True)
    return sorted(done.values())


# -- report -------------------------------------------------------------------------------------------------

def report(rss: tuple[float, float], lat: dict, up: dict | None, lag: dict | None, cache: list[float] | None,
           runs: int) -> None:
    def med(rows: list[dict], a: str, b: str) -> float:
        return median(span(r["seen"], a, b) for r in rows)

    p, o = lat["perl"], lat["ours"]
    rows = [
        ("idle RSS, 4 slots", "MiB", mib(rss[0]), mib(rss[1]), "<= 0.2x"),
        ("POST -> done (null job)", "s", med(o, "post", "done"), med(p, "post", "done"), ""),
        ("scheduled -> running", "s", med(o, "scheduled", "running"), med(p, "scheduled", "running"), "<= 1.0x"),
        ("uploading -> done", "s", med(o, "uploading", "done"), med(p, "uploading", "done"), "<= 0.5x"),
        ("worker CPU per job", "s", median(r["cpu"] for r in o), median(r["cpu"] for r in p), "<= 1x"),
        ("CPU per job incl. reaped children", "s", median(r["cpu_all"] for r in o),
         median(r["cpu_all"] for r in p), "<= 0.8x"),
    ]
    if up:
        q = up["perl"]
        for tag, label in (("ours0", "OPTIMIZE_IMAGES=0"), ("ours1", "OPTIMIZE_IMAGES=1")):
            rows.append((f"500 screenshots uploading -> done, {label}", "s", med(up[tag], "uploading", "done"),
                         med(q, "uploading", "done"),
                         "<= 0.5x" if tag == "ours0" else "<= 1.0x (Perl never optimises)"))
            rows.append((f"500 screenshots POST -> done, {label}", "s", med(up[tag], "post", "done"),
                         med(q, "post", "done"), ""))
            rows.append((f"500 screenshots worker CPU, {label}", "s", median(r["cpu"] for r in up[tag]),
                         median(r["cpu"] for r in q), ""))
            rows.append((f"500 screenshots CPU incl. reaped children, {label}", "s",
                         median(r["cpu_all"] for r in up[tag]), median(r["cpu_all"] for r in q), ""))
            rows.append((f"500 screenshots stored image bytes, {label}", "MB",
                         median(r["stored"] / 1e6 for r in up[tag]), median(r["stored"] / 1e6 for r in q),
                         "<= 0.5x" if tag == "ours1" else ""))
    print_table(f"qaworker vs Perl openqa-worker (realstack, medians of {runs} runs)", rows)
    if lag:
        print("\nqaworker event-loop lag (10 ms probe), during the 500-screenshot jobs (POST -> done):")
        for tag, stats in lag.items():
            print(f"  {tag}: {fmt_lag(stats)}")
    if cache:
        print(f"\ncache, 1 GiB HDD_1 asset for 4 jobs on 4 qaworker slots (cold cache, one run): last job done "
              f"{cache[-1]:.1f} s after the POST, first {cache[0]:.1f} s; Perl + cache service "
              "(realstack README): 1 MiB asset 11.5 s per job with packaged defaults (two 5 s polls)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--upload-runs", type=int, default=3, help="the Perl worker needs ~1 min per job")
    parser.add_argument("--screenshot-size", default="1024x768")
    parser.add_argument("--no-latency", action="store_true", help="skip the null-job latency phase")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between job state polls in the null-job phase (the resolution of its states)")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--no-upload", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (starts Perl workers as _openqa-worker)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up (Perl workers, asset) on SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ui = RealWebUI(URL, KEY, SECRET)
    ui.cancel_scheduled(OURS_CLASS)
    perl_pid = int((STATE / "worker1.pid").read_text().split()[0])
    tmp = Path(tempfile.mkdtemp(prefix="bench-vs-perl-"))
    tmp.chmod(0o711)  # the Perl workers (_openqa-worker) must reach their config dir inside
    instances = free_instances(4)
    new_pools = [Path(f"/var/lib/openqa/pool/{n}") for n in instances]
    new_pools = [p for p in new_pools if not p.exists()]  # qaworker creates them; removed at the end
    extras = PerlExtras(tmp)
    ours: subprocess.Popen | None = None
    up = lag = cache = None
    try:
        extra_pids = extras.start()
        ours = start_qaworker(tmp, instances)
        wait_idle(ui, [1, *PERL_EXTRA])
        wait_idle(ui, instances)
        print(f"Perl workers {[perl_pid, *extra_pids]}, qaworker {ours.pid} (instances {instances}); settling",
              flush=True)
        time.sleep(5)
        rss = idle_rss([perl_pid, *extra_pids], ours.pid, max(5, args.runs))
        print(f"idle RSS 4 slots: qaworker {mib(rss[0]):.1f} MiB, Perl {mib(rss[1]):.1f} MiB", flush=True)
        lat = latency(ui, perl_pid, ours.pid, 0 if args.no_latency else args.runs, args.poll)
        if not (args.no_upload and args.no_cache):
            stop_process(ours)  # again with the lag probe (and a cache) for the upload/cache phases
            lag_file = tmp / "lag.json"
            ours = start_qaworker(tmp, instances, lag_out=lag_file, cache_dir=tmp / "cache")
            wait_idle(ui, instances)
            time.sleep(2)
            if not args.no_upload:
                up = uploads(ui, perl_pid, ours.pid, args.upload_runs, args.screenshot_size)
            if not args.no_cache:
                cache = cache_download(ui, ours.pid)
            stop_process(ours)
            timed = json.loads(lag_file.read_text()) if lag_file.exists() else []
            if up:
                lag = {}
                for tag in ("ours0", "ours1"):
                    samples = [s for r in up[tag] for s in timed if r["t_start"] <= s[0] <= r["t_end"]]
                    lag[f"OPTIMIZE_IMAGES={tag[-1]}"] = lag_window(samples, 0, float("inf"))
                idle = [s for s in timed if s[0] < up["perl"][0]["t_start"]]
                lag["idle, before the jobs"] = lag_window(idle, 0, float("inf"))
        report(rss, lat, up, lag, cache, args.runs)
    finally:
        if ours is not None:
            stop_process(ours)
        extras.stop()
        ASSET.unlink(missing_ok=True)
        ui.cancel_scheduled(OURS_CLASS)
        for pool in new_pools:
            shutil.rmtree(pool, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
