"""Fixtures for the interoperability tests against the real openQA web UI (../shared/realstack)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.webui.auth import auth_headers, request_target
from tests.helpers import free_instance

ROOT = Path(__file__).resolve().parents[2]
WORKER_CLASS = "qaworker_interop"
CASEDIR = "/var/lib/openqa/share/tests/realstack"


@dataclass(frozen=True)
class JobSummary:
    """What a user sees of a finished job: outcome, modules and the names of the uploaded files."""

    id: int
    state: str
    result: str
    reason: str | None
    modules: tuple[tuple[str, str], ...]
    files: frozenset[str]

    @classmethod
    def of(cls, details: dict) -> JobSummary:
        files = {f"log:{name}" for name in details.get("logs") or []}
        files |= {f"ulog:{name}" for name in details.get("ulogs") or []}
        for module in details.get("testresults") or []:
            for step in module.get("details") or []:
                files |= {f"{key}:{step[key]}" for key in ("text", "screenshot") if step.get(key)}
        return cls(int(details["id"]), details["state"], details["result"], details.get("reason"),
                   tuple((m["name"], m["result"]) for m in details.get("testresults") or []), frozenset(files))

    def short(self) -> str:
        modules = ",".join(f"{name}={result}" for name, result in self.modules) or "-"
        text = self.reason or ""
        reason = f" ({text[:40]}{'…' if len(text) > 40 else ''})" if text else ""
        return f"{self.state}/{self.result}{reason} [{modules}] {len(self.files)} files"


class RealWebUI:
    def __init__(self, url: str, key: str, secret: str) -> None:
        self.url, self.key, self.secret = url.rstrip("/"), key, secret
        self.http = httpx.Client(timeout=30)

    def api(self, method: str, path: str, params=None, **kwargs) -> httpx.Response:
        target = request_target(path, params)
        return self.http.request(method, self.url + target, headers=auth_headers(self.key, self.secret, target),
                                 **kwargs)

    def schedule(self, **settings: str) -> int:
        base = {"DISTRI": "realstack", "VERSION": "1", "FLAVOR": "null", "ARCH": "x86_64",
                "BUILD": str(int(time.time() * 1000)), "TEST": "realstack-hello", "BACKEND": "null",
                "MACHINE": "null", "WORKER_CLASS": WORKER_CLASS, "CASEDIR": CASEDIR}
        base.update(settings)
        response = self.api("POST", "/api/v1/jobs", params=base)
        response.raise_for_status()
        return int(response.json()["id"])

    def job(self, job_id: int) -> dict:
        return self.api("GET", f"/api/v1/jobs/{job_id}").json()["job"]

    def details(self, job_id: int) -> dict:
        return self.api("GET", f"/api/v1/jobs/{job_id}/details").json()["job"]

    def summary(self, job_id: int) -> JobSummary:
        return JobSummary.of(self.details(job_id))

    def assets(self) -> list[dict]:
        return self.api("GET", "/api/v1/assets").json()["assets"]

    def wait_idle(self, host: str, instance: int, timeout: float = 30) -> dict:
        return wait_until(lambda: (w := self.worker(host, instance)) and w["status"] == "idle" and w,
                          timeout=timeout, message=f"worker {host}:{instance} idle")

    def workers(self) -> list[dict]:
        return self.api("GET", "/api/v1/workers").json()["workers"]

    def worker(self, host: str, instance: int) -> dict | None:
        for w in self.workers():
            if w.get("host") == host and int(w.get("instance", -1)) == instance:
                return w
        return None

    def schedule_for(self, worker: QaworkerProcess, **settings: str) -> int:
        """A job only ``worker`` can take (its own WORKER_CLASS; see own_class)."""
        return self.schedule(WORKER_CLASS=worker.worker_class, **settings)

    def wait_job(self, job_id: int, states=("done", "cancelled"), timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            time.sleep(0.2)
        facts = self.scheduling_facts(job_id)
        raise AssertionError(f"job {job_id} did not reach {states}: {self.job(job_id)}\n{facts}")

    def scheduling_facts(self, job_id: int) -> str:
        """What a failed wait needs to be understood: the workers of the job's class and the scheduler's last words."""
        wanted = self.job(job_id).get("settings", {}).get("WORKER_CLASS")
        rows = [f"  worker {w['id']} {w['host']}:{w['instance']} {w['status']} error={w.get('error')}"
                for w in self.workers() if w["properties"].get("WORKER_CLASS") == wanted]
        log = Path(os.environ.get("REALSTACK_LOGDIR", "/var/log/openqa-realstack")) / "scheduler.log"
        try:
            tail = log.read_text(errors="replace").splitlines()[-15:]
        except OSError as exc:
            tail = [f"(no scheduler log: {exc})"]
        return "\n".join([f"workers of class {wanted}:", *rows, f"{log}, last lines:", *tail])

    def wait_state(self, job_id: int, state: str, timeout: float = 60) -> dict:
        return self.wait_job(job_id, (state,), timeout)

    def cancel_scheduled(self, worker_class: str = WORKER_CLASS) -> None:
        """Jobs left over from earlier runs must not be given to this run's worker."""
        jobs = self.api("GET", "/api/v1/jobs", params={"state": "scheduled,assigned,setup,running"}).json()
        for job in jobs.get("jobs", []):
            if str(job.get("settings", {}).get("WORKER_CLASS", "")).startswith(worker_class):
                self.api("POST", f"/api/v1/jobs/{job['id']}/cancel")


