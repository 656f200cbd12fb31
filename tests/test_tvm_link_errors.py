"""A failed TVM link names its cause (the linker's error), not the command line that ran it."""

from __future__ import annotations

import shutil

import pytest

from edgekiln.compiler.tvm_build.build import _link_hint, link_cause

CRTI = """Compilation error:
/usr/lib/gcc-cross/aarch64-linux-gnu/12/../../../../aarch64-linux-gnu/bin/ld: cannot find crti.o: No such file or directory
/usr/lib/gcc-cross/aarch64-linux-gnu/12/../../../../aarch64-linux-gnu/bin/ld: cannot find -lc: No such file or directory
collect2: error: ld returned 1 exit status

Command line: aarch64-linux-gnu-gcc -shared -fPIC -o /tmp/lib0.so /tmp/lib0.o /tmp/devc.o -Werror=x"""


def test_cause_of_a_missing_arm64_c_library():
    cause = link_cause(CRTI)
    assert cause.endswith("ld: cannot find crti.o: No such file or directory")
    assert "libc6-dev-arm64-cross" in _link_hint(cause)


def test_first_error_line_else_the_last_line():
    assert (
        link_cause(
            "Compilation error:\nx.c:1:1: warning: w\nx.c:2:3: error: unknown type 'q'\n"
            "x.c:4:1: error: later\nCommand line: gcc -o x.so x.c"
        )
        == "x.c:2:3: error: unknown type 'q'"
    )
    assert link_cause("Compilation error:\nsomething odd\nit stopped\n\nCommand line: gcc -Werror") == "it stopped"
    assert link_cause("Compilation error:\n\nCommand line: gcc") == "no output from the compiler"


def test_a_real_link_failure_through_tvm(tmp_path):
    cc = pytest.importorskip("tvm.support.cc")
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    (tmp_path / "f.c").write_text("int f(void) { return 1; }\n")
    with pytest.raises(RuntimeError) as info:
        cc.create_shared(str(tmp_path / "f.so"), [str(tmp_path / "f.c")], options=["-lnot_a_library_edgekiln"])
    assert "Command line:" in str(info.value)  # what the old message showed
    assert link_cause(str(info.value)).endswith("cannot find -lnot_a_library_edgekiln: No such file or directory")
