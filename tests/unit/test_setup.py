"""Job setup (§10.2) against real temp directories: settings, vars.json, assets, test directories."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.config import HostConfig, SlotConfig
from backend.job.setup import (
    SetupError,
    SetupInput,
    expand_placeholders,
    job_timeouts,
    ports_for,
    setup_job,
)

INSTANCE = 5


@dataclass
class Env:
    root: Path
    prjdir: Path
    share: Path
    pool: Path
    tests: Path

    def input(self, settings: dict, *, slot_settings: dict | None = None, **kw) -> SetupInput:
        job = {"id": 42, "name": "job-42", "settings": {"JOBTOKEN": "tok123", **settings}}
        slot = SlotConfig(
            instance=INSTANCE,
            settings=slot_settings or {"WORKER_CLASS": "qemu_x86_64"},
            hosts=[],
            pool_dir=self.pool,
        )
        host = HostConfig(
            configured="http://openqa.example.com:9526",
            base_url="http://openqa.example.com:9526",
            share_dir=self.share,
        )
        return SetupInput(
            job=job,
            slot=slot,
            host=host,
            worker_id=17,
            pool_dir=self.pool,
            prjdir=self.prjdir,
            worker_hostname="worker.example.com",
            **kw,
        )

    def outside_entries(self) -> set[str]:
        """Everything under root except the pool (to prove nothing was created outside it)."""
        return {
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if self.pool not in (p, *p.parents)
        }


@pytest.fixture
def env(tmp_path: Path) -> Env:
    prjdir = tmp_path / "openqa"
    share = prjdir / "share"
    for d in (
        "factory/iso",
        "factory/hdd/fixed",
        "factory/other",
        "tests/opensuse/products/opensuse/needles",
    ):
        (share / d).mkdir(parents=True)
    (share / "factory/iso/foo.iso").write_bytes(b"iso")
    (share / "factory/hdd/fixed/disk.qcow2").write_bytes(b"hdd")
    (share / "factory/other/vmlinuz").write_bytes(b"kernel")
    pool = prjdir / "pool" / str(INSTANCE)
    pool.mkdir(parents=True)
    return Env(tmp_path, prjdir, share, pool, share / "tests")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


async def test_full_setup(env: Env) -> None:
    (env.pool / "worker-log.txt").write_text("old log\n")
    (env.pool / "autoinst-log.txt").write_text("old\n")
    settings = {
        "DISTRI": "opensuse",
        "VERSION": "15",
        "ISO": "foo.iso",
        "HDD_1": "disk.qcow2",
        "WORKER_CLASS": "from-job",
        "GENERAL_HW_CMD_DIR": "/evil",
        "GIT_CACHE_DIR": "/evil",
        "SYNC_ASSETS_HOOK": "rm -rf /",
        "EXTERNAL_VIDEO_ENCODER_CMD": "evil",
        "MAX_JOB_TIME": "99",
    }
    result = await setup_job(env.input(settings))
    qemuport, vnc = 20002 + 10 * INSTANCE, 90 + INSTANCE
    v = read_json(env.pool / "vars.json")
    assert v == result.vars
    assert v["OPENQA_URL"] == "http://openqa.example.com:9526"
    assert v["OPENQA_HOSTNAME"] == "openqa.example.com:9526"
    assert (v["WORKER_INSTANCE"], v["WORKER_ID"]) == (INSTANCE, 17)
    assert (v["QEMUPORT"], v["VNC"]) == (str(qemuport), str(vnc))
    assert v["WORKER_CLASS"] == "qemu_x86_64"  # worker settings win
    assert v["WORKER_HOSTNAME"] == "worker.example.com"
    for forbidden in (
        "GENERAL_HW_CMD_DIR",
        "GIT_CACHE_DIR",
        "SYNC_ASSETS_HOOK",
        "EXTERNAL_VIDEO_ENCODER_CMD",
    ):
        assert forbidden not in v
    assert (v["ISO"], v["HDD_1"]) == ("foo.iso", "disk.qcow2")
    assert (env.pool / "foo.iso").stat().st_ino == (env.share / "factory/iso/foo.iso").stat().st_ino
    assert (env.pool / "disk.qcow2").read_bytes() == b"hdd"
    assert result.linked_assets == [env.pool / "disk.qcow2", env.pool / "foo.iso"]
    assert v["ASSETDIR"] == str(env.share / "factory")
    assert (v["CASEDIR"], v["PRODUCTDIR"]) == ("opensuse", "opensuse/products/opensuse")
    assert "NEEDLES_DIR" not in v
    assert os.readlink(env.pool / "opensuse") == str(env.tests / "opensuse")
    job = read_json(env.pool / "job.json")
    assert job["id"] == 42 and job["settings"]["QEMUPORT"] == str(qemuport)
    assert "GENERAL_HW_CMD_DIR" not in job["settings"]
    assert result.cmd_srv_url == f"http://localhost:{qemuport + 1}/tok123"
    assert result.job["URL"] == result.cmd_srv_url
    assert result.env == {
        "QEMUPORT": str(qemuport),
        "VNC": str(vnc),
        "OPENQA_HOSTNAME": "openqa.example.com:9526",
        "OPENQA_SHAREDIR": str(env.share),
        "TMPDIR": str(env.pool / "tmp"),
    }
    assert (env.pool / "tmp").is_dir()
    assert (env.pool / "worker-log.txt").read_text() == ""
    assert not (env.pool / "autoinst-log.txt").exists()


async def test_vnc_display_uses_the_offset_the_config_read(env: Env) -> None:
    inp = env.input({})
    inp.slot.tuning = dataclasses.replace(inp.slot.tuning, vncport_offset=100)  # VNCPORT_OFFSET=100 at load
    await setup_job(inp)
    assert read_json(env.pool / "vars.json")["VNC"] == str(100 + INSTANCE)


async def test_input_job_is_not_modified(env: Env) -> None:
    inp = env.input({"DISTRI": "opensuse", "GIT_CACHE_DIR": "/x"})
    await setup_job(inp)
    assert inp.job["settings"] == {"JOBTOKEN": "tok123", "DISTRI": "opensuse", "GIT_CACHE_DIR": "/x"}


async def test_version_specific_casedir(env: Env) -> None:
    (env.tests / "opensuse-15").mkdir()
    result = await setup_job(env.input({"DISTRI": "opensuse", "VERSION": "15"}))
    assert (result.vars["CASEDIR"], result.vars["PRODUCTDIR"]) == ("opensuse-15", "opensuse-15")
    assert os.readlink(env.pool / "opensuse-15") == str(env.tests / "opensuse-15")


async def test_missing_asset(env: Env) -> None:
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "opensuse", "ISO_2": "missing.iso"}))
    assert (info.value.category, str(info.value)) == (
        "asset failure",
        "Cannot find ISO_2 asset iso/missing.iso!",
    )
    assert info.value.reason == "asset failure: Cannot find ISO_2 asset iso/missing.iso!"


async def test_assets_that_are_not_looked_up(env: Env) -> None:
    settings = {
        "DISTRI": "opensuse",
        "KERNEL": "/boot/vmlinuz",
        "INITRD": "/boot/initrd",
        "REPO_1": "some-repo",
        "UEFI_PFLASH_VARS": "vars.bin",
        "UEFI_PFLASH_CODE": "/usr/share/ovmf/code.bin",
        "ISO": "",
        "ASSET_1": "vmlinuz",
    }
    result = await setup_job(env.input(settings))
    assert result.vars["KERNEL"] == "/boot/vmlinuz" and result.vars["REPO_1"] == "some-repo"
    assert result.vars["UEFI_PFLASH_VARS"] == "vars.bin"  # ignored without UEFI
    assert result.vars["ASSET_1"] == "vmlinuz" and (env.pool / "vmlinuz").exists()
    assert [p.name for p in result.linked_assets] == ["vmlinuz"]


async def test_absolute_test_config_paths(env: Env) -> None:
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "HDD_1": "disk.qcow2", "ABSOLUTE_TEST_CONFIG_PATHS": "1"})
    )
    assert result.vars["HDD_1"] == str(env.share / "factory/hdd/fixed/disk.qcow2")
    assert result.vars["CASEDIR"] == str(env.tests / "opensuse")
    assert result.vars["PRODUCTDIR"] == str(env.tests / "opensuse/products/opensuse")
    assert not (env.pool / "disk.qcow2").exists()


async def test_no_cleanup_leftovers_are_replaced(env: Env) -> None:
    (env.pool / "foo.iso").write_bytes(b"stale")
    (env.pool / "vars.json").symlink_to(env.root / "victim.json")
    (env.pool / "opensuse").symlink_to(env.root)
    await setup_job(env.input({"DISTRI": "opensuse", "ISO": "foo.iso"}))
    assert (env.pool / "foo.iso").read_bytes() == b"iso"
    assert not (env.root / "victim.json").exists()
    assert not (env.pool / "vars.json").is_symlink()
    assert os.readlink(env.pool / "opensuse") == str(env.tests / "opensuse")


# --- placeholders ----------------------------------------------------------------------------------


def test_expand_placeholders_rules() -> None:
    values = {
        "DISTRI": "sle",
        "VERSION": "15",
        "A": "%DISTRI%-%VERSION%",
        "B": "%%DISTRI%%",
        "C": "x%NOPE%y",
        "D": "%A%/%B%",
        "N": "%CASEDIR%/needles",
        "P": "100% sure %",
        "I": 7,
    }
    assert expand_placeholders(values) is None
    assert values["A"] == "sle-15" and values["B"] == "%DISTRI%" and values["C"] == "xy"
    assert values["D"] == "sle-15/%DISTRI%"
    assert values["N"] == "%CASEDIR%/needles" and values["P"] == "100% sure %" and values["I"] == 7


def test_circular_placeholders_are_an_error_not_a_hang() -> None:
    values = {"A": "%B%", "B": "x%A%"}
    error = expand_placeholders(values)
    assert error is not None and "circular reference" in error


async def test_placeholders_in_setup_use_worker_settings(env: Env) -> None:
    result = await setup_job(
        env.input(
            {
                "DISTRI": "opensuse",
                "ISO": "%FLAVOR%.iso",
                "FLAVOR": "foo",
                "WHERE": "%SITE%-%WORKER_INSTANCE%",
                "LIT": "%%SITE%%",
            },
            slot_settings={"SITE": "nbg"},
        )
    )
    assert result.vars["ISO"] == "foo.iso" and (env.pool / "foo.iso").exists()
    assert result.vars["WHERE"] == f"nbg-{INSTANCE}" and result.vars["LIT"] == "%SITE%"


# --- CASEDIR / PRODUCTDIR / NEEDLES_DIR ------------------------------------------------------------


async def test_git_casedir_with_needles_in_checkout(env: Env) -> None:
    url = "https://github.com/os-autoinst/os-autoinst-distri-example.git#main"
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "CASEDIR": url, "NEEDLES_DIR": "%CASEDIR%/needles"})
    )
    assert result.vars["CASEDIR"] == url
    assert result.vars["PRODUCTDIR"] == "products/opensuse"
    assert result.vars["NEEDLES_DIR"] == "needles"
    assert os.readlink(env.pool / "needles") == "os-autoinst-distri-example/needles"  # cloned later
    assert not (env.pool / "opensuse").exists()


async def test_only_git_urls_create_no_links(env: Env) -> None:
    url = "https://example.com/tests.git"
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "CASEDIR": url, "NEEDLES_DIR": "https://example.com/needles.git"})
    )
    assert "PRODUCTDIR" not in result.vars
    assert result.vars["NEEDLES_DIR"] == "https://example.com/needles.git"
    assert {p.name for p in env.pool.iterdir()} == {"job.json", "vars.json", "worker-log.txt", "tmp"}


async def test_custom_absolute_casedir_gets_default_needles(env: Env) -> None:
    custom = env.root / "mytests"
    custom.mkdir()
    result = await setup_job(env.input({"DISTRI": "opensuse", "CASEDIR": str(custom)}))
    assert result.vars["PRODUCTDIR"] == "products/opensuse"
    assert result.vars["NEEDLES_DIR"] == "needles"
    assert os.readlink(env.pool / "needles") == str(env.tests / "opensuse/products/opensuse/needles")


async def test_absolute_casedir_with_casedir_relative_needles(env: Env) -> None:
    custom = env.root / "mytests"
    (custom / "needles").mkdir(parents=True)
    result = await setup_job(
        env.input({"DISTRI": "opensuse", "CASEDIR": str(custom), "NEEDLES_DIR": "%CASEDIR%/needles"})
    )
    assert result.vars["NEEDLES_DIR"] == "needles"
    assert os.readlink(env.pool / "needles") == str(custom / "needles")


async def test_relative_needles_dir_links_default(env: Env) -> None:
    result = await setup_job(env.input({"DISTRI": "opensuse", "NEEDLES_DIR": "my-needles"}))
    assert result.vars["NEEDLES_DIR"] == "my-needles"
    assert os.readlink(env.pool / "my-needles") == str(env.tests / "opensuse/products/opensuse/needles")


async def test_tests_dir_from_cache_is_the_root(env: Env) -> None:
    cache_tests = env.root / "cache" / "openqa.example.com" / "tests"
    (cache_tests / "opensuse").mkdir(parents=True)
    result = await setup_job(env.input({"DISTRI": "opensuse"}, tests_dir=cache_tests))
    assert result.vars["CASEDIR"] == "opensuse"
    assert os.readlink(env.pool / "opensuse") == str(cache_tests / "opensuse")


async def test_prjdir_tests_fallback(env: Env) -> None:
    (env.share / "tests").rename(env.prjdir / "tests")
    await setup_job(env.input({"DISTRI": "opensuse"}))
    assert os.readlink(env.pool / "opensuse") == str(env.prjdir / "tests" / "opensuse")


async def test_missing_default_casedir_is_a_setup_failure(env: Env) -> None:
    with pytest.raises(SetupError) as info:
        await setup_job(env.input({"DISTRI": "nosuchdistri"}))
    assert info.value.category == "setup failure"
    assert str(info.value) == f"The source directory {env.tests / 'nosuchdistri'} does not exist"


def test_timeouts() -> None:
    assert job_timeouts({}) == (3600.0, 7200.0)
    assert job_timeouts({"MAX_SETUP_TIME": "60", "MAX_JOB_TIME": "100", "TIMEOUT_SCALE": "3"}) == (
        60.0,
        300.0,
    )
    assert job_timeouts({"MAX_SETUP_TIME": "soon", "MAX_JOB_TIME": "1e3", "TIMEOUT_SCALE": "x"}) == (
        3600.0,
        1000.0,
    )
    assert job_timeouts({"MAX_JOB_TIME": "nan", "TIMEOUT_SCALE": "-2"}) == (3600.0, 7200.0)


def test_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VNCPORT_OFFSET", "100")  # read by the config at load, never behind its back
    assert ports_for(1) == (20012, 91)
    assert ports_for(3, 100) == (20032, 103)