def own_class(instance: int) -> str:
    """A WORKER_CLASS per test worker, so no other worker (a concurrent run's, a dead one's) takes its jobs."""
    return f"{WORKER_CLASS}_{instance}"


@pytest.fixture(scope="session")
def webui() -> RealWebUI:
    url = os.environ.get("QAWORKER_REAL_WEBUI")
    key = os.environ.get("QAWORKER_REAL_KEY")
    secret = os.environ.get("QAWORKER_REAL_SECRET")
    if not (url and key and secret):
        pytest.skip("set QAWORKER_REAL_WEBUI, QAWORKER_REAL_KEY and QAWORKER_REAL_SECRET "
                    "(../shared/realstack/up.sh --no-worker prints them; `make interop` does it all)")
    try:
        httpx.get(url + "/api/v1/workers", timeout=5)
    except httpx.HTTPError as exc:
        pytest.skip(f"real web UI at {url} does not answer: {exc}")
    ui = RealWebUI(url, key, secret)
    ui.cancel_scheduled()
    return ui


class QaworkerProcess:
    def __init__(self, webui: RealWebUI, tmp: Path, instance: int, extra_ini: str = "",
                 isotovideo: str = "/usr/bin/isotovideo", worker_class: str | None = None) -> None:
        self.instance = instance
        self.host = os.uname().nodename
        # Its own class: a worker record of an earlier test that died without `quit` stays "idle" in the
        # web UI for worker_timeout (30 min), and the scheduler, picking at random among the free workers of
        # a class, would now and then send this test's job to that ghost (seen in CI: jobs left scheduled).
        self.worker_class = worker_class or own_class(instance)
        conf = tmp / f"config-{instance}"
        conf.mkdir(exist_ok=True)
        (conf / "workers.ini").write_text(
            f"[global]\nHOST = {webui.url}\nWORKER_HOSTNAME = 127.0.0.1\nRETRY_DELAY = 1\n"
            f"RETRY_DELAY_IF_WEBUI_BUSY = 2\nQAWORKER_STOP_GRACE = 10\n{extra_ini}\n"
            f"[{instance}]\nWORKER_CLASS = {self.worker_class}\n")
        (conf / "client.conf").write_text(f"[127.0.0.1]\nkey = {webui.key}\nsecret = {webui.secret}\n")
        self.log_path = tmp / f"qaworker-{instance}.log"
        env = {**os.environ, "OPENQA_CONFIG": str(conf), "OPENQA_WORKER_CONNECT_INTERVAL": "1",
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--no-ui", "--instance", str(instance), "--isotovideo", isotovideo],
            cwd=ROOT, env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def qaworker(webui: RealWebUI, tmp_path: Path):
    started: list[QaworkerProcess] = []

    def start(**kwargs) -> QaworkerProcess:
        process = QaworkerProcess(webui, tmp_path, kwargs.pop("instance", None) or free_instance(40, 400), **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def wait_until(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


# ---------------------------------------------------------------- the Perl worker as a baseline (issue 7 §1)
PERL_CLASS = "realstack"
PERL_HOST_INSTANCE = 1
COMPARISON: list[tuple[str, str, str, str]] = []  # scenario | Perl | qaworker | same?


@pytest.fixture(scope="session")
def perl_worker(webui: RealWebUI) -> dict:
    """The realstack's Perl worker (WORKER_CLASS realstack); tests comparing with it skip without it."""
    for w in webui.workers():
        if w["properties"].get("WORKER_CLASS") == PERL_CLASS and w["status"] != "dead":
            return w
    pytest.skip("the realstack Perl worker (WORKER_CLASS realstack) is not running")


def record_comparison(scenario: str, perl: str, ours: str, same: bool | str) -> None:
    verdict = same if isinstance(same, str) else ("yes" if same else "NO")
    COMPARISON.append((scenario, perl, ours, verdict))


def pytest_terminal_summary(terminalreporter) -> None:
    if not COMPARISON:
        return
    rows = [("scenario", "Perl worker", "qaworker", "same?"), *COMPARISON]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    terminalreporter.section("Perl worker vs qaworker on the real web UI")
    for n, row in enumerate(rows):
        terminalreporter.write_line(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            terminalreporter.write_line("-+-".join("-" * width for width in widths))
