"""Settings of the encoder and of training, and the encoder's input channels: plain dataclasses and
numpy, importable without torch (the command line shows their defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace.lattice import Lattice


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of an :class:`~defectspace.ml.encoder.Encoder`."""

    in_channels: int = 6
    """Input channels: one per (basis site, defect kind) pair of the lattice."""
    channels: int = 24
    """Channels of every convolution (``"equivariant"``: all orientations together, a multiple of
    the number of point operations)."""
    layers: int = 3
    """Number of circular convolutions (3x3; the first ``"equivariant"`` one spans ``radius``)."""
    hidden: int = 64
    """Width of the MLP head."""
    dim: int = 12
    """Embedding size."""
    normalize: bool = True
    """Whether embeddings are scaled to unit length (distances then lie in [0, 2])."""
    architecture: str = "equivariant"
    """``"equivariant"`` (point-group convolutions, invariant by construction; needs the lattice)
    or ``"cnn"`` (the paper's free kernels, learned invariance)."""
    radius: float = 6.1
    """``"equivariant"`` only: angstrom around a cell's basis-0 site that its first layer sees (6.1:
    MoS2's metal shells up to sqrt(3) a and the chalcogens around them, a 5x5 kernel)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        """Inverse of ``dataclasses.asdict``; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown encoder settings {sorted(unknown)}")
        return cls(**dict(d))


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`~defectspace.ml.training.train` (stored in the checkpoint's JSON)."""

    seed: int = 0
    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 256
    """Anchors per step (each brings a positive and a negative)."""
    lr: float = 3e-3
    """Peak learning rate (linear warm-up over 5% of the steps, cosine decay to 2%)."""
    weight_decay: float = 1e-4
    loss: str = "margin"
    """``"margin"`` (kept: higher held-out accuracy at equal steps) or ``"infonce"``."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    margin: float = 0.5
    """Margin of the ``"margin"`` loss (embeddings have unit length)."""
    architecture: str = "equivariant"
    """``"equivariant"`` (point-group convolutions, invariant by construction) or ``"cnn"`` (the
    paper's free kernels, invariance learned)."""
    radius: float = 6.1
    """Angstrom that the first layer of the ``"equivariant"`` encoder sees around a cell."""
    dim: int = 12
    channels: int = 24
    layers: int = 3
    hidden: int = 64
    hard_fraction: float = 0.5
    """Share of negatives that move one defect to a nearby site."""
    low_defects: tuple[int, int] = (1, 3)
    high_defects: tuple[int, int] = (4, 24)
    mix: tuple[float, float, float] = (0.35, 0.35, 0.3)
    """Shares of low-density, high-density and data (2DMD) anchors; the data's share goes to the
    others when training on pairs alone (:class:`~defectspace.ml.training.TrainingData`)."""
    threads: int = 1
    """CPU threads for torch and the core (1 is fastest for these small convolutions: with 2 on a
    busy 2-core machine torch's thread pool spends more time waiting than working)."""
    eval_pairs: int = 4000
    """Held-out pairs per density for the metrics stored with the checkpoint."""

    def encoder_config(self, lattice: Lattice) -> EncoderConfig:
        """The encoder these settings train on ``lattice``."""
        return EncoderConfig(in_channels=n_channels(lattice), channels=self.channels,
                             layers=self.layers, hidden=self.hidden, dim=self.dim, normalize=True,
                             architecture=self.architecture, radius=self.radius)


def channel_table(lattice: Lattice) -> NDArray[np.int64]:
    """``(n_basis, n_kinds + 1)`` int64: input channel of (basis site, code), or -1 for none.

    Channels are numbered basis site by basis site, in kind order within a site (MoS2: 0 Mo->V,
    1 Mo->W on Mo; 2 S->V, 3 S->Se on bottom S; 4 S->V, 5 S->Se on top S).
    """
    table = np.full((lattice.n_basis, lattice.n_kinds + 1), -1, dtype=np.int64)
    ch = 0
    for b in range(lattice.n_basis):
        for code in lattice.allowed_codes(b)[1:]:
            table[b, code] = ch
            ch += 1
    return table


def n_channels(lattice: Lattice) -> int:
    """Number of input channels of ``lattice`` (6 for MoS2)."""
    return int((channel_table(lattice) >= 0).sum())
