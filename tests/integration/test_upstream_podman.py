"""Issue 12 row 14: OS_AUTOINST_GIT_REPO runs isotovideo in rootless podman with upstream's command line;
without podman the job ends ``setup failure`` with a clear reason. No container runtime here: a fake
``podman`` on PATH records its argv and runs the simulator in the pool, as the container would."""

from __future__ import annotations

import shlex

from backend.engine.podman import DEFAULT_IMAGE
from tests.fakebin import fakebin  # noqa: F401 (fixture)
from tests.integration.harness import (
    job_settings,
    make_config,
    mock_web,
    running_worker,
    simulator_path,
    wait_registered,
)

REPO = "https://github.com/os-autoinst/os-autoinst.git"
IMAGE = "example.test/isotovideo:1"


async def test_git_repo_runs_isotovideo_in_podman_with_upstreams_command(tmp_path, fakebin):  # noqa: F811
    seen = tmp_path / "podman-env"
    fakebin.add("podman", f'echo "$(pwd) $HOME $XDG_RUNTIME_DIR" > {seen}\nexec {simulator_path(tmp_path)} -d\n')
    async with mock_web(tmp_path) as web:
        cache = tmp_path / "elsewhere" / "cache"  # CACHEDIRECTORY outside the prjdir: vars.json points there
        cache.mkdir(parents=True)
        config = make_config(tmp_path, [web.url], settings={"CACHEDIRECTORY": str(cache)})
        async with running_worker(config):
            await wait_registered(web)
            branch = "fix; touch /tmp/pwned"  # must reach git as one quoted argument
            job = await web.wait_job_done(web.schedule_job(job_settings(
                SIM_MODULES="boot,login", OS_AUTOINST_GIT_REPO=REPO, OS_AUTOINST_GIT_BRANCH=branch)), 60)
            assert job.result == "passed", job.reason
    [argv] = fakebin.calls("podman")
    prjdir = tmp_path / "openqa"
    pool = config.slots[0].pool_dir
    podman_dir = prjdir / "cache" / "podman"
    assert argv[:9] == ["--root", f"{podman_dir}/data/containers/storage", "--runroot", f"{podman_dir}/run/containers",
                        "--storage-opt", "ignore_chown_errors=true", "--cgroup-manager=cgroupfs",
                        "--events-backend=file", "run"]
    assert argv[9:17] == ["--init", "--rm", "--entrypoint", "", "--device", "/dev/kvm", "-v", f"{pool}:/pool"]
    assert argv[17:19] == ["-w", "/pool"]
    assert f"{prjdir}/share:{prjdir}/share:ro" in argv  # the share directory, read-only at its own path
    assert f"{cache}:{cache}:ro" in argv
    assert argv[-4] == DEFAULT_IMAGE
    assert argv[-3:-1] == ["sh", "-c"]
    script = argv[-1]
    assert shlex.split(script)[:5] == ["git", "clone", f"--branch={branch}", "--depth=1", REPO]
    assert script.endswith("&& make -C os-autoinst && os-autoinst/isotovideo -d")
    # run in the pool, with its home in the pool and its runtime directory next to its storage (rootless)
    assert seen.read_text().split() == [str(pool), str(pool / "podman_tmp"), str(podman_dir / "run")]


async def test_custom_image_is_used_and_image_without_repo_is_a_setup_failure(tmp_path, fakebin):  # noqa: F811
    fakebin.add("podman", f"exec {simulator_path(tmp_path)} -d\n")
    async with mock_web(tmp_path) as web:
        async with running_worker(make_config(tmp_path, [web.url])):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(
                SIM_MODULES="boot", OS_AUTOINST_GIT_REPO=REPO, OS_AUTOINST_CONTAINER_IMAGE=IMAGE)), 60)
            assert job.result == "passed", job.reason
            alone = await web.wait_job_done(web.schedule_job(job_settings(
                SIM_MODULES="boot", OS_AUTOINST_CONTAINER_IMAGE=IMAGE)), 60)
    assert fakebin.calls("podman")[0][-4] == IMAGE
    assert len(fakebin.calls("podman")) == 1  # the second job never started a container
    assert alone.result == "incomplete"
    assert alone.reason == ("setup failure: OS_AUTOINST_CONTAINER_IMAGE requires OS_AUTOINST_GIT_REPO. To run a "
                            "custom container command, use ISOTOVIDEO instead.")


async def test_no_podman_installed_is_a_setup_failure_with_the_reason(tmp_path, monkeypatch):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    async with mock_web(tmp_path) as web:
        async with running_worker(make_config(tmp_path, [web.url])):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", OS_AUTOINST_GIT_REPO=REPO)),
                                          60)
            after = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
    assert job.result == "incomplete"
    assert job.reason.startswith("setup failure: OS_AUTOINST_GIT_REPO is set, but podman is not installed on this "
                                 "worker (not found in PATH)")
    assert after.result == "passed", after.reason  # the slot keeps serving
