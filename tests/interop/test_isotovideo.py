"""The real isotovideo that `make interop` installs with the real stack (Debian's os-autoinst)."""

from __future__ import annotations

import pytest

from backend.engine.isotovideo import detect_interface_version

pytestmark = pytest.mark.interop


async def test_detect_interface_version_of_the_real_isotovideo() -> None:
    assert await detect_interface_version("/usr/bin/isotovideo") >= 30
