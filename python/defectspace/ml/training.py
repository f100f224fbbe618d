"""Contrastive training of the Siamese embedder (its evaluation: :mod:`defectspace.ml.evaluation`).

Pairs are streamed from the C++ core, never stored: every step draws anchors (random placements
with 1-3 defects, random placements with 4-24 defects of mixed kinds, and 2DMD placements), moves
each anchor by a random symmetry operation, takes a second random image as its positive
(:meth:`Canonicalizer.random_images`) and a verified-inequivalent placement of the same
composition as its negative (:meth:`Canonicalizer.negatives`: half of them hard, one defect moved
to a nearby site), itself moved by a random operation.

Two losses are implemented:

* ``"margin"`` (the default, kept): the classic contrastive loss ``d_pos^2 + relu(margin -
  d_neg)^2`` on the explicit negative and the hardest in-batch inequivalent placement. At equal
  steps (1500, 256 anchors, the plain CNN) it reached 99.5% / 95.6% held-out accuracy at low /
  high density against InfoNCE's 95.6% / 90.3%.
* ``"infonce"``: each anchor must pick its positive among the positives and
  the negatives of the whole batch, logits = cosine similarity / temperature; candidates exactly
  equivalent to the anchor (by canonical key) are masked out.

Everything is seeded: the stream of step ``t`` is a function of ``(seed, t)`` alone.

:func:`finetune_with_property` goes beyond the paper: it continues training a trained embedder
with a regression head on labelled placements beside the contrastive loss, so that the embedding
also orders placements by a property. :func:`train_with_properties` does so for several properties
at once (plus the composition): the recipe of the shipped ``mos2_8x8_property`` embedder
(scripts/train_property_embedder.py; measured in benchmarks/results/paper_table.md).
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from defectspace.canonical import Canonicalizer
from defectspace.datasets import describe_file
from defectspace.lattice import Lattice
from defectspace.ml.config import TrainConfig
from defectspace.ml.embedder import Embedder
from defectspace.ml.encoder import Encoder, resolve_device, torch_threads
from defectspace.placement import as_states, random_placements

__all__ = ["PairBatch", "PairStream", "PropertyLabels", "TrainConfig", "TrainResult", "TrainingData",
           "finetune_with_property", "infonce_loss", "margin_loss", "train", "train_with_properties",
           "training_environment"]


@dataclass
class PairBatch:
    """One step's training pairs."""

    anchors: NDArray[np.uint8]
    positives: NDArray[np.uint8]
    negatives: NDArray[np.uint8]
    neg_valid: NDArray[np.bool_]
    """False where the anchor's composition has a single class (no negative exists)."""
    anchor_class: NDArray[np.int64]
    """Class id (exact key) of every anchor, comparable with :attr:`negative_class` in this batch."""
    negative_class: NDArray[np.int64]


@dataclass(frozen=True)
class TrainingData:
    """Placements mixed into training as anchors (2DMD's), with a portable record of them."""

    states: NDArray[np.uint8]
    """(n, n_sites) uint8 placements."""
    description: dict[str, Any]
    """What the checkpoint records: file name, sha256 and rows (no folder of this machine)."""

    @classmethod
    def from_csv(cls, path: str | Path, lattice: Lattice) -> TrainingData:
        """The placements of a CSV with columns id, defects (2DMD's ``mos2_8x8.csv``)."""
        from defectspace.io import read_placements

        table = read_placements(path, lattice)
        return cls(table.states, {**describe_file(path), "rows": len(table.ids)})


