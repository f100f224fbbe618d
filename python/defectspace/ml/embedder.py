"""Siamese-network embeddings of defect placements, invariant under the crystal's symmetry.

A placement on an ``n1 x n2`` supercell becomes an image of ``n1 x n2`` unit cells with one
channel per (basis site, defect kind) pair (6 for MoS2: Mo->V, Mo->W on the Mo site; S->V, S->Se
on the bottom and on the top S site). :class:`Encoder` runs a few convolutions with circular
padding over that periodic image, pools mean and max over the cells and maps the pooled features
through a small MLP to a ``dim``-number embedding (12 by default). Pooling makes the embedding
exactly invariant under lattice translations and lets one encoder run on any supercell of its
lattice. Two architectures:

- ``"cnn"`` (the paper's): free 3x3 kernels (in the oblique (i, j) basis of the hexagonal lattice
  a 3x3 kernel covers all 6 nearest cells); invariance under the point operations (rotations,
  mirrors) is learned contrastively (:mod:`defectspace.ml.training`), so it is approximate.
- ``"equivariant"`` (the default of training): a group-equivariant CNN over the point group
  that fixes a site (12 operations for MoS2's D3h, :class:`AnchorPointGroup`). Every layer
  (:class:`GroupConv`) applies each kernel in all 12 orientations of the group, so a feature map
  has one block per operation and a symmetry image of the input permutes cells and blocks;
  pooling over both makes the embedding invariant under the whole space group by construction
  (to float rounding, ~1e-7). The first layer sees every site within ``radius`` of a cell's
  anchor site. Kernels transformed in all orientations keep the relative orientation and layer
  of defects, which kernels merely tied over orbits lose (tried: 2.5 % of held-out inequivalent
  pairs then got identical embeddings). Training only has to pull inequivalent placements apart.

``Embedder.embed(states, exact=True)`` embeds the exact canonical form of every placement
(:meth:`defectspace.canonical.Canonicalizer.canonicalize`) instead, which is invariant by
construction for either architecture (bit-identical embeddings of equivalent placements).

Checkpoints are a folder with ``embedder.safetensors`` (weights) and ``embedder.json`` (format
version, lattice description, hyperparameters, sha256 of the weights file, metrics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from defectspace import checkpoint
from defectspace.checkpoint import CheckpointFormat, sha256_hex, write_checkpoint
from defectspace.lattice import Lattice
from defectspace.placement import as_states

FORMAT_NAME = "defectspace-embedder"
FORMAT_VERSION = 1
"""Version of the checkpoint layout; :meth:`Embedder.load` refuses any other."""
WEIGHTS_FILE = "embedder.safetensors"
META_FILE = "embedder.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models" / "mos2_8x8"
"""The shipped MoS2 8x8 embedder (``defectspace train-embedder --out DIR --seed 0``)."""


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of an :class:`Encoder`."""

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


