"""Held-out evaluation of an embedder: equivalence recognition, invariance error, throughput.

    python benchmarks/embedder_eval.py [--model DIR] [--pairs 20000] [--seed 12345] [--check-unseen]
    python benchmarks/embedder_eval.py --train hBN [--supercell 6x6] [--defects ...] [--steps 300]

``--train LATTICE`` first trains an embedder from the command line (``defectspace train-embedder
--lattice LATTICE --supercell ... --steps ... --threads 1``, pairs from the core alone) into a
temporary folder and evaluates that one (results per material: benchmarks/results/
embedder_eval_materials.md).

Pairs come from a seed stream disjoint from training's (``training.EVAL_STREAM``), at low density
(1-3 defects) and high density (4-24 defects, mixed kinds); each anchor has a random symmetry
image (equivalent) and a verified-inequivalent placement of the same composition (half of them
one defect moved to a nearby site), itself randomly moved. The first half of the pairs picks the
distance threshold, the second half is the test set. ``--check-unseen`` regenerates the training
stream from the checkpoint's settings and also reports the metrics on the test pairs whose anchor
class never occurred in training.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from defectspace.io import read_placements
from defectspace.ml.embedder import Embedder
from defectspace.ml.evaluation import held_out_pairs, invariance_error, pair_distances, pair_metrics
from defectspace.ml.training import PairStream, TrainConfig
from defectspace.placement import random_placements


def training_keys(embedder: Embedder) -> set[bytes]:
    """Keys of every anchor and negative the checkpoint's training run saw (regenerated; its data
    file is found by name with the package's data locator and checked against its sha256)."""
    from defectspace.datasets import describe_file, find_2dmd

    meta = dict(embedder.metadata.get("training", {}))
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.items() if k in names})
    c = embedder.canonicalizer()
    data = None
    if meta.get("data"):
        path = find_2dmd(meta["data"]["file"])
        if describe_file(path)["sha256"] != meta["data"]["sha256"]:
            raise SystemExit(f"{path} is not the file the embedder was trained on (sha256 differs)")
        data = read_placements(path, embedder.lattice).states
    stream = PairStream(c, cfg, data)
    seen: set[bytes] = set()
    for step in range(cfg.steps):
        pb = stream.batch(step)
        for arr in (pb.anchors, pb.negatives):
            seen.update(k.tobytes() for k in c.keys(arr))
    return seen


def report(name: str, d_pos: np.ndarray, d_neg: np.ndarray, hard: np.ndarray, keep: np.ndarray | None = None
           ) -> None:
    if keep is not None and not keep[d_pos.size // 2:].any():
        print(f"  {name:<28} none: every test anchor's class occurred in training")
        return
    r = pair_metrics(d_pos, d_neg, hard, keep)
    print(f"  {name:<28} test pairs {r.n_test_pos:>6}+{r.n_test_neg:<6} acc {r.accuracy:.5f}  "
          f"AUC {r.auc:.6f}  max d_eq {r.max_pos:.2e}  min d_ineq {r.min_neg:.4f} "
          f"(hard {r.hard_min_neg:.4f})  ratio {r.ratio:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--pairs", type=int, default=20000, help="anchors per density (default: 20000)")
    ap.add_argument("--seed", type=int, default=12345, help="evaluation seed (default: 12345)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--check-unseen", action="store_true",
                    help="also report on test pairs whose class never occurred in training")
    ap.add_argument("--train", metavar="LATTICE", default=None,
                    help="train an embedder on this lattice from the command line first, then evaluate it")
    ap.add_argument("--supercell", default="6x6", help="with --train: the supercell (default: 6x6)")
    ap.add_argument("--defects", default=None, help="with --train: the lattice's defects (default: its own)")
    ap.add_argument("--steps", type=int, default=300, help="with --train: training steps (default: 300)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model
    if args.train is not None:
        import tempfile

        from defectspace.cli import main as cli_main

        model = str(Path(tempfile.mkdtemp(prefix="embedder_eval_")) / "model")
        argv = ["train-embedder", "--lattice", args.train, "--supercell", args.supercell, "--steps",
                str(args.steps), "--threads", str(args.threads), "--no-progress", "--out", model]
        if args.defects:
            argv += ["--defects", args.defects]
        t = time.perf_counter()
        if cli_main(argv) != 0:
            raise SystemExit("training failed")
        print(f"trained with: defectspace {' '.join(argv[:-1])} DIR  ({time.perf_counter() - t:.0f} s wall)")
    emb = Embedder.load(model)
    print(f"model: {model or 'shipped default'}  {emb.lattice!r}  dim {emb.dim}  "
          f"config {emb.encoder.config}")
    seen = training_keys(emb) if args.check_unseen else None
    for kind in ("low", "high"):
        pairs = held_out_pairs(emb.lattice, args.pairs, kind, args.seed)
        print(f"{kind} density ({'1-3' if kind == 'low' else '4-24'} defects):")
        for exact in (False, True):
            d_pos, d_neg = pair_distances(emb, pairs, exact=exact)
            label = "exact (canonical form)" if exact else "learned"
            report(label, d_pos, d_neg, pairs.hard)
            if seen is not None and not exact:
                keys = emb.canonicalizer().keys(pairs.anchors)
                keep = np.array([k.tobytes() not in seen for k in keys])
                report(f"learned, unseen ({keep.mean():.0%})", d_pos, d_neg, pairs.hard, keep)
    x = np.concatenate([random_placements(emb.lattice, 5000, (1, 3), np.random.default_rng(args.seed)),
                        random_placements(emb.lattice, 5000, (4, 24), np.random.default_rng(args.seed + 1))])
    for exact in (False, True):
        inv = invariance_error(emb, x, seed=args.seed, exact=exact)
        print(f"invariance error ({'exact' if exact else 'learned'}): mean {inv['mean']:.2e}  "
              f"max {inv['max']:.2e}  (median distance between unrelated placements "
              f"{inv['median_unrelated']:.3f})")
    big = np.concatenate([x] * 6)
    for exact in (False, True):
        emb.embed(big[:2000], exact=exact)
        t = time.perf_counter()
        emb.embed(big, exact=exact)
        dt = time.perf_counter() - t
        print(f"throughput ({'exact' if exact else 'learned'}, {args.threads} torch thread(s)): "
              f"{big.shape[0] / dt:,.0f} placements/s")


if __name__ == "__main__":
    main()
