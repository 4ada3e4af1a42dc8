"""The §13.3 'upload_up_to' bookkeeping of ResultsReader, driven through pool directory files."""

from __future__ import annotations

import json
from pathlib import Path

from backend.job.results import ResultsReader, attach_md5
from tests.integration.upload_support import Module, PoolBuilder


def _setup(tmp_path: Path) -> tuple[PoolBuilder, ResultsReader, list[Module]]:
    b = PoolBuilder(tmp_path)
    mods = [Module("boot"), Module("login", screenshots=2, texts=1), Module("shutdown")]
    b.order(mods)
    return b, ResultsReader(tmp_path), mods


def test_nothing_is_read_before_isotovideo_runs(tmp_path: Path) -> None:
    b, reader, _ = _setup(tmp_path)
    b.status("initial")
    out = reader.read()
    assert (out.upload_up_to, out.test_order, out.results) == (None, None, {})


def test_results_follow_the_running_module(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    b.status("running", "boot")
    out = reader.read()
    assert [m["name"] for m in out.test_order] == ["boot", "login", "shutdown"]
    assert out.upload_up_to is None and out.results == {"boot": {"result": "running"}}
    b.result(mods[0])
    out = reader.read()  # same module: nothing new, no test order
    assert out.test_order is None and out.results == {"boot": {"result": "running"}}
    b.status("running", "")  # between modules: keeps the remembered one
    assert reader.read().current_module == "boot"
    b.status("running", "login")
    out = reader.read()
    assert out.upload_up_to == "boot" and out.read_modules == ["boot"]
    assert out.results["boot"]["result"] == "ok" and out.results["login"] == {"result": "running"}
    assert out.screenshots == ["boot-1.png"]
    reader.commit(out)
    b.result(mods[1])
    b.status("running", "shutdown")
    out = reader.read()
    assert out.read_modules == ["login"]  # boot was dropped from the working list
    assert out.screenshots == ["login-1.png", "login-2.png"] and out.files == ["login-3.txt"]


def test_stopping_drops_the_running_marker_and_final_reads_everything(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    for m in mods:
        b.result(m)
    b.status("running", "shutdown")
    assert reader.read(stopping=True).results == {}
    out = reader.read(final=True)
    assert out.upload_up_to == "" and out.read_modules == ["boot", "login", "shutdown"]
    assert [m["name"] for m in out.test_order] == ["boot", "login", "shutdown"]
    assert all(r["result"] == "ok" for r in out.results.values())


def test_reading_stops_at_the_first_module_without_a_result(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    b.result(mods[0])
    b.result(mods[2])
    b.status("finished", "")
    assert reader.read(final=True).read_modules == ["boot"]


def test_no_test_order_and_no_module_means_no_tests_scheduled(tmp_path: Path) -> None:
    b = PoolBuilder(tmp_path)
    b.status("running", "")
    assert ResultsReader(tmp_path).read().no_tests_scheduled


def test_changed_test_order_is_sent_again(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    b.status("running", "boot")
    reader.read()
    b.order([*mods, Module("extra")])
    out = reader.read()
    assert out.test_order is not None and out.test_order[-1]["name"] == "extra"


def test_extra_test_results_are_appended_to_the_test_order(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    b.result(mods[0])
    path = b.results / "result-boot.json"
    body = json.loads(path.read_text())
    body["extra_test_results"] = [{"name": "ltp_x", "category": "ltp", "flags": {}, "script": "x"}]
    path.write_text(json.dumps(body))
    b.status("finished", "")
    out = reader.read(final=True)
    assert [m["name"] for m in out.test_order] == ["boot", "login", "shutdown", "ltp_x"]


def test_attach_md5_replaces_screenshot_names() -> None:
    results = {"boot": {"details": [{"screenshot": "a.png"}, {"screenshot": "gone.png"}, {"text": "t.txt"}]}}
    attach_md5(results, {"a.png": "0" * 32})
    assert results["boot"]["details"] == [{"screenshot": {"name": "a.png", "md5": "0" * 32}}, {},
                                          {"text": "t.txt"}]


def test_result_file_names_cannot_point_outside_testresults(tmp_path: Path) -> None:
    b, reader, mods = _setup(tmp_path)
    b.result(mods[0])
    path = b.results / "result-boot.json"
    body = json.loads(path.read_text())
    body["details"] += [{"screenshot": "../../etc/passwd"}, {"text": "/etc/shadow"}, {"audio": ".."}]
    path.write_text(json.dumps(body))
    b.status("finished", "")
    out = reader.read(final=True)
    assert out.screenshots == ["boot-1.png"] and out.files == []
