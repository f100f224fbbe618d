"""Contrastive training and held-out evaluation of the Siamese embedder.

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
also orders placements by a property.
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
from defectspace.lattice import Lattice
from defectspace.ml.embedder import Embedder, Encoder, EncoderConfig, n_channels, resolve_device
from defectspace.placement import as_states, parse_2dmd, random_placements

EVAL_STREAM = 1_000_003
"""Offset of the evaluation seed stream: evaluation draws never coincide with a training step's."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train` (stored in the checkpoint's JSON)."""

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
    """Shares of low-density, high-density and 2DMD anchors (2DMD's share goes to the others
    when no data file is given)."""
    data: str = ""
    """2DMD CSV (columns id, defects) to draw anchors from; empty for none."""
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


def load_2dmd_states(path: str | Path, lattice: Lattice) -> NDArray[np.uint8]:
    """Dense placements of a 2DMD CSV's ``defects`` column."""
    import pandas as pd

    df = pd.read_csv(path, dtype={"defects": str}, keep_default_na=False)
    if "defects" not in df.columns:
        raise ValueError(f"{path} has no 'defects' column")
    return parse_2dmd(df["defects"].tolist(), lattice)


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
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _finetune(embedder, x, t, steps, batch_size, lr, weight, seed, margin)
    finally:
        torch.set_num_threads(old_threads)


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
          progress: bool = True, evaluate: bool = True) -> TrainResult:
    """Trains an :class:`Encoder` on pairs streamed from the core; seeded and reproducible.

    Pair generation for step t + 1 runs in a background thread while step t trains (the core
    releases the GIL). With ``evaluate``, held-out metrics (:func:`evaluate_pairs`) at low and
    high density are measured afterwards and returned for the checkpoint.
    """
    from tqdm import tqdm

    if config.loss not in ("infonce", "margin"):
        raise ValueError(f"loss must be 'infonce' or 'margin', got {config.loss!r}")
    if config.steps < 1 or config.batch_size < 2:
        raise ValueError("steps must be >= 1 and batch_size >= 2")
    dev = resolve_device(device)
    old_threads = torch.get_num_threads()
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(max(1, config.threads))
    # reproducible on CUDA too: deterministic cuDNN convolution algorithms
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        torch.manual_seed(config.seed)
        if dev.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
        c = Canonicalizer(lattice, n_threads=max(1, config.threads))
        data = load_2dmd_states(config.data, lattice) if config.data else None
        stream = PairStream(c, config, data)
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
        if evaluate:
            for kind in ("low", "high"):
                metrics[kind] = evaluate_pairs(embedder, config.eval_pairs, kind, seed=config.seed,
                                               config=config).summary()
        embedder.metadata = {"training": _jsonable(asdict(config)), "metrics": metrics}
        return TrainResult(embedder, metrics, losses)
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# --------------------------------------------------------------------------- evaluation
@dataclass
class PairMetrics:
    """Equivalence recognition on held-out pairs, threshold chosen on a validation half."""

    n_test_pos: int
    n_test_neg: int
    threshold: float
    accuracy: float
    """Test accuracy of ``distance < threshold`` means equivalent."""
    auc: float
    """Test ROC AUC of the negated distance as the score of equivalence."""
    max_pos: float
    """Largest test distance between equivalent placements."""
    min_neg: float
    """Smallest test distance between inequivalent placements."""
    hard_min_neg: float
    """Smallest test distance to a hard negative (one defect moved)."""

    @property
    def ratio(self) -> float:
        """``max_pos / min_neg``: below 1 iff one threshold separates every test pair."""
        return self.max_pos / self.min_neg if self.min_neg > 0 else float("inf")

    def summary(self) -> dict[str, float]:
        """Plain-number dict (JSON-able)."""
        d = asdict(self)
        d["ratio"] = self.ratio
        return {k: float(v) for k, v in d.items()}


def roc_auc(pos_scores: NDArray[np.float64], neg_scores: NDArray[np.float64]) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    allv = np.concatenate([pos_scores, neg_scores])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    n_p, n_n = pos_scores.size, neg_scores.size
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def best_threshold(d_pos: NDArray[np.float64], d_neg: NDArray[np.float64]) -> float:
    """Distance threshold maximizing accuracy on (d_pos, d_neg); midpoint between neighbours."""
    allv = np.unique(np.concatenate([d_pos, d_neg]))
    cands = np.concatenate([[allv[0] - 1e-9], (allv[1:] + allv[:-1]) / 2, [allv[-1] + 1e-9]])
    sp, sn = np.sort(d_pos), np.sort(d_neg)
    correct = np.searchsorted(sp, cands, side="left") + (sn.size - np.searchsorted(sn, cands, side="left"))
    return float(cands[int(np.argmax(correct))])