class Encoder(nn.Module):
    """Periodic CNN over the supercell grid, mean+max pooled, MLP head to ``dim`` numbers.

    ``forward`` takes a float tensor ``(n, in_channels, n1, n2)`` (see :func:`states_to_grid`)
    of any ``n1, n2`` and returns ``(n, dim)``. The ``"equivariant"`` architecture needs the
    ``lattice`` (its point operations tie the kernel weights; any supercell of it works).
    """

    def __init__(self, config: EncoderConfig, lattice: Lattice | None = None) -> None:
        super().__init__()
        if config.layers < 1 or config.channels < 1 or config.dim < 1 or config.hidden < 1:
            raise ValueError(f"encoder sizes must be positive: {config}")
        if config.architecture not in ("cnn", "equivariant"):
            raise ValueError(f"architecture must be 'cnn' or 'equivariant', got {config.architecture!r}")
        self.config = config
        convs: list[nn.Module] = []
        c_in = config.in_channels
        self.n_ops = 1
        if config.architecture == "equivariant":
            if lattice is None:
                raise ValueError("the 'equivariant' encoder needs its lattice")
            group = AnchorPointGroup.of(lattice)
            self.n_ops = group.order
            if config.channels % group.order:
                raise ValueError(f"channels ({config.channels}) must be a multiple of the "
                                 f"{group.order} point operations of {lattice.name}")
        per_op = config.channels // self.n_ops
        for k in range(config.layers):
            if config.architecture == "cnn":
                convs.append(nn.Conv2d(c_in, config.channels, 3, padding=1, padding_mode="circular"))
                c_in = config.channels
            else:
                assert lattice is not None
                radius = config.radius if k == 0 else 1.01 * float(np.linalg.norm(lattice.cell[0]))
                convs.append(GroupConv(lattice, group, c_in, per_op, radius, lift=(k == 0)))
                c_in = per_op
            convs.append(nn.SiLU())
        self.convs = nn.Sequential(*convs)
        self.head = nn.Sequential(nn.Linear(2 * per_op, config.hidden), nn.SiLU(),
                                  nn.Linear(config.hidden, config.dim))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(n, dim)`` of grids ``(n, in_channels, n1, n2)``."""
        h = self.convs(grid)  # (n, G * c, n1, n2), operation-major channels
        h = h.reshape(h.shape[0], self.n_ops, -1, h.shape[2] * h.shape[3]).transpose(1, 2).flatten(2)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # over cells and operations
        out: torch.Tensor = self.head(pooled)
        if self.config.normalize:
            out = nn.functional.normalize(out, dim=1)
        return out


@dataclass(frozen=True)
class AnchorPointGroup:
    """The point operations that fix basis site 0 of cell (0, 0), as rotations and their action
    on the basis sites, with their multiplication table (operation ``mul[g, h]`` is g after h)."""

    rotations: NDArray[np.int64]
    """(G, 3, 3) rotation acting on fractional column vectors (identity first)."""
    basis_map: NDArray[np.int64]
    """(G, n_basis): the basis site that operation g maps each basis site of cell (0, 0) to."""
    basis_cell: NDArray[np.int64]
    """(G, n_basis, 2): the cell it lands in, for the operation shifted to fix site 0."""
    mul: NDArray[np.int64]
    inv: NDArray[np.int64]

    @property
    def order(self) -> int:
        """Number of operations (12 for MoS2's D3h)."""
        return int(self.rotations.shape[0])

    @classmethod
    def of(cls, lattice: Lattice) -> AnchorPointGroup:
        """Raises ValueError when an operation maps basis site 0 onto another basis site (features
        anchored on site 0's cells would then not be equivariant)."""
        rots, maps, cells = [], [], []
        for op in lattice.point_operations:
            bmap, shifts = lattice.basis_action(op)
            if bmap[0] != 0:
                raise ValueError(f"{lattice.name}: a point operation moves basis site 0 to another "
                                 "basis site; the 'equivariant' encoder cannot anchor features on it")
            rots.append(op.rotation.astype(np.int64))
            maps.append(bmap.astype(np.int64))
            cells.append(shifts.astype(np.int64) - shifts[0])  # the lattice shift that fixes site 0
        keys = [r.tobytes() for r in rots]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{lattice.name}: two point operations share a rotation")
        lookup = {k: i for i, k in enumerate(keys)}
        g = len(rots)
        mul = np.array([[lookup[(rots[a] @ rots[b]).tobytes()] for b in range(g)] for a in range(g)],
                       dtype=np.int64)
        inv = np.array([int(np.flatnonzero(mul[a] == 0)[0]) for a in range(g)], dtype=np.int64)
        return cls(np.array(rots), np.array(maps), np.array(cells), mul, inv)

    def act(self, members: Sequence[tuple[int, int, int]]) -> NDArray[np.int64]:
        """(G, M): index of operation g applied to member m, members being sites (di, dj, b)
        relative to cell (0, 0). Raises ValueError if the members are not closed."""
        index = {m: k for k, m in enumerate(members)}
        out = np.empty((self.order, len(members)), dtype=np.int64)
        for g in range(self.order):
            r2 = self.rotations[g, :2, :2]
            for k, (di, dj, b) in enumerate(members):
                ci, cj = self.basis_cell[g, b] + r2 @ np.array([di, dj])
                target = (int(ci), int(cj), int(self.basis_map[g, b]))
                if target not in index:
                    raise ValueError("a point operation maps a neighbour out of the neighbourhood")
                out[g, k] = index[target]
        return out


def neighbourhood(lattice: Lattice, radius: float, bases: Sequence[int] | None = None
                  ) -> list[tuple[int, int, int]]:
    """Sites ``(di, dj, b)`` within ``radius`` angstrom (3D) of basis site 0 of cell (0, 0)."""
    cell = lattice.cell
    p0 = lattice.basis[0]
    reach = int(np.ceil(radius / min(np.linalg.norm(cell[0]), np.linalg.norm(cell[1])))) + 2
    out = []
    for di in range(-reach, reach + 1):
        for dj in range(-reach, reach + 1):
            for b in range(lattice.n_basis) if bases is None else bases:
                q = lattice.basis[b] + np.array([di, dj, 0.0])
                if np.linalg.norm((q - p0) @ cell) <= radius + 1e-9:
                    out.append((di, dj, int(b)))
    return out


def _wrap_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Circular padding by ``p`` cells on both grid axes, for any grid size (also smaller than p)."""
    if p == 0:
        return x
    n1, n2 = x.shape[-2:]
    if p <= min(n1, n2):
        return nn.functional.pad(x, (p, p, p, p), mode="circular")
    i = torch.arange(-p, n1 + p, device=x.device) % n1
    j = torch.arange(-p, n2 + p, device=x.device) % n2
    return x.index_select(-2, i).index_select(-1, j)


class GroupConv(nn.Module):
    """A periodic convolution equivariant under the point group fixing site 0 (G operations).

    Output channels come in G blocks, one per operation g, each the same kernel transformed by g
    (a group convolution in the regular representation). With ``lift=True`` the input is the
    one-hot grid of :func:`states_to_grid` and the kernel has one weight per (site within
    ``radius`` of a cell's basis-0 site, defect kind); otherwise the input has G blocks of
    ``c_in`` channels and the kernel spans the basis-0 sites within ``radius`` and the G blocks.
    """

    def __init__(self, lattice: Lattice, group: AnchorPointGroup, c_in: int, c_out: int,
                 radius: float, lift: bool) -> None:
        super().__init__()
        members = neighbourhood(lattice, radius, None if lift else [0])
        act = group.act(members)
        n_ops = group.order
        self.pad = max(max(abs(di), abs(dj)) for di, dj, _ in members)
        k = self.k = 2 * self.pad + 1
        if lift:
            table = channel_table(lattice)
            if n_channels(lattice) != c_in:
                raise ValueError(f"{lattice.name} has {n_channels(lattice)} input channels, not {c_in}")
            n_codes = table.shape[1]
            n_params = len(members) * n_codes
            index = np.full((n_ops, c_in, k, k), n_params, dtype=np.int64)  # n_params: the zero column
            for g in range(n_ops):
                ginv = group.inv[g]
                for m, (di, dj, b) in enumerate(members):
                    for code in lattice.allowed_codes(b)[1:]:
                        index[g, table[b, code], di + self.pad, dj + self.pad] = act[ginv, m] * n_codes + code
            fan_in = len(members)
        else:
            n_params = c_in * n_ops * len(members)
            index = np.full((n_ops, n_ops, c_in, k, k), n_params, dtype=np.int64)
            for g in range(n_ops):
                ginv = group.inv[g]
                for h in range(n_ops):
                    for ci in range(c_in):
                        for m, (di, dj, _) in enumerate(members):
                            index[g, h, ci, di + self.pad, dj + self.pad] = (
                                (ci * n_ops + group.mul[ginv, h]) * len(members) + act[ginv, m])
            fan_in = c_in * n_ops * len(members)
        self.n_ops, self.c_out = n_ops, c_out
        self.c_in_total = c_in if lift else c_in * n_ops
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(c_out, n_params).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))
        self.index: torch.Tensor
        self.register_buffer("index", torch.from_numpy(index), persistent=False)

    def kernel(self) -> torch.Tensor:
        """The ``(G * c_out, c_in_total, k, k)`` kernel, output channel g * c_out + c."""
        w = torch.cat([self.weight, self.weight.new_zeros(self.c_out, 1)], dim=1)
        big = w[:, self.index]  # (c_out, G, ...)
        big = big.transpose(0, 1)  # (G, c_out, ...)
        return big.reshape(self.n_ops * self.c_out, self.c_in_total, self.k, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(_wrap_pad(x, self.pad), self.kernel(), self.bias.repeat(self.n_ops))


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


def states_to_grid(states: torch.Tensor, table: torch.Tensor, supercell: tuple[int, int]) -> torch.Tensor:
    """One-hot grid ``(n, C, n1, n2)`` float32 of integer placements ``(n, n_sites)``.

    ``table`` is :func:`channel_table` as a tensor on the same device as ``states``.
    """
    n1, n2 = supercell
    n_basis = table.shape[0]
    n_ch = int((table >= 0).sum())
    x = states.long().reshape(states.shape[0], n1 * n2, n_basis)
    ch = table[torch.arange(n_basis, device=states.device)[None, None, :], x]  # (n, cells, basis)
    ch = torch.where(ch < 0, n_ch, ch)
    onehot = nn.functional.one_hot(ch, n_ch + 1)[..., :n_ch].sum(dim=2)  # (n, cells, C)
    return onehot.to(torch.float32).permute(0, 2, 1).reshape(states.shape[0], n_ch, n1, n2)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device")
    return dev


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT = CheckpointFormat(FORMAT_NAME, FORMAT_VERSION, META_FILE, "embedder")
"""The embedder's checkpoint folder (:mod:`defectspace.checkpoint`)."""


def save_checkpoint(
    out_dir: str | Path,
    encoder: Encoder,
    lattice: Lattice,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``embedder.safetensors`` and ``embedder.json`` into ``out_dir``; returns the folder."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    weights = save(state, metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    meta = {
        "lattice": lattice.describe(),
        "channels": channel_table(lattice).tolist(),
        "encoder": asdict(encoder.config),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_hex(weights),
        "torch_version": torch.__version__,
    }
    return write_checkpoint(out_dir, CHECKPOINT, meta, {WEIGHTS_FILE: weights})


def read_metadata(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The checked JSON metadata of a checkpoint folder (or its ``embedder.json``) and its folder."""
    meta, folder = checkpoint.read_metadata(path, CHECKPOINT)
    for key in ("lattice", "encoder", "weights_file", "weights_sha256", "channels"):
        if key not in meta:
            raise ValueError(f"embedder metadata {folder / META_FILE} lacks {key!r}")
    return meta, folder


class Embedder:
    """A trained :class:`Encoder` with its lattice: placements in, embeddings out.

    Args:
        encoder: the network (moved to ``device`` and put in eval mode).
        lattice: the supercell it was trained on.
        device: where it runs (``"cpu"``, ``"cuda"``, ``"auto"``).
        metadata: the checkpoint's JSON metadata, if loaded from one.
    """

    def __init__(self, encoder: Encoder, lattice: Lattice, device: str | torch.device = "cpu",
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.device = resolve_device(device)
        self.encoder = encoder.to(self.device).eval()
        self.lattice = lattice
        self.metadata = dict(metadata or {})
        if n_channels(lattice) != encoder.config.in_channels:
            raise ValueError(f"encoder expects {encoder.config.in_channels} input channels, "
                             f"{lattice!r} has {n_channels(lattice)}")
        self._table = torch.as_tensor(channel_table(lattice), device=self.device)
        self._canonicalizers: dict[tuple[int, int], Any] = {}

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.encoder.config.dim

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             lattice: Lattice | None = None) -> Embedder:
        """An embedder from a checkpoint folder (or its ``embedder.json``); None: the shipped one.

        Raises ValueError for a missing or corrupt file, another format version, a weights file
        whose sha256 differs from the metadata, or (when ``lattice`` is given) another lattice.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load

        meta, folder = read_metadata(DEFAULT_MODEL_DIR if path is None else path)
        trained = Lattice.from_description(meta["lattice"])
        if lattice is not None and not lattice.same_as(trained):
            raise ValueError(f"embedder checkpoint was trained for {trained!r}, not {lattice!r}")
        if np.asarray(meta["channels"]).tolist() != channel_table(trained).tolist():
            raise ValueError("embedder checkpoint's input channels do not match its lattice")
        weights = checkpoint.read_checked(folder, str(meta["weights_file"]), meta["weights_sha256"],
                                          CHECKPOINT)
        config = EncoderConfig.from_dict(meta["encoder"])
        encoder = Encoder(config, trained)
        try:
            encoder.load_state_dict(load(weights))
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise ValueError(f"cannot read embedder weights in {folder}: {exc}") from exc
        return cls(encoder, trained, device, meta)

    def save(self, out_dir: str | Path) -> Path:
        """Writes this embedder as a checkpoint folder (keeps training settings and metrics)."""
        return save_checkpoint(out_dir, self.encoder, self.lattice, self.metadata.get("training"),
                               self.metadata.get("metrics"))

    def _lattice_for(self, lattice: Lattice | None) -> Lattice:
        if lattice is None:
            return self.lattice
        if not lattice.with_supercell(self.lattice.supercell).same_as(self.lattice):
            raise ValueError(f"this embedder was trained for {self.lattice!r}; it cannot embed "
                             f"placements on {lattice!r} (another crystal or defect set)")
        return lattice

    def canonicalizer(self, lattice: Lattice | None = None) -> Any:
        """The (cached) full-group canonicalizer of ``lattice`` (default: the embedder's)."""
        lat = self._lattice_for(lattice)
        c = self._canonicalizers.get(lat.supercell)
        if c is None:
            from defectspace.canonical import Canonicalizer

            c = self._canonicalizers[lat.supercell] = Canonicalizer(lat)
        return c

    def embed_tensor(self, states: torch.Tensor, supercell: tuple[int, int] | None = None) -> torch.Tensor:
        """Embeddings of an integer tensor ``(n, n_sites)`` already on :attr:`device` (with grads
        if enabled by the caller)."""
        out: torch.Tensor = self.encoder(states_to_grid(states, self._table,
                                                        supercell or self.lattice.supercell))
        return out

    def embed(self, states: ArrayLike, exact: bool = False, batch_size: int = 8192,
              lattice: Lattice | None = None) -> NDArray[np.float32]:
        """``(n, dim)`` float32 embeddings of placements ``(n, n_sites)``.

        Args:
            states: dense placements on ``lattice`` (a single row is a batch of one).
            exact: embed the exact canonical form of each placement, so that equivalent
                placements get identical embeddings (costs one canonicalization).
            batch_size: rows per forward pass.
            lattice: another supercell of the same crystal (default: the embedder's own).
        """
        lat = self._lattice_for(lattice)
        x = as_states(states, lat)
        if exact:
            x = self.canonicalizer(lat).canonicalize(x).canonical
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = np.empty((x.shape[0], self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                part = x[start:start + batch_size]
                if not part.flags.writeable:
                    part = part.copy()
                chunk = torch.from_numpy(part).to(self.device)
                out[start:start + chunk.shape[0]] = self.embed_tensor(chunk, lat.supercell).cpu().numpy()
        return out
