"""isotovideo gets MOJO_INACTIVITY_TIMEOUT / MOJO_CONNECT_TIMEOUT / MOJO_REACTOR like under the Perl worker,
unless the admin set them (issue 12 row 7). A wrapper around the simulator records its environment."""

from __future__ import annotations

import shlex

from tests.integration.harness import (
    job_settings,
    make_config,
    mock_web,
    running_worker,
    simulator_path,
    wait_registered,
)


def _env_recording_isotovideo(tmp_path) -> str:
    script = tmp_path / "isotovideo-env"
    simulator = shlex.join(simulator_path(tmp_path).split())
    # only the job's run writes the record (in the pool); the start-up's interface query runs in our cwd
    script.write_text(f'#!/bin/sh\ncase "$PWD" in */pool/*) env > "$PWD/env-seen.txt";; esac\nexec {simulator} "$@"\n')
    script.chmod(0o755)
    return str(script)


async def _seen_env(tmp_path) -> dict[str, str]:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        config.isotovideo = _env_recording_isotovideo(tmp_path)
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
            assert job.result == "passed"
    text = (config.slots[0].pool_dir / "env-seen.txt").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def test_isotovideo_gets_the_mojo_timeouts(tmp_path, monkeypatch):
    for key in ("MOJO_INACTIVITY_TIMEOUT", "MOJO_CONNECT_TIMEOUT", "MOJO_REACTOR"):
        monkeypatch.delenv(key, raising=False)
    env = await _seen_env(tmp_path)
    assert env["MOJO_INACTIVITY_TIMEOUT"] == "300"
    assert env["MOJO_CONNECT_TIMEOUT"] == "300"
    assert env["MOJO_REACTOR"] == "Mojo::Reactor::Poll"


async def test_admin_values_win(tmp_path, monkeypatch):
    monkeypatch.setenv("MOJO_INACTIVITY_TIMEOUT", "42")
    monkeypatch.setenv("MOJO_REACTOR", "Mojo::Reactor::EV")
    monkeypatch.delenv("MOJO_CONNECT_TIMEOUT", raising=False)
    env = await _seen_env(tmp_path)
    assert env["MOJO_INACTIVITY_TIMEOUT"] == "42"
    assert env["MOJO_REACTOR"] == "Mojo::Reactor::EV"
    assert env["MOJO_CONNECT_TIMEOUT"] == "300"
