"""Helpers the tests share; tests import them from here (conftest only holds fixtures).

* :data:`DATA_2DMD` and :func:`require_2dmd`: the 2DMD folder, or a skip saying where it was looked for;
* :func:`assert_invariant`: "random symmetry images, then compare", the check of every symmetry law.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from defectspace.canonical import Canonicalizer, RandomImages
from numpy.typing import ArrayLike

DATA_2DMD = Path(os.environ.get(
    "DEFECTSPACE_2DMD", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "2dmd"
))
"""The 2DMD folder: $DEFECTSPACE_2DMD, else ../shared/data/2dmd beside the repository."""


def require_2dmd() -> Path:
    """The 2DMD data folder, or a skip saying where it was looked for."""
    if not (DATA_2DMD / "mos2_8x8.csv").exists():
        pytest.skip(f"2DMD data not found at {DATA_2DMD} (set DEFECTSPACE_2DMD)")
    return DATA_2DMD


def assert_invariant(fn: Callable[[Any], ArrayLike], states: ArrayLike, canonicalizer: Canonicalizer,
                     seed: int = 0, atol: float = 0.0) -> RandomImages:
    """Asserts that ``fn`` gives the same for ``states`` and for a uniformly random symmetry image
    of each row (the group element drawn per row with ``seed``): exactly with ``atol=0``, else to
    ``atol``. Returns the images, for further checks."""
    images = canonicalizer.random_images(states, seed)
    a, b = np.asarray(fn(states)), np.asarray(fn(images.images))
    if atol == 0.0:
        np.testing.assert_array_equal(b, a)
    else:
        np.testing.assert_allclose(b, a, rtol=0.0, atol=atol)
    return images
