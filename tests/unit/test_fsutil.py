"""Atomic file replacement with concurrent writers of the same file (issue 15 item 4)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.fsutil import write_atomic
from backend.mockweb.uploads import _write as mockweb_write


def hammer(write: Callable[[Path, bytes], None], path: Path, writers: int = 8, rounds: int = 40) -> list[BaseException]:
    """``writers`` threads writing ``path`` at once, ``rounds`` times each; the exceptions they raised."""
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        for _ in range(rounds):
            try:
                write(path, bytes([n]) * 65536)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("write", [write_atomic, mockweb_write], ids=["write_atomic", "mockweb"])
def test_concurrent_writers_of_one_file_never_fail_or_mix(tmp_path: Path, write) -> None:
    path = tmp_path / "thumb.png"
    assert hammer(write, path) == []
    data = path.read_bytes()
    assert len(data) == 65536 and len(set(data)) == 1  # one writer's content, whole
    assert os.listdir(tmp_path) == ["thumb.png"]  # no temporary file left behind


def test_a_planted_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep")
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "vars.json").symlink_to(outside)
    write_atomic(pool / "vars.json", '{"a": 1}')
    assert outside.read_text() == "keep"
    assert not (pool / "vars.json").is_symlink() and (pool / "vars.json").read_text() == '{"a": 1}'
    assert oct((pool / "vars.json").stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["job.json"]
