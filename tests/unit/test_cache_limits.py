"""The size rules of PROTOCOL.md §18.6, including the fixed free-space comparison."""

from __future__ import annotations

from backend.cache.limits import DiskSpace, exceeds_free_space, exceeds_limit, free_percentage

GIB = 1024**3


def test_limit_counts_what_is_needed():
    assert not exceeds_limit(used=40 * GIB, needed=10 * GIB, limit=50 * GIB)
    assert exceeds_limit(used=40 * GIB, needed=10 * GIB + 1, limit=50 * GIB)


def test_free_space_rule_is_not_inverted():
    empty_disk = DiskSpace(total=100 * GIB, available=90 * GIB)
    # a nearly empty disk never exceeds (2023's inverted comparison evicted here)
    assert not exceeds_free_space(empty_disk, needed=5 * GIB, min_free_percentage=20)
    # (90 - 75) / 100 * 100 = 15 % < 20 % → exceeds
    assert exceeds_free_space(empty_disk, needed=75 * GIB, min_free_percentage=20)
    assert not exceeds_free_space(empty_disk, needed=70 * GIB, min_free_percentage=20)


def test_free_space_rule_off_without_setting():
    full = DiskSpace(total=100, available=0)
    assert not exceeds_free_space(full, needed=10, min_free_percentage=None)
    assert free_percentage(full) == 0.0
    assert free_percentage(DiskSpace(total=0, available=0)) == 0.0
