from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_core_stubs_match_the_compiled_module() -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "defectspace._core", "--allowlist",
                        str(ROOT / "tests" / "stubtest_allowlist.txt")],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_package_is_mypy_strict_and_ruff_clean() -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, check=False,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    r = subprocess.run([ruff, "check", "python/defectspace"], capture_output=True, text=True,
                       check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
