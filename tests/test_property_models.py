"""The benchmarks' message-passing network on the defects: invariant under the lattice's symmetry,
and it learns what it is given."""

from __future__ import annotations

import numpy as np
import pytest
from defectspace import Canonicalizer, Lattice
from helpers import assert_invariant

torch = pytest.importorskip("torch")

LAT = Lattice.preset("MoS2", (4, 4))


def _pair_energy(x: np.ndarray) -> np.ndarray:
    """A label the network can learn: minus the number of defect pairs closer than 3.5 A."""
    pos = LAT.positions
    out = np.zeros(len(x))
    for r, row in enumerate(x):
        sites = np.flatnonzero(row)
        d = np.linalg.norm(pos[sites][:, None, :2] - pos[sites][None, :, :2], axis=-1)
        out[r] = -0.1 * ((d < 3.5).sum() - len(sites)) / 2
    return out


def test_pair_network_is_invariant_and_learns_a_pair_label() -> None:
    from defectspace.predict.network import fit_pair_network

    c = Canonicalizer(LAT)
    x = np.vstack([c.sample({"S->V": 2}, 120, 1), c.sample({"S->V": 1, "Mo->W": 1}, 120, 2)])  # 4x4: 48 sites
    y = _pair_energy(x)
    net = fit_pair_network(x[:200], y[:200], LAT, seed=0, epochs=10, hidden=16, layers=2)
    assert_invariant(net.predict, x[200:], c, atol=1e-5)
    mae = np.abs(net.predict(x[200:]) - y[200:]).mean()
    assert mae < 0.5 * np.abs(y[200:] - y[:200].mean()).mean(), mae  # better than the mean
    with pytest.raises(ValueError, match="at least 10 placements"):
        fit_pair_network(x[:5], y[:5], LAT)
