"""Results and assets uploaded by qaworker are served back by the real web UI (issue 4), compared with Perl."""

from __future__ import annotations

import time

import pytest

from tests.helpers import free_instance
from tests.interop.conftest import PERL_CLASS, wait_until
from tests.interop.pairs import SIMULATOR, compare, finish_pair, own_class

pytestmark = pytest.mark.interop

ASSET_SIZE = 1_500_000  # > the 1 MB default chunk: two chunks


def _sim_settings(asset: str) -> dict[str, str]:
    return {"ISOTOVIDEO": SIMULATOR, "SIM_MODULES": "boot,shutdown", "SIM_MODULE_SECONDS": "0.3",
            "SIM_SCREENSHOTS": "1", "SIM_SCREENSHOT_SIZE": "160x120", "SIM_ASSET_SIZE": str(ASSET_SIZE),
            "PUBLISH_HDD_1": asset}


def _asset_size(webui, name: str) -> int | None:
    for asset in webui.assets():
        if asset["name"] == name:
            return asset.get("size")
    return None


def _started(webui, qaworker, extra_ini: str = ""):
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance), extra_ini=extra_ini)
    webui.wait_idle(worker.host, worker.instance)
    return worker


def _check_served(webui, job_id: int, asset: str) -> None:
    details = webui.details(job_id)
    shots = [step["screenshot"] for m in details["testresults"] for step in m["details"] if step.get("screenshot")]
    assert shots, details["testresults"]
    image = webui.http.get(f"{webui.url}/tests/{job_id}/images/{shots[0]}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG"), (image.status_code, shots[0])
    log = webui.http.get(f"{webui.url}/tests/{job_id}/file/autoinst-log.txt", follow_redirects=True)
    assert log.status_code == 200 and log.text, log.status_code
    size = wait_until(lambda: _asset_size(webui, asset), timeout=20, message=f"asset {asset} listed with a size")
    assert size == ASSET_SIZE


def test_publish_hdd_chunked_and_screenshots_same_as_perl(webui, qaworker, perl_worker):
    worker = _started(webui, qaworker, "LOCAL_UPLOAD = 0")
    stamp = int(time.time() * 1000)
    perl_asset, our_asset = f"interop-perl-{stamp}.qcow2", f"interop-qaworker-{stamp}.qcow2"
    perl_id = webui.schedule(WORKER_CLASS=PERL_CLASS, **_sim_settings(perl_asset))
    our_id = webui.schedule(WORKER_CLASS=worker.worker_class, **_sim_settings(our_asset))
    perl, ours = finish_pair(webui, perl_id, our_id)
    compare("PUBLISH_HDD_1 (simulator, chunked)", perl, ours)
    assert ours.result == "passed", worker.log()[-3000:]
    assert "using multiple chunks" in worker.log(), "LOCAL_UPLOAD=0 must take the chunked path"
    _check_served(webui, our_id, our_asset)
    _check_served(webui, perl_id, perl_asset)


def test_publish_hdd_local_shortcut(webui, qaworker):
    worker = _started(webui, qaworker)
    asset = f"interop-qaworker-local-{int(time.time() * 1000)}.qcow2"
    job = webui.wait_job(webui.schedule(WORKER_CLASS=worker.worker_class, **_sim_settings(asset)))
    assert job["result"] == "passed", worker.log()[-3000:]
    assert "using multiple chunks" not in worker.log()
    _check_served(webui, job["id"], asset)
