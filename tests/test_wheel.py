"""`pip wheel .` builds a wheel holding only the package, and it works in a fresh venv."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv_and_passes_core_tests(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "--no-build-isolation", "-w", str(wheels),
                        f"-Cbuild-dir={tmp_path / 'build'}"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = wheels.glob("defectspace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("defectspace/", "defectspace-")) for n in names), names
    assert any(n.startswith("defectspace/_core") for n in names)
    assert "defectspace/_core.pyi" in names and "defectspace/py.typed" in names
    assert not any("/tests/" in n or n.endswith(".cpp") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel), "pytest", "hypothesis",
                        "pytest-benchmark"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # run from a folder without the sources so that the wheel, not the checkout, is imported
    work = tmp_path / "run"
    work.mkdir()
    for name in ("conftest.py", "helpers.py", "test_canonical.py", "test_cli.py"):
        (work / name).write_text((ROOT / "tests" / name).read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["DEFECTSPACE_2DMD"] = str(ROOT.parent / "shared" / "data" / "2dmd")
    r = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                        "-W", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning",
                        str(work)], capture_output=True, text=True, check=False, cwd=work, env=env)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    r = subprocess.run([str(py), "-c", "import defectspace, sys; print(defectspace.__file__)"],
                       capture_output=True, text=True, check=False, cwd=work, env=env)
    assert str(env_dir) in r.stdout
