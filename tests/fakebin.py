"""Fake system tools on PATH for what cannot run here (busctl with no system bus, ipmitool with no BMC,
podman with no container runtime). Each fake appends its argv (one JSON list a line) to ``<name>.calls``
and then runs the given shell body."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

# One locked write per call: fakes run side by side (two caches' rsyncs), and ``print(...) >> calls`` under
# PYTHONUNBUFFERED=1 writes a line and its newline separately, so two lines came out glued (CI, 2026-12-03).
_RECORD = (
    "import fcntl, json, os, sys; "
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644); "
    "fcntl.flock(fd, fcntl.LOCK_EX); "
    "os.write(fd, (json.dumps(sys.argv[2:]) + chr(10)).encode()); "
    "os.close(fd)"
)


class FakeBin:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, body: str) -> Path:
        """A fake ``name``; ``body`` is shell run after the argv was recorded ("$@" still holds it)."""
        calls = self.dir / f"{name}.calls"
        script = self.dir / name
        script.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            {sys.executable} -c '{_RECORD}' {calls} "$@"
            """) + textwrap.dedent(body))
        script.chmod(0o755)
        return script

    def calls(self, name: str) -> list[list[str]]:
        path = self.dir / f"{name}.calls"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def fakebin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    fake = FakeBin(tmp_path / "fakebin")
    monkeypatch.setenv("PATH", f"{fake.dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return fake
