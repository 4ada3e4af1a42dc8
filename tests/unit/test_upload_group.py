"""The final uploads' lanes (backend/job/finaluploads.upload_group): several files in flight, and after a
failure nothing new starts (PROTOCOL.md §14.2 step 6: a failed upload stops the rest of its group)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.job.finaluploads import upload_group
from backend.job.upload import UploadFailed

PATHS = [Path(f"f{i}.txt") for i in range(10)]


async def test_all_files_go_up_in_order_of_start_with_at_most_the_limit_in_flight() -> None:
    started: list[Path] = []
    in_flight = peak = 0

    async def upload(path: Path) -> None:
        nonlocal in_flight, peak
        started.append(path)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    assert await upload_group(PATHS, upload, 3) is None
    assert started == PATHS
    assert peak == 3


async def test_after_a_failure_no_further_file_is_started_and_its_text_is_returned() -> None:
    started: list[Path] = []
    finished: list[Path] = []

    async def upload(path: Path) -> None:
        started.append(path)
        if path.name == "f2.txt":
            raise UploadFailed("404 response: No worker assigned (f2.txt)")
        await asyncio.sleep(0.02)  # the files in flight with the failing one still finish
        finished.append(path)

    error = await upload_group(PATHS, upload, 3)
    assert error == "404 response: No worker assigned (f2.txt)"
    assert started == PATHS[:3]
    assert finished == PATHS[:2]


async def test_one_lane_is_upstreams_loop_and_an_empty_group_uploads_nothing() -> None:
    started: list[Path] = []

    async def upload(path: Path) -> None:
        started.append(path)
        if path.name == "f4.txt":
            raise UploadFailed("boom")

    assert await upload_group(PATHS, upload, 1) == "boom"
    assert started == PATHS[:5]
    assert await upload_group([], upload, 4) is None


async def test_an_unexpected_error_is_not_taken_for_an_upload_failure() -> None:
    async def upload(path: Path) -> None:
        raise ValueError("a bug")

    with pytest.raises(ExceptionGroup) as caught:
        await upload_group(PATHS, upload, 2)
    assert caught.group_contains(ValueError)
