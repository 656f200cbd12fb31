"""`--tune-remote` against an emulated aarch64 board: TVM's own RPC server running on the aarch64
Python of the Debian arm64 sysroot under qemu-user, measuring cross-compiled candidates.

TVM's rpc_server starts its server loop in a worker it launches as `sys.executable -m
tvm.exec.popen_worker`; without binfmt_misc the host cannot exec an aarch64 binary, so the test
points `sys.executable` at a shell script that runs the sysroot's Python under qemu. The server
also needs cloudpickle (pure Python), copied from this machine's installation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .emulation_marks import EMULATION

pytestmark = EMULATION

pytest.importorskip("tvm")

PROFILE = "arm64-cortex-a72"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def emulated_board(tmp_path):
    """An aarch64 TVM RPC server under qemu-user on a free loopback port; its address."""
    import cloudpickle

    from edgekiln.compiler.cache import default_cache_dir
    from edgekiln.compiler.emulation.sysroot import PYTHON, ensure_site, ensure_sysroot

    cache = default_cache_dir()
    sysroot, site = ensure_sysroot(cache, print), ensure_site(cache, "tvm", print)
    extra = tmp_path / "extra"
    shutil.copytree(Path(cloudpickle.__file__).parent, extra / "cloudpickle")
    python = tmp_path / "python-aarch64"
    python.write_text(
        "#!/bin/sh\nexec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "
        f"{shutil.which('qemu-aarch64-static')} -L {sysroot} -E PYTHONPATH={extra}:{site} "
        f'-E HOME={tmp_path} -E PYTHONDONTWRITEBYTECODE=1 {sysroot / PYTHON} "$@"\n'
    )
    python.chmod(0o755)
    port = _free_port()
    start = f"import sys, runpy; sys.executable = {str(python)!r}; runpy.run_module('tvm.exec.rpc_server', run_name='__main__')"
    server = subprocess.Popen(
        [str(python), "-c", start, "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        start_new_session=True,  # the server forks a process per session: stop them all at teardown
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the emulated TVM RPC server did not start on port {port}")
                time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=15)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tuning_on_an_emulated_aarch64_board(tmp_path, emulated_board, capsys):
    pytest.importorskip("xgboost")
    from edgekiln.cli.main import main
    from edgekiln.compiler import Recipe, compile
    from edgekiln.compiler.tvm_build.tuning_db import RECORDS

    from .test_tvm_rpc_tuning import _lines, _matmul

    model, cache = tmp_path / "matmul.onnx", tmp_path / "cache"
    _matmul(model)
    recipe = Recipe.from_flags(backend="tvm", cache_dir=str(cache), tune_trials=2, tune_remote=emulated_board)
    tuned = compile(model, PROFILE, tmp_path / "tuned", recipe).path
    details = json.loads((tuned / "reports" / "lower_tvm.json").read_text())["details"]
    assert details["tune_trials"] >= 2 and details["tuning_database"]["kernels_from_database"] >= 1
    (folder,) = (cache / "tvm-tuning").iterdir()
    for _, (_, seconds, target, _) in _lines(folder / RECORDS):
        assert target["mtriple"] == "aarch64-linux-gnu" and seconds and np.isfinite(seconds).all()

    untuned = compile(model, PROFILE, tmp_path / "applied", Recipe.from_flags(backend="tvm", cache_dir=str(cache)))
    applied = json.loads((untuned.path / "reports" / "lower_tvm.json").read_text())["details"]
    assert applied["tuning_database"]["kernels_from_database"] == details["tuning_database"]["kernels_from_database"]
    capsys.readouterr()
    assert main(["verify", str(untuned.path), "--emulate", "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["machine"] == "aarch64" and report["passed"] and report["max_abs_diff"] <= 1e-4
