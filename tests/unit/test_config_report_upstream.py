"""check-config for the issue-12 settings of rows 4, 5, 8, 9, 12, 13, 14: each one it reads is printed with
where its value came from, the IPMI password is masked, the proxy per web UI is shown, and a key given
where qaworker does not read it is one warning line naming file and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.unit.config_helpers import sandbox_env, write

ROOT = Path(__file__).resolve().parents[2]


def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "check-config", "--instance", "1"], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)


def test_issue_12_settings_are_reported_with_their_origin(tmp_path):
    env = sandbox_env(tmp_path)
    ini = write(tmp_path / "env/workers.ini", """
        [global]
        HOST = http://openqa.example.test localhost
        WORKER_HOSTNAME = w1.example.test
        CACHEDIRECTORY = /srv/cache
        CACHEWORKERS = 3
        IPMI_HOSTNAME = bmc.example.test
        IPMI_USER = admin
        IPMI_PASSWORD = Very-Secret-77
        IPMI_AUTOSHUTDOWN_INTERVAL = 120
        OPENQA_RSYNC_TIMEOUT = 99
        [1]
        IPMI_OPTIONS = -I lanplus -C 17
        WORKER_CLASS = qemu_x86_64,tap
        OS_AUTOINST_GIT_REPO = https://example.test/os-autoinst.git
        """)
    env.update({"OPENQA_RSYNC_RETRIES": "4", "OPENQA_RSYNC_RETRY_PERIOD": "2", "OPENQA_METRICS_DOWNLOAD_SIZE": "1000",
                "OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS": "5", "OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL": "4",
                "OPENQA_WORKER_OPTIMIZE_ATTEMPTS": "2", "OPENQA_WORKER_OPTIMIZE_RETRY_DELAY": "0.5",
                "OVS_DBUS_SERVICE_NAME": "org.example.switch", "HTTP_PROXY": "http://user:pw@proxy.test:3128",
                "NO_PROXY": "other.test"})
    result = check_config(env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    where = re.escape(f"({ini} [global])")
    slot = re.escape(f"({ini} [1])")
    expected = {
        "CACHEWORKERS": rf"3 +{where}", "IPMI_HOSTNAME": rf"bmc\.example\.test +{where}",
        "IPMI_USER": rf"admin +{where}", "IPMI_PASSWORD": rf"\*\*\*\* +{where}",
        "IPMI_AUTOSHUTDOWN_INTERVAL": rf"120 +{where}", "IPMI_OPTIONS": rf"-I lanplus -C 17 +{slot}",
        "OPENQA_RSYNC_TIMEOUT": r"1800 +\(default\)",  # environment only: the workers.ini value is not read
        "OPENQA_RSYNC_RETRIES": r"4 +\(environment OPENQA_RSYNC_RETRIES\)",
        "OPENQA_RSYNC_RETRY_PERIOD": r"2 +\(environment OPENQA_RSYNC_RETRY_PERIOD\)",
        "OPENQA_METRICS_DOWNLOAD_SIZE": r"1000 +\(environment OPENQA_METRICS_DOWNLOAD_SIZE\)",
        "OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS": r"5 +\(environment OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS\)",
        "OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL": r"4 +\(environment OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL\)",
        "OPENQA_WORKER_OPTIMIZE_ATTEMPTS": r"2 +\(environment OPENQA_WORKER_OPTIMIZE_ATTEMPTS\)",
        "OPENQA_WORKER_OPTIMIZE_RETRY_DELAY": r"0\.5 +\(environment OPENQA_WORKER_OPTIMIZE_RETRY_DELAY\)",
        "OVS_DBUS_SERVICE_NAME": r"org\.example\.switch +\(environment OVS_DBUS_SERVICE_NAME\)",
        "OS_AUTOINST_GIT_REPO": rf"https://example\.test/os-autoinst\.git +{slot}",
        "WORKER_CLASS": rf"qemu_x86_64,tap +{slot}",
    }
    for key, value in expected.items():
        assert re.search(rf"^ +{key} += {value}$", out, re.M), f"{key}: {value}\n{out}"
    assert "Very-Secret-77" not in out + result.stderr and "user:pw" not in out
    # the proxy each web UI's traffic takes, and why
    assert re.search(r"web UI http://openqa\.example\.test:.*\n(?: .*\n)*? +proxy += http://\*\*\*\*@proxy\.test:3128 "
                     r"+\(environment HTTP_PROXY\)$", out, re.M), out
    assert re.search(r"web UI http://localhost:.*\n(?: .*\n)*? +proxy += direct +\(loopback\)$", out, re.M), out
    # an environment-only key in workers.ini: one warning line with file, section and key
    warnings = [line for line in result.stderr.splitlines() if "OPENQA_RSYNC_TIMEOUT" in line]
    assert warnings == [f"qaworker: warning: {ini} [global] OPENQA_RSYNC_TIMEOUT: read from the environment only; "
                        "this workers.ini value only goes into vars.json"]
    assert "parsed; behaviour: see issue 12" not in "\n".join(
        line for line in out.splitlines() if re.match(r" +(CACHEWORKERS|IPMI_|OPENQA_RSYNC|OVS_|OPENQA_METRICS)", line))
