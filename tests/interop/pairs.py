"""Run the same job on the realstack's Perl worker and on qaworker and compare what the web UI shows."""

from __future__ import annotations

from pathlib import Path

from tests.interop.conftest import (
    PERL_CLASS,
    ROOT,
    JobSummary,
    QaworkerProcess,
    RealWebUI,
    own_class,
    record_comparison,
)

__all__ = ["own_class"]  # re-exported: the tests that take it from here

# Debian's python3 so that the Perl worker (user _openqa-worker, no access to our venv under /root) can run it too.
SIMULATOR = f"/usr/bin/python3 {ROOT / 'backend' / 'engine' / 'simulator.py'}"


def schedule_pair(webui: RealWebUI, worker: QaworkerProcess, **settings: str) -> tuple[int, int]:
    perl = webui.schedule(**settings, WORKER_CLASS=PERL_CLASS)
    ours = webui.schedule(**settings, WORKER_CLASS=worker.worker_class)
    return perl, ours


def finish_pair(webui: RealWebUI, perl: int, ours: int, timeout: float = 120) -> tuple[JobSummary, JobSummary]:
    webui.wait_job(ours, timeout=timeout)
    webui.wait_job(perl, timeout=timeout)
    return webui.summary(perl), webui.summary(ours)


def reason_ok(perl: str | None, ours: str | None) -> bool:
    """Equal, or at least as informative: a reason where Perl gives one, none where Perl has none."""
    return perl == ours or (bool(perl) and bool(ours))


def compare(scenario: str, perl: JobSummary, ours: JobSummary, files: bool = True, modules: bool = True,
            state: bool = True) -> None:
    """Record a table row, then assert what issue 7 §1 demands (same result, modules and uploaded files;
    the reason equal or better). `files`/`modules`/`state` off where the real web UI itself is racy."""
    checks = [perl.result == ours.result, not state or perl.state == ours.state,
              not modules or perl.modules == ours.modules, not files or perl.files == ours.files]
    same = all(checks)
    verdict = "yes" if same and perl.reason == ours.reason else ("yes (reason differs)" if same else "NO")
    if same and not reason_ok(perl.reason, ours.reason):
        verdict = "NO (reason)"
    record_comparison(scenario, f"#{perl.id} {perl.short()}", f"#{ours.id} {ours.short()}", verdict)
    assert ours.result == perl.result, (perl, ours)
    if state:
        assert ours.state == perl.state, (perl, ours)
    if modules:
        assert ours.modules == perl.modules, (perl.modules, ours.modules)
    if files:
        only_perl, only_ours = perl.files - ours.files, ours.files - perl.files
        assert not (only_perl or only_ours), f"only Perl: {only_perl}; only qaworker: {only_ours}"
    assert reason_ok(perl.reason, ours.reason), f"reason: Perl {perl.reason!r}, qaworker {ours.reason!r}"


def tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:]
