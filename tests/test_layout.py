"""The project's layout: the README's benchmark command collects the benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_benchmark_command_collects_the_benchmark_files() -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--benchmark-enable",
                        "--collect-only", "-q", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = {line.split("::")[0] for line in r.stdout.splitlines() if "::" in line}
    assert {"benchmarks/bench_canonical.py", "benchmarks/bench_descriptors.py",
            "benchmarks/bench_embedder.py"} <= files