@dataclass
class HeldOutPairs:
    """Held-out placements: anchors, a symmetry image of each, and an inequivalent one."""

    anchors: NDArray[np.uint8]
    positives: NDArray[np.uint8]
    negatives: NDArray[np.uint8]
    hard: NDArray[np.bool_]


def held_out_pairs(lattice: Lattice, n: int, kind: str, seed: int = 0,
                   config: TrainConfig | None = None) -> HeldOutPairs:
    """Fresh pairs from a seed stream disjoint from training's (``EVAL_STREAM`` offset)."""
    cfg = config or TrainConfig()
    c = Canonicalizer(lattice, n_threads=max(1, cfg.threads))
    stream = PairStream(c, TrainConfig(**{**asdict(cfg), "seed": seed + EVAL_STREAM}))
    pb = stream.batch(0, n, kind)
    neg = c.negatives(pb.anchors, stream._seed(0, 5), hard_fraction=cfg.hard_fraction)
    negatives = c.random_images(neg.negatives, stream._seed(0, 6)).images
    ok = neg.kind >= 0
    return HeldOutPairs(pb.anchors[ok], pb.positives[ok], negatives[ok], neg.kind[ok] == 1)


def pair_distances(embedder: Embedder, pairs: HeldOutPairs, exact: bool = False
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Embedding distances of (anchor, positive) and (anchor, negative) pairs."""
    ea = embedder.embed(pairs.anchors, exact=exact).astype(np.float64)
    ep = embedder.embed(pairs.positives, exact=exact).astype(np.float64)
    en = embedder.embed(pairs.negatives, exact=exact).astype(np.float64)
    return np.linalg.norm(ea - ep, axis=1), np.linalg.norm(ea - en, axis=1)


def evaluate_pairs(embedder: Embedder, n: int, kind: str, seed: int = 0, exact: bool = False,
                   config: TrainConfig | None = None) -> PairMetrics:
    """Accuracy, ROC AUC and the distance ratio on held-out pairs at ``"low"``/``"high"`` density.

    The first half of the pairs chooses the threshold; the second half is the test set.
    """
    pairs = held_out_pairs(embedder.lattice, n, kind, seed, config)
    d_pos, d_neg = pair_distances(embedder, pairs, exact)
    return pair_metrics(d_pos, d_neg, pairs.hard)


def pair_metrics(d_pos: NDArray[np.float64], d_neg: NDArray[np.float64], hard: NDArray[np.bool_],
                 test_keep: NDArray[np.bool_] | None = None) -> PairMetrics:
    """Metrics of pair distances: the first half chooses the threshold, the second half (or the
    rows of it where ``test_keep`` holds, which must leave at least one) is the test set."""
    m = d_pos.size // 2
    thr = best_threshold(d_pos[:m], d_neg[:m])
    tp, tn, th = d_pos[m:], d_neg[m:], hard[m:]
    if test_keep is not None:
        tp, tn, th = tp[test_keep[m:]], tn[test_keep[m:]], th[test_keep[m:]]
    acc = float(((tp < thr).sum() + (tn >= thr).sum()) / (tp.size + tn.size))
    return PairMetrics(int(tp.size), int(tn.size), thr, acc, roc_auc(-tp, -tn), float(tp.max()),
                       float(tn.min()), float(tn[th].min()) if th.any() else float("nan"))


def invariance_error(embedder: Embedder, states: NDArray[np.uint8], seed: int = 0,
                     exact: bool = False) -> dict[str, float]:
    """Distances between embeddings of placements and random symmetry images of them.

    Returns mean and max of ``|e(x) - e(g x)|`` and the median distance between embeddings of
    unrelated placements of the batch (the scale to compare with).
    """
    c = embedder.canonicalizer()
    images = c.random_images(states, seed).images
    e1 = embedder.embed(states, exact=exact).astype(np.float64)
    e2 = embedder.embed(images, exact=exact).astype(np.float64)
    d = np.linalg.norm(e1 - e2, axis=1)
    scale = float(np.median(np.linalg.norm(e1 - np.roll(e1, 1, axis=0), axis=1)))
    return {"mean": float(d.mean()), "max": float(d.max()), "median_unrelated": scale}