def training_environment(device: torch.device, threads: int) -> dict[str, Any]:
    """What a training run's numbers depend on besides its settings and data: the versions, the
    CPU and the vector instructions torch dispatches on (AVX2, AVX-512, ...), threads, device."""
    import platform

    from defectspace import __version__

    env: dict[str, Any] = {
        "defectspace": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": _cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads, "device": str(device),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _class_ids(c: Canonicalizer, *batches: NDArray[np.uint8]) -> list[NDArray[np.int64]]:
    """Per batch, ids equal across batches iff the placements are equivalent."""
    keys = [c.keys(b) for b in batches]
    allk = np.concatenate(keys)
    _, inv = np.unique(allk.view(np.dtype((np.void, allk.shape[1]))).ravel(), return_inverse=True)
    out, start = [], 0
    for k in keys:
        out.append(inv[start:start + k.shape[0]].astype(np.int64))
        start += k.shape[0]
    return out


class PairStream:
    """Deterministic stream of :class:`PairBatch` from the core (``batch(t)`` depends on t only).

    Args:
        canonicalizer: the full-group canonicalizer of the training lattice.
        config: shares, defect ranges, hard fraction, seed.
        data: optional 2DMD placements to draw anchors from.
    """

    def __init__(self, canonicalizer: Canonicalizer, config: TrainConfig,
                 data: NDArray[np.uint8] | None = None) -> None:
        self.c = canonicalizer
        self.lattice = canonicalizer.lattice
        self.config = config
        self.data = data if data is not None and len(data) else None

    def _seed(self, step: int, salt: int) -> int:
        ss = np.random.SeedSequence([self.config.seed, step, salt])
        return int(ss.generate_state(1, dtype=np.uint64)[0])

    def anchors(self, step: int, n: int, kind: str | None = None) -> NDArray[np.uint8]:
        """``n`` anchors of step ``step``: the configured mix, or only ``"low"``/``"high"``."""
        rng = np.random.default_rng(self._seed(step, 0))
        cfg = self.config
        if kind == "low":
            return random_placements(self.lattice, n, cfg.low_defects, rng)
        if kind == "high":
            return random_placements(self.lattice, n, cfg.high_defects, rng)
        shares = np.array(cfg.mix, dtype=np.float64)
        if self.data is None:
            shares[2] = 0.0
        shares /= shares.sum()
        n_low = round(float(n * shares[0]))
        n_data = round(float(n * shares[2]))
        n_high = n - n_low - n_data
        parts = [random_placements(self.lattice, n_low, cfg.low_defects, rng),
                 random_placements(self.lattice, n_high, cfg.high_defects, rng)]
        if n_data and self.data is not None:
            parts.append(self.data[rng.integers(0, len(self.data), size=n_data)])
        out = np.concatenate(parts)
        return out[rng.permutation(n)]

    def batch(self, step: int, n: int | None = None, kind: str | None = None) -> PairBatch:
        """The pairs of step ``step`` (``n`` anchors, default the batch size)."""
        n = self.config.batch_size if n is None else n
        base = self.anchors(step, n, kind)
        anchors = self.c.random_images(base, self._seed(step, 1)).images
        positives = self.c.random_images(base, self._seed(step, 2)).images
        neg = self.c.negatives(base, self._seed(step, 3), hard_fraction=self.config.hard_fraction)
        negatives = self.c.random_images(neg.negatives, self._seed(step, 4)).images
        a_cls, n_cls = _class_ids(self.c, anchors, negatives)
        return PairBatch(anchors, positives, negatives, neg.kind >= 0, a_cls, n_cls)


# --------------------------------------------------------------------------- losses
def infonce_loss(za: torch.Tensor, zp: torch.Tensor, zn: torch.Tensor, a_cls: torch.Tensor,
                 n_cls: torch.Tensor, neg_valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: anchor i picks positive i among all positives and negatives of the batch.

    Candidates equivalent to anchor i (same class id), other than positive i, are masked, and so
    are invalid negatives. Embeddings must have unit length.
    """
    b = za.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=za.device)
    same_pos = (a_cls[:, None] == a_cls[None, :]) & ~eye  # positive j is anchor i's class
    same_neg = (a_cls[:, None] == n_cls[None, :]) | ~neg_valid[None, :]
    loss = za.new_zeros(())
    for q, k in ((za, zp), (zp, za)):
        logits_p = (q @ k.T) / temperature
        logits_n = (q @ zn.T) / temperature
        logits = torch.cat([logits_p.masked_fill(same_pos, -1e4), logits_n.masked_fill(same_neg, -1e4)], 1)
        loss = loss + nn.functional.cross_entropy(logits, torch.arange(b, device=za.device))
    return loss / 2


def margin_loss(za: torch.Tensor, zp: torch.Tensor, zn: torch.Tensor, a_cls: torch.Tensor,
                n_cls: torch.Tensor, neg_valid: torch.Tensor, margin: float) -> torch.Tensor:
    """``d(a, p)^2 + relu(margin - d(a, n))^2`` over the explicit negative and the hardest
    in-batch inequivalent placement."""
    d_pos = (za - zp).pow(2).sum(1)
    d_neg = (za - zn).pow(2).sum(1).clamp_min(1e-12).sqrt()
    explicit = nn.functional.relu(margin - d_neg).pow(2) * neg_valid.float()
    dist = torch.cdist(za, torch.cat([zp, zn]))
    same = torch.cat([a_cls[:, None] == a_cls[None, :],
                      (a_cls[:, None] == n_cls[None, :]) | ~neg_valid[None, :]], 1)
    hardest = dist.masked_fill(same, float("inf")).amin(1)
    in_batch = nn.functional.relu(margin - hardest).pow(2)
    return (d_pos + explicit + in_batch).mean()


# --------------------------------------------------------------------------- property fine-tuning
def finetune_with_property(embedder: Embedder, states: ArrayLike, y: ArrayLike,
                           steps: int = 400, batch_size: int = 128, lr: float = 1e-3,
                           weight: float = 1.0, seed: int = 0, margin: float = 0.5,
                           threads: int = 1) -> Embedder:
    """A copy of ``embedder`` trained further with a linear head predicting ``y`` (standardized)
    from the embedding, beside the margin contrastive loss on pairs from the core.

    Only ``states``/``y`` are seen (pass training rows only when the result is evaluated on
    others). The copy stays exactly invariant when the encoder is ``"equivariant"``. ``threads``
    sets torch's CPU threads for the run (restored afterwards; 1 is fastest for these small
    batches on a shared machine).
    """
    x = as_states(states, embedder.lattice)
    t = np.asarray(y, dtype=np.float64)
    if t.shape != (x.shape[0],) or not np.isfinite(t).all() or x.shape[0] < 2:
        raise ValueError(f"y must hold one finite label per placement ({x.shape[0]}, at least 2), "
                         f"got shape {t.shape}")
    with torch_threads(max(1, threads)):
        return _finetune(embedder, x, t, steps, batch_size, lr, weight, seed, margin)


def _finetune(embedder: Embedder, x: NDArray[np.uint8], t: NDArray[np.float64], steps: int,
              batch_size: int, lr: float, weight: float, seed: int, margin: float) -> Embedder:
    import copy

    torch.manual_seed(seed)
    enc = copy.deepcopy(embedder.encoder).train()
    tuned = {"steps": steps, "batch_size": batch_size, "lr": lr, "weight": weight, "seed": seed,
             "margin": margin, "labelled_rows": int(x.shape[0])}
    # the contrastive metrics of the original do not carry over; save() keeps "training"
    meta = {"training": {**embedder.metadata.get("training", {}), "finetune_with_property": tuned},
            "metrics": {}}
    out = Embedder(enc, embedder.lattice, embedder.device, meta)
    head = nn.Linear(enc.config.dim, 1).to(out.device)
    mu, sd = float(t.mean()), float(t.std()) or 1.0
    target = torch.as_tensor((t - mu) / sd, dtype=torch.float32, device=out.device)
    cfg = TrainConfig(seed=seed + 7919, batch_size=batch_size)
    stream = PairStream(out.canonicalizer(), cfg)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        pb = stream.batch(step)
        b = pb.anchors.shape[0]
        idx = rng.integers(0, x.shape[0], size=min(batch_size, x.shape[0]))
        z = out.embed_tensor(torch.from_numpy(np.concatenate([pb.anchors, pb.positives, pb.negatives,
                                                              x[idx]])).to(out.device))
        contrastive = margin_loss(z[:b], z[b:2 * b], z[2 * b:3 * b],
                                  torch.from_numpy(pb.anchor_class).to(out.device),
                                  torch.from_numpy(pb.negative_class).to(out.device),
                                  torch.from_numpy(pb.neg_valid).to(out.device), margin)
        regression = nn.functional.mse_loss(head(z[3 * b:]).squeeze(1), target[idx])
        loss = contrastive + weight * regression
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        opt.step()
    enc.eval()
    return out


@dataclass(frozen=True)
class PropertyLabels:
    """One property head's data: placements, labels (eV) and the head's loss weight."""

    states: NDArray[np.uint8]
    y: NDArray[np.float64]
    weight: float = 1.0


def train_with_properties(embedder: Embedder, labels: dict[str, PropertyLabels], steps: int = 2000,
                          batch_size: int = 128, lr: float = 1e-3, seed: int = 0, margin: float = 0.5,
                          composition_weight: float = 1.0, threads: int = 1,
                          progress: bool = False) -> Embedder:
    """A copy of ``embedder`` trained on the contrastive loss and several property heads together.

    Every step adds, to the margin contrastive loss on pairs from the core, for each property in
    ``labels`` the mean squared error of a linear head predicting the (standardised) label from
    the 12 numbers on ``batch_size`` of its placements, and ``composition_weight`` times that of a
    linear head predicting the defect count of each kind per site (label-free: placements of
    every property). The heads are linear so that the properties become *linearly* readable from
    the embedding, which kernel ridge on 12 or 91 numbers then exploits. The encoder stays exactly
    invariant when it is ``"equivariant"``: equivalence recognition keeps resting on the
    contrastive loss and the architecture. The learning rate follows a cosine decay.

    Only the given placements and labels are seen: pass training rows only when the result is
    evaluated on others. The metadata records each head's rows and weight.
    """
    import copy

    if not labels:
        raise ValueError("train_with_properties needs at least one property")
    lat = embedder.lattice
    data = {}
    for name, lab in labels.items():
        x = as_states(lab.states, lat)
        t = np.asarray(lab.y, dtype=np.float64)
        if t.shape != (x.shape[0],) or not np.isfinite(t).all() or x.shape[0] < 2:
            raise ValueError(f"{name}: y must hold one finite label per placement ({x.shape[0]}, at "
                             f"least 2), got shape {t.shape}")
        mu, sd = float(t.mean()), float(t.std()) or 1.0
        data[name] = (x, (t - mu) / sd, float(lab.weight), mu, sd)
    with torch_threads(max(1, threads)):
        torch.manual_seed(seed)
        enc = copy.deepcopy(embedder.encoder).train()
        dev = embedder.device
        out = Embedder(enc, lat, dev, {})
        dim = enc.config.dim
        heads = nn.ModuleDict({name: nn.Linear(dim, 1) for name in data}).to(dev)
        comp_head = nn.Linear(dim, lat.n_kinds).to(dev)
        cfg = TrainConfig(seed=seed + 104729, batch_size=batch_size)
        stream = PairStream(out.canonicalizer(), cfg)
        params = [*enc.parameters(), *heads.parameters(), *comp_head.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: _lr_factor(st, steps))
        rng = np.random.default_rng(seed)
        from tqdm import tqdm

        for step in tqdm(range(steps), disable=not progress, desc="property embedder", unit="step"):
            pb = stream.batch(step)
            b = pb.anchors.shape[0]
            parts = [pb.anchors, pb.positives, pb.negatives]
            picks = {}
            for name, (x, _, _, _, _) in data.items():
                idx = rng.integers(0, x.shape[0], size=min(batch_size, x.shape[0]))
                picks[name] = idx
                parts.append(x[idx])
            batch = np.concatenate(parts)
            z = out.embed_tensor(torch.from_numpy(batch).to(dev))
            loss = margin_loss(z[:b], z[b:2 * b], z[2 * b:3 * b],
                               torch.from_numpy(pb.anchor_class).to(dev),
                               torch.from_numpy(pb.negative_class).to(dev),
                               torch.from_numpy(pb.neg_valid).to(dev), margin)
            lo = 3 * b
            for name, (_, t, w, _, _) in data.items():
                n = len(picks[name])
                target = torch.as_tensor(t[picks[name]], dtype=torch.float32, device=dev)
                loss = loss + w * nn.functional.mse_loss(heads[name](z[lo:lo + n]).squeeze(1), target)
                lo += n
            if composition_weight > 0:
                labelled = torch.from_numpy(batch[3 * b:]).to(dev)
                counts = torch.stack([(labelled == k.code).sum(1) for k in lat.kinds], 1).float()
                frac = counts / lat.n_sites * 10.0
                loss = loss + composition_weight * nn.functional.mse_loss(comp_head(z[3 * b:]), frac)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
            opt.step()
            sched.step()
        enc.eval()
    heads_meta = {name: {"rows": int(x.shape[0]), "weight": w, "label_mean": mu, "label_std": sd}
                  for name, (x, _, w, mu, sd) in data.items()}
    out.metadata = {"training": {**embedder.metadata.get("training", {}), "train_with_properties": {
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "margin": margin,
        "composition_weight": composition_weight, "heads": heads_meta}}, "metrics": {}}
    return out


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """A trained embedder, its metrics and the loss curve."""

    embedder: Embedder
    metrics: dict[str, Any]
    losses: list[float]


def _lr_factor(step: int, steps: int) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


def train(config: TrainConfig, lattice: Lattice, device: str | torch.device | None = "auto",
          progress: bool = True, data: TrainingData | None = None) -> TrainResult:
    """Trains an :class:`~defectspace.ml.encoder.Encoder` on pairs streamed from the core, with
    ``data``'s placements among the anchors (None: pairs alone); seeded and reproducible on one
    machine (see the README for what differs between machines).

    Pair generation for step t + 1 runs in a background thread while step t trains (the core
    releases the GIL). The embedder's metadata records the settings, the data's description and
    :func:`training_environment`; held-out metrics for the checkpoint come from
    :func:`defectspace.ml.evaluation.held_out_metrics`.
    """
    if config.loss not in ("infonce", "margin"):
        raise ValueError(f"loss must be 'infonce' or 'margin', got {config.loss!r}")
    if config.steps < 1 or config.batch_size < 2:
        raise ValueError("steps must be >= 1 and batch_size >= 2")
    dev = resolve_device(device)
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    # reproducible on CUDA too: deterministic cuDNN convolution algorithms
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with torch_threads(max(1, config.threads)):
            return _train(config, lattice, dev, progress, data)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


def _train(config: TrainConfig, lattice: Lattice, dev: torch.device, progress: bool,
           data: TrainingData | None) -> TrainResult:
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    if dev.type == "cuda":
        torch.cuda.manual_seed_all(config.seed)
    c = Canonicalizer(lattice, n_threads=max(1, config.threads))
    stream = PairStream(c, config, None if data is None else data.states)
    encoder = Encoder(config.encoder_config(lattice), lattice).to(dev)
    embedder = Embedder(encoder, lattice, dev)
    encoder.train()
    opt = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config.steps))
    losses: list[float] = []
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(stream.batch, 0)
        bar = tqdm(range(config.steps), disable=not progress, desc="train-embedder", unit="step")
        for step in bar:
            pb = pending.result()
            if step + 1 < config.steps:
                pending = pool.submit(stream.batch, step + 1)
            b = pb.anchors.shape[0]
            x = torch.from_numpy(np.concatenate([pb.anchors, pb.positives, pb.negatives])).to(dev)
            z = embedder.embed_tensor(x)
            za, zp, zn = z[:b], z[b:2 * b], z[2 * b:]
            a_cls = torch.from_numpy(pb.anchor_class).to(dev)
            n_cls = torch.from_numpy(pb.negative_class).to(dev)
            valid = torch.from_numpy(pb.neg_valid).to(dev)
            if config.loss == "infonce":
                loss = infonce_loss(za, zp, zn, a_cls, n_cls, valid, config.temperature)
            else:
                loss = margin_loss(za, zp, zn, a_cls, n_cls, valid, config.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    train_seconds = time.perf_counter() - t0
    encoder.eval()
    metrics: dict[str, Any] = {"train_seconds": train_seconds, "final_loss": float(np.mean(losses[-50:]))}
    training = {**_jsonable(asdict(config)), "data": None if data is None else data.description,
                "environment": training_environment(dev, max(1, config.threads))}
    embedder.metadata = {"training": training, "metrics": metrics}
    return TrainResult(embedder, metrics, losses)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


