"""The C++ core's own test (tests/cpp/test_core.cpp), configured, built with -Werror and run by ctest."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_core_cpp_builds_without_warnings_and_passes(tmp_path: Path) -> None:
    cmake, ctest = shutil.which("cmake"), shutil.which("ctest")
    if cmake is None or ctest is None:
        pytest.skip("cmake and ctest are needed to build the C++ test")
    if _compiler() is None:
        pytest.skip("no C++ compiler found (CXX, c++, g++, clang++)")
    if not (ROOT / "tests" / "cpp" / "test_core.cpp").exists():
        pytest.skip(f"no C++ sources under {ROOT} (not a source checkout)")
    build = tmp_path / "build"
    configure = _run([cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                      "-DDEFECTSPACE_PYTHON=OFF", "-DDEFECTSPACE_BUILD_TESTS=ON", "-DDEFECTSPACE_WERROR=ON"])
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = _run([cmake, "--build", str(build), "--parallel", "2"])
    assert compiled.returncode == 0, compiled.stdout[-5000:] + compiled.stderr[-3000:]
    tested = _run([ctest, "--output-on-failure"], cwd=build)
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr[-3000:]
    assert "100% tests passed" in tested.stdout
