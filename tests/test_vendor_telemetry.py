"""OpenVINO's converter and NNCF send usage reports unless the user opted out; in an edgekiln build
only a user who opted in is reported (compiler/vendor_telemetry.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("openvino_telemetry", reason="the openvino extra is not installed")

NNCF_FIRST = """
import json
import nncf  # NNCF makes the process's Telemetry on import, before edgekiln's first OpenVINO pass
from openvino_telemetry import Telemetry
from openvino_telemetry.utils.opt_in_checker import OptInChecker
from edgekiln.compiler.vendor_telemetry import decline_unless_opted_in
before = [OptInChecker().check(False, False).name, Telemetry().consent]
decline_unless_opted_in()
decline_unless_opted_in()  # a second call changes nothing
print(json.dumps(before + [OptInChecker().check(False, False).name, Telemetry().consent]))
"""

CHECK_ONLY = """
import json
from openvino_telemetry.utils.opt_in_checker import OptInChecker
from edgekiln.compiler.vendor_telemetry import decline_unless_opted_in
decline_unless_opted_in()
print(json.dumps(OptInChecker().check(False, False).name))
"""


def _run(code: str, home) -> object:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI")}
    env["HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_answer_is_no_even_for_a_telemetry_made_before(tmp_path):
    pytest.importorskip("nncf")
    assert _run(NNCF_FIRST, tmp_path) == ["NO_FILE", True, "DECLINED", False]


@pytest.mark.parametrize(("answer", "expected"), [("1", "ACCEPTED"), ("0", "DECLINED")])
def test_the_users_own_answer_stands(tmp_path, answer, expected):
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "openvino_telemetry").write_text(answer)
    assert _run(CHECK_ONLY, tmp_path) == expected
