"""The trained encoder as a tool: :class:`Embedder` maps placements to embeddings, and saves and
loads itself as a checkpoint folder: ``embedder.safetensors`` (weights) and ``embedder.json``
(format version, lattice description, input channels, encoder shape, training settings and data,
metrics, sha256 of the weights; :mod:`defectspace.checkpoint`).

``Embedder.embed(states, exact=True)`` embeds the exact canonical form of every placement
(:meth:`defectspace.canonical.Canonicalizer.canonicalize`) instead, which is invariant by
construction for either architecture (bit-identical embeddings of equivalent placements).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from defectspace import checkpoint
from defectspace.canonical import Canonicalizer
from defectspace.checkpoint import CheckpointFormat, sha256_hex, write_checkpoint
from defectspace.lattice import Lattice
from defectspace.ml.config import EncoderConfig, channel_table, n_channels
from defectspace.ml.encoder import Encoder, FoldedEncoder, resolve_device, states_to_grid
from defectspace.placement import as_states

FORMAT_NAME = "defectspace-embedder"
FORMAT_VERSION = 1
"""Version of the checkpoint layout; :meth:`Embedder.load` refuses any other."""
WEIGHTS_FILE = "embedder.safetensors"
META_FILE = "embedder.json"
FOLDED_BATCH = 512
"""Rows per pass of the folded encoder on CPU: its features (512 x 64 cells x 24 channels) stay in cache."""
FOLDED_MIN_BATCH = 8
"""Smaller batches are padded to this many rows, so that a row's embedding does not depend on the
batch it came in (oneDNN chooses other convolution kernels, rounding differently, below it)."""
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models" / "mos2_8x8"
"""The shipped MoS2 8x8 embedder (``defectspace train-embedder --out DIR --seed 0``)."""


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
        self._canonicalizers: dict[tuple[int, int], Canonicalizer] = {}
        self._folded: dict[tuple[int, int], tuple[tuple[int, ...], FoldedEncoder | None]] = {}

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

    def canonicalizer(self, lattice: Lattice | None = None) -> Canonicalizer:
        """The (cached) full-group canonicalizer of ``lattice`` (default: the embedder's)."""
        lat = self._lattice_for(lattice)
        c = self._canonicalizers.get(lat.supercell)
        if c is None:
            c = self._canonicalizers[lat.supercell] = Canonicalizer(lat)
        return c

    def embed_tensor(self, states: torch.Tensor, supercell: tuple[int, int] | None = None) -> torch.Tensor:
        """Embeddings of an integer tensor ``(n, n_sites)`` already on :attr:`device` (with grads
        if enabled by the caller)."""
        out: torch.Tensor = self.encoder(states_to_grid(states, self._table,
                                                        supercell or self.lattice.supercell))
        return out

    def folded(self, supercell: tuple[int, int]) -> FoldedEncoder | None:
        """The encoder folded for inference on ``supercell`` (:class:`FoldedEncoder`), rebuilt
        whenever a weight has changed since; None for the ``"cnn"`` architecture or a supercell
        smaller than the kernels' reach."""
        version = tuple(p._version for p in self.encoder.parameters())
        cached = self._folded.get(supercell)
        if cached is None or cached[0] != version:
            folded = None
            if self.encoder.config.architecture == "equivariant":
                try:
                    folded = self.encoder.folded(self.lattice, supercell)
                except ValueError:
                    folded = None
            cached = self._folded[supercell] = (version, folded)
        return cached[1]

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
        folded = self.folded(lat.supercell)
        if folded is None or self.device.type != "cpu":
            with torch.inference_mode():
                for start in range(0, x.shape[0], batch_size):
                    part = np.ascontiguousarray(x[start:start + batch_size])
                    z = self.embed_tensor(torch.from_numpy(part).to(self.device), lat.supercell)
                    out[start:start + part.shape[0]] = z.cpu().numpy()
            return out
        # on CPU: batches that stay in cache, and torch's threads as threads of rows (each one runs
        # its batches on one thread) rather than inside every small operation: under load, threads
        # that wait for each other in every operation were 4x slower; and a row's embedding is then
        # the same bits whatever the thread count
        batch = min(batch_size, FOLDED_BATCH)
        starts = range(0, x.shape[0], batch)
        n_threads = min(torch.get_num_threads(), len(starts))

        def run(block: range) -> None:
            old = torch.get_num_threads()
            torch.set_num_threads(1)  # this thread's own operations (and the same rounding for any count)
            try:
                with torch.inference_mode():
                    for start in block:
                        part = np.ascontiguousarray(x[start:start + batch])
                        rows = len(part)
                        if rows < FOLDED_MIN_BATCH:  # oneDNN picks another kernel for tiny batches
                            part = np.concatenate([part, np.zeros((FOLDED_MIN_BATCH - rows, part.shape[1]),
                                                                  part.dtype)])
                        out[start:start + rows] = folded(torch.from_numpy(part))[:rows].numpy()
            finally:
                torch.set_num_threads(old)

        if n_threads <= 1:
            run(starts)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(run, [starts[i::n_threads] for i in range(n_threads)]))
        return out
