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
            {sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> {calls}
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
