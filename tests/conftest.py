"""Fixtures only (shared helpers are in helpers.py)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from helpers import require_2dmd


@pytest.fixture
def data_2dmd(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The 2DMD folder, also named by DEFECTSPACE_2DMD for the package (which may be installed)."""
    folder = require_2dmd()
    monkeypatch.setenv("DEFECTSPACE_2DMD", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _seed() -> None:
    """The one seed fixture: Python's, numpy's global and torch's generators seeded for every test."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - seeds legacy global-state users too
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)
