from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

DATA_2DMD = Path(os.environ.get(
    "DEFECTSPACE_2DMD", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "2dmd"
))


def require_2dmd() -> Path:
    """The 2DMD data folder, or a skip saying where it was looked for."""
    if not (DATA_2DMD / "mos2_8x8.csv").exists():
        pytest.skip(f"2DMD data not found at {DATA_2DMD} (set DEFECTSPACE_2DMD)")
    return DATA_2DMD


@pytest.fixture
def data_2dmd(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The 2DMD folder, also named by DEFECTSPACE_2DMD for the package (which may be installed)."""
    folder = require_2dmd()
    monkeypatch.setenv("DEFECTSPACE_2DMD", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - seeds legacy global-state users too
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)
