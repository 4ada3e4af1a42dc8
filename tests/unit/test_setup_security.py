# ruff: noqa: F811, ASYNC240  (tests do small, deliberate blocking file and process work)
"""Job settings come from users: nothing they write may escape the pool, the share or the tests root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.job.setup import CACHE_FAILURE, SetupError, setup_job
from backend.ports import ProvisionError
from tests.unit.test_setup import Env, env  # noqa: F401  (fixture)


def snapshot(env: Env) -> set[str]:
    return env.outside_entries()


EVIL_NAMES = [
    "../../../../etc/passwd",
    "../factory/iso/foo.iso",
    "/etc/passwd",
    "foo.iso\x00.txt",
    "..",
    ".",
    ".locked",
    "vars.json",
    "autoinst-log.txt",
    "sub/../foo.iso",
    "foo\n.iso",
    "..foo.iso",
]


@pytest.mark.parametrize("name", EVIL_NAMES)
async def test_evil_asset_names_are_refused(env: Env, name: str) -> None:
    before = snapshot(env)
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "opensuse", "HDD_1": name}))
    assert info.value.category == "asset failure"
    assert "HDD_1" in str(info.value)
    assert snapshot(env) == before
    assert (env.share / "factory/iso/foo.iso").read_bytes() == b"iso"
    assert not (env.pool / "vars.json").exists()


@pytest.mark.parametrize(
    "name", ["$(touch pwned)", "`touch pwned`", "x; touch pwned", "a|touch pwned", "'\"&>pwned"]
)
async def test_shell_metacharacters_are_just_missing_files(
    env: Env, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = snapshot(env)
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "opensuse", "ISO": name}))
    assert str(info.value) == f"Cannot find ISO asset iso/{name}!"
    assert not list(tmp_path.rglob("pwned"))
    assert snapshot(env) == before


async def test_shell_metacharacters_in_a_real_asset_name_are_linked_verbatim(env: Env) -> None:
    name = "$(touch pwned);x.iso"
    (env.share / "factory/iso" / name).write_bytes(b"odd")
    result = await setup_job(env.input({"DISTRI": "opensuse", "ISO": name}))
    assert result.vars["ISO"] == name and (env.pool / name).read_bytes() == b"odd"
    assert not list(env.root.rglob("pwned"))


async def test_asset_symlink_out_of_the_share_is_refused(env: Env) -> None:
    secret = env.root / "secret.img"
    secret.write_text("secret")
    (env.share / "factory/hdd/leak.qcow2").symlink_to(secret)
    with pytest.raises(SetupError, match="resolves outside"):
        await setup_job(env.input({"DISTRI": "opensuse", "HDD_1": "leak.qcow2"}))
    assert not (env.pool / "leak.qcow2").exists()


async def test_asset_symlink_inside_the_share_is_fine(env: Env) -> None:
    (env.share / "factory/hdd/alias.qcow2").symlink_to(env.share / "factory/hdd/fixed/disk.qcow2")
    result = await setup_job(env.input({"DISTRI": "opensuse", "HDD_1": "alias.qcow2"}))
    assert (
        env.pool / "alias.qcow2"
    ).is_symlink()  # a symlink is linked as a symlink, like the classic worker
    assert (env.pool / "alias.qcow2").read_bytes() == b"hdd" and result.vars["HDD_1"] == "alias.qcow2"


async def test_directory_asset_is_refused(env: Env) -> None:
    (env.share / "factory/iso/adir").mkdir()
    with pytest.raises(SetupError, match="not a regular file"):
        await setup_job(env.input({"DISTRI": "opensuse", "ISO": "adir"}))


@pytest.mark.parametrize(
    "settings",
    [
        {"DISTRI": "opensuse", "CASEDIR": "../../../../etc"},
        {"DISTRI": "opensuse", "CASEDIR": "opensuse/../../.."},
        {"DISTRI": "../../../etc"},
        {"DISTRI": "/etc"},
        {"DISTRI": "opensuse", "NEEDLES_DIR": "../../../etc/needles"},
        {"DISTRI": "opensuse", "NEEDLES_DIR": ".locked"},
        {"DISTRI": "opensuse", "NEEDLES_DIR": "vars.json"},
        {"DISTRI": "opensuse", "NEEDLES_DIR": "x/.."},
        {
            "DISTRI": "opensuse",
            "CASEDIR": "https://example.com/t.git",
            "NEEDLES_DIR": "%CASEDIR%/../../../../etc",
        },
        {"DISTRI": "opensuse", "CASEDIR": "https://example.com/..", "NEEDLES_DIR": "%CASEDIR%/needles"},
        {"DISTRI": "opensuse", "CASEDIR": "https://example.com/", "NEEDLES_DIR": "%CASEDIR%/needles"},
    ],
)
async def test_test_dirs_never_escape(env: Env, settings: dict) -> None:
    before = snapshot(env)
    lock = env.pool / ".locked"
    lock.write_text("123\n")
    with pytest.raises(SetupError) as info:
        await setup_job(env.input(settings))
    assert info.value.category == "setup failure"
    assert snapshot(env) == before
    assert lock.read_text() == "123\n"
    links = [p for p in env.pool.iterdir() if p.is_symlink()]
    for link in links:  # the only link made before refusing is the default casedir one
        assert os.readlink(link) == str(env.tests / "opensuse")


class FakeCache:
    def __init__(self, root: Path, fail: Exception | None = None) -> None:
        self.root = root
        self.fail = fail
        self.calls: list[tuple[str, str, int]] = []

    async def provide(self, asset_type: str, name: str, job_id: int) -> Path:
        self.calls.append((asset_type, name, job_id))
        if self.fail is not None:
            raise self.fail
        path = self.root / name
        path.write_bytes(b"cached " + name.encode())
        return path


class FakeCacheError(ProvisionError):
    """What a provider raises (backend.ports)."""


async def test_cache_provider_assets_are_linked(env: Env) -> None:
    cache = FakeCache(env.root / "cache")
    cache.root.mkdir()
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "ISO": "new.iso", "HDD_1": "d.qcow2"}, assets=cache)
    )
    assert cache.calls == [("hdd", "d.qcow2", 42), ("iso", "new.iso", 42)]
    assert (env.pool / "new.iso").stat().st_ino == (cache.root / "new.iso").stat().st_ino
    assert result.vars["ISO"] == "new.iso"


async def test_cache_errors_keep_their_category(env: Env) -> None:
    cache = FakeCache(env.root, fail=FakeCacheError("asset failure", "Failed to download x.iso to /c/x.iso"))
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "opensuse", "ISO": "x.iso"}, assets=cache))
    assert info.value.reason == "asset failure: Failed to download x.iso to /c/x.iso"
    cache.fail = RuntimeError("boom")
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "opensuse", "ISO": "x.iso"}, assets=cache))
    assert info.value.reason == f"{CACHE_FAILURE}: boom"


async def test_uefi_vars_download_failure_is_tolerated(env: Env) -> None:
    cache = FakeCache(env.root, fail=FakeCacheError("cache failure", "nope"))
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "UEFI": "1", "UEFI_PFLASH_VARS": "vars.qcow2"}, assets=cache)
    )
    assert result.vars["UEFI_PFLASH_VARS"] == "vars.qcow2"


async def test_cache_path_with_another_name_is_refused(env: Env) -> None:
    class Liar(FakeCache):
        async def provide(self, asset_type: str, name: str, job_id: int) -> Path:
            (self.root / "other").write_text("x")
            return self.root / "other"

    with pytest.raises(SetupError, match="unusable path"):
        await setup_job(env.input({"DISTRI": "opensuse", "ISO": "x.iso"}, assets=Liar(env.root)))
