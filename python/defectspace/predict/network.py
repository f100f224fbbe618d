"""A small message-passing network on the defects of a placement (PyTorch; the benchmarks' model).

Nodes are the defects (an embedding of their kind); every pair of defects exchanges messages that
depend on both nodes and on the pair's geometry: Gaussian expansions of its minimum-image distance
(40 Gaussians up to 16 angstrom) and of its height difference. Three rounds of messages, then a sum
over the defects of an MLP of each. Invariant under the lattice's symmetry by construction (only
distances enter), like MEGNet on 2DMD's sparse graphs. (A variant summing the Gaussians over every
periodic image, with sum and max pooling, did not do better: 5.8 against 5.3 meV on one split.)

It learns the low-density gaps well (~6 meV alone) but costs O(defects^2) per placement, so the
shipped predictors do not use it; :func:`fit_pair_network` is what ``benchmarks/paper_table.py``
calls. Training: AdamW, one-cycle learning rate, L1 loss on standardised labels, the epoch with the
best MAE on a held-out tenth of the training rows kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace.lattice import Lattice
from defectspace.placement import as_states

R_MAX = 16.0
"""Largest distance of the Gaussian centres, angstrom."""
N_RBF = 40
"""Gaussians of the distance expansion."""
DZ_CENTRES = (0.0, 1.6, 3.1, 4.7)
"""Centres (angstrom) of the Gaussians of the minimum-image height difference."""


@functools.lru_cache(maxsize=4)
def pair_features(lattice: Lattice) -> NDArray[np.float32]:
    """(n_sites, n_sites, N_RBF + 3) edge features of every site pair (see the module docstring)."""
    pos = lattice.positions
    mu = np.linspace(0.0, R_MAX, N_RBF)
    gamma = (N_RBF / R_MAX) ** 2 / 2
    d = lattice.minimum_image_distances()
    acc = np.exp(-gamma * (d[..., None] - mu) ** 2)
    dz = np.abs(pos[:, None, 2] - pos[None, :, 2])
    zf = np.exp(-((dz[..., None] - np.asarray(DZ_CENTRES)) ** 2) / 0.5)
    out = np.concatenate([acc, zf], axis=-1).astype(np.float32)
    out.setflags(write=False)
    return out


def _pack(x: NDArray[np.uint8], feats: NDArray[np.float32]) -> tuple[Any, Any]:
    import torch

    sites = [np.flatnonzero(r) for r in x]
    n = max(1, max(len(s) for s in sites))
    kinds = np.zeros((len(x), n), np.int64)
    edges = np.zeros((len(x), n, n, feats.shape[-1]), np.float32)
    for a, s in enumerate(sites):
        kinds[a, :len(s)] = x[a, s]
        edges[a, :len(s), :len(s)] = feats[np.ix_(s, s)]
    return torch.from_numpy(kinds), torch.from_numpy(edges)


def _network(n_codes: int, n_edge: int, hidden: int, layers: int) -> Any:
    import torch
    from torch import nn

    class PairNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(n_codes, hidden)
            self.edge = nn.ModuleList([nn.Sequential(nn.Linear(2 * hidden + n_edge, hidden), nn.SiLU(),
                                                     nn.Linear(hidden, hidden)) for _ in range(layers)])
            self.upd = nn.ModuleList([nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                                    nn.Linear(hidden, hidden)) for _ in range(layers)])
            self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

        def forward(self, kinds: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
            mask = (kinds > 0).float()
            b, n = kinds.shape
            pair_mask = mask[:, :, None] * mask[:, None, :] * (1 - torch.eye(n))[None]
            h = self.emb(kinds)
            for edge, upd in zip(self.edge, self.upd, strict=True):
                hi = h[:, :, None, :].expand(b, n, n, -1)
                hj = h[:, None, :, :].expand(b, n, n, -1)
                m = edge(torch.cat([hi, hj, edges], -1)) * pair_mask[..., None]
                h = h + upd(torch.cat([h, m.sum(2)], -1)) * mask[..., None]
            out: torch.Tensor = (self.out(h).squeeze(-1) * mask).sum(1)
            return out

    return PairNet()


@dataclass
class PairNetwork:
    """A fitted network: :meth:`predict` gives eV for placements of its lattice."""

    lattice: Lattice
    module: Any
    y_mean: float
    y_scale: float
    val_mae: float
    """MAE (eV) on the held-out tenth of the training rows at the kept epoch."""

    def predict(self, states: ArrayLike, batch: int = 512) -> NDArray[np.float64]:
        import torch

        x = as_states(states, self.lattice)
        feats = pair_features(self.lattice)
        out = np.zeros(len(x))
        self.module.eval()
        with torch.no_grad():
            for lo in range(0, len(x), batch):
                kinds, edges = _pack(x[lo:lo + batch], feats)
                out[lo:lo + batch] = self.module(kinds, edges).numpy().astype(np.float64)
        return out * self.y_scale + self.y_mean


def fit_pair_network(states: ArrayLike, y: ArrayLike, lattice: Lattice, *, seed: int = 0,
                     epochs: int = 300, lr: float = 2e-3, batch: int = 64, hidden: int = 64,
                     layers: int = 3, validation: float = 0.1) -> PairNetwork:
    """Trains a :class:`PairNetwork` on placements and labels (eV); see the module docstring."""
    import torch

    x = as_states(states, lattice)
    yy = np.asarray(y, dtype=np.float64).ravel()
    if len(yy) != len(x) or len(yy) < 10:
        raise ValueError(f"need at least 10 placements with one label each, got {len(x)} and {len(yy)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_val = max(1, int(validation * len(x)))
    val, tr = perm[:n_val], perm[n_val:]
    mean, scale = float(yy[tr].mean()), float(yy[tr].std()) or 1.0
    feats = pair_features(lattice)
    kt, et = _pack(x[tr], feats)
    kv, ev = _pack(x[val], feats)
    target = torch.tensor((yy[tr] - mean) / scale, dtype=torch.float32)
    net = _network(lattice.n_kinds + 1, feats.shape[-1], hidden, layers)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    steps = epochs * ((len(tr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    best: tuple[float, dict[str, Any] | None] = (np.inf, None)
    for ep in range(epochs):
        net.train()
        order = torch.randperm(len(tr))
        for lo in range(0, len(tr), batch):
            j = order[lo:lo + batch]
            loss = torch.nn.functional.l1_loss(net(kt[j], et[j]), target[j])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
            opt.step()
            sched.step()
        if ep % 10 == 9 or ep == epochs - 1:
            net.eval()
            with torch.no_grad():
                pv = net(kv, ev).numpy() * scale + mean
            mae = float(np.mean(np.abs(pv - yy[val])))
            if mae < best[0]:
                best = (mae, {k: v.clone() for k, v in net.state_dict().items()})
    assert best[1] is not None
    net.load_state_dict(best[1])
    return PairNetwork(lattice, net, mean, scale, best[0])
