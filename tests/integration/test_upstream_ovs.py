"""Issue 12 row 4: a ``tap`` slot is broken while os-autoinst-openvswitch is not on the system bus.

There is no system bus here: a fake ``busctl`` on PATH answers ``NameHasOwner`` from a file the test flips.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakebin import FakeBin, fakebin  # noqa: F401 (fixture)
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

SERVICE = "org.opensuse.os_autoinst.switch"


def fake_busctl(fake: FakeBin, state: Path) -> None:
    state.write_text("false")
    fake.add("busctl", f'echo "b $(cat {state})"\n')


async def test_tap_slot_is_broken_until_the_switch_service_is_on_the_bus(tmp_path, fakebin):  # noqa: F811
    state = tmp_path / "bus-state"
    fake_busctl(fakebin, state)
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"WORKER_CLASS": "qemu_x86_64,tap,test"})
        async with running_worker(config):
            await wait_registered(web)
            wid = next(iter(web.workers))
            await web.wait_for(lambda: web.workers[wid].error is not None, 15)
            assert web.workers[wid].error == f"D-Bus service '{SERVICE}' is not running"
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot", WORKER_CLASS="tap"))
            await web.wait_for(lambda: web.jobs[job_id].state in ("scheduled", "assigned"), 5)
            state.write_text("true")  # the helper comes up: the next re-check sees it
            job = await web.wait_job_done(job_id, 40)
            assert job.result == "passed", job.reason
            assert web.workers[wid].error is None
    asked = fakebin.calls("busctl")
    assert asked and all(call[-2:] == ["s", SERVICE] and "--system" in call for call in asked)


async def test_configured_service_name_is_checked_and_a_non_tap_slot_never_asks(tmp_path, fakebin):  # noqa: F811
    state = tmp_path / "bus-state"
    fake_busctl(fakebin, state)
    async with mock_web(tmp_path) as web:
        tap = make_config(tmp_path, [web.url], settings={"WORKER_CLASS": "qemu_x86_64,tap"},
                          env={"OVS_DBUS_SERVICE_NAME": "org.example.switch"})
        async with running_worker(tap):
            await wait_registered(web)
            wid = next(iter(web.workers))
            await web.wait_for(lambda: web.workers[wid].error is not None, 15)
            assert "D-Bus service 'org.example.switch' is not running" == web.workers[wid].error
        assert {tuple(c[-2:]) for c in fakebin.calls("busctl")} == {("s", "org.example.switch")}
        (fakebin.dir / "busctl.calls").unlink()
        # "tapx" is not the class "tap" (upstream compares whole classes)
        plain = make_config(tmp_path, [web.url], settings={"WORKER_CLASS": "qemu_x86_64,tapx"})
        async with running_worker(plain):
            await wait_registered(web, count=1)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", WORKER_CLASS="tapx")), 30)
            assert job.result == "passed", job.reason
    assert fakebin.calls("busctl") == []


async def test_missing_busctl_is_a_clear_reason_not_a_crash(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"WORKER_CLASS": "qemu_x86_64,tap"})
        async with running_worker(config):
            await wait_registered(web)
            wid = next(iter(web.workers))
            await web.wait_for(lambda: web.workers[wid].error is not None, 15)
            error = web.workers[wid].error
            assert error.startswith(f"D-Bus service '{SERVICE}' is not running (asking the system bus failed: ")
            assert "busctl" in error
