"""``defectspace embed | train-embedder | plot-embeddings`` (the ``ml`` extra: torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import add_lattice_option, lattice_from, lattice_of
from defectspace.lattice import Lattice
from defectspace.ml.config import TrainConfig


def register(subparsers: Any) -> None:
    """Adds train-embedder, embed and plot-embeddings to the command line."""
    d = TrainConfig()
    p = add_command(subparsers, "train-embedder", help="train the Siamese embedder from scratch",
                    example="defectspace train-embedder --lattice hBN --supercell 6x6 "
                            "--defects 'B->V,B->C,N->V,N->C' --out model")
    add_output(p, "--out", kind="folder", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default: {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"anchors per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default: {d.lr})")
    p.add_argument("--loss", choices=["infonce", "margin"], default=d.loss,
                   help=f"contrastive loss (default: {d.loss})")
    p.add_argument("--architecture", choices=["equivariant", "cnn"], default=d.architecture,
                   help="equivariant: point-group convolutions, invariant by construction; cnn: "
                        f"the paper's free kernels (default: {d.architecture})")
    p.add_argument("--dim", type=int, default=d.dim, help=f"embedding size (default: {d.dim})")
    p.add_argument("--channels", type=int, default=d.channels,
                   help=f"convolution channels (default: {d.channels})")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"CPU threads for torch and the core (default: {d.threads})")
    data = p.add_mutually_exclusive_group()
    add_input(data, "--data", kind="placements", default=None,
              help="CSV (id,defects) of placements mixed into the anchors (default: 2DMD's "
                           "mos2_8x8.csv in $DEFECTSPACE_2DMD, or ../shared/data/2dmd beside a "
                           "checkout; MoS2 8x8 only)")
    data.add_argument("--pairs-only", action="store_true",
                      help="train on pairs from the core alone, without data placements")
    p.add_argument("--eval-pairs", type=int, default=d.eval_pairs,
                   help=f"held-out pairs per density evaluated after training (default: {d.eval_pairs})")
    add_lattice_option(p, help="preset or unit-cell CIF (default: MoS2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_train_embedder)

    p = add_command(subparsers, "embed", help="Siamese embeddings of placements (emb_0..emb_<dim-1>)",
                    example="defectspace embed placements.csv -o embeddings.csv")
    add_input(p, "input", kind="placements",
              help="CSV with columns id,defects (2DMD form), or CIF structures; other columns are kept")
    add_output(p, "-o", "--output", required=True, help="output CSV")
    add_input(p, "--model", kind="embedder", default=None,
              help="embedder checkpoint folder or a shipped one's name, e.g. wse2_8x8 (default: "
                   "the shipped mos2_8x8)")
    add_lattice_option(p, default=None, help="preset or CIF (default: the model's)")
    p.add_argument("--exact", action="store_true",
                   help="embed canonical forms: exactly equal embeddings for equivalent placements")
    p.add_argument("--keep-defects", action="store_true", help="keep all input columns (default: "
                                                               "id and the other non-defects columns)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad rows: stop (default) or skip them, listed on stderr")
    p.set_defaults(handler=cmd_embed)

    p = add_command(subparsers, "plot-embeddings",
                    help="UMAP picture of embeddings, one colour per equivalence class",
                    example="defectspace plot-embeddings --model model -o umap.png")
    add_input(p, "--model", kind="embedder", default=None,
              help="embedder checkpoint folder (default: the shipped one)")
    add_output(p, "-o", "--output", required=True, help="PNG file")
    p.add_argument("--defects", default="2,3,6,12",
                   help="defect counts, one panel each (default: 2,3,6,12)")
    p.add_argument("--classes", type=int, default=12, help="classes per panel (default: 12)")
    p.add_argument("--images", type=int, default=40, help="symmetry images per class (default: 40)")
    p.add_argument("--method", choices=["umap", "pca"], default="umap",
                   help="2D projection (default: umap)")
    p.add_argument("--exact", action="store_true", help="embed canonical forms")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(handler=cmd_plot_embeddings)


def _training_data_path(args: argparse.Namespace, lattice: Lattice) -> Path:
    """``--data``, or 2DMD's table found by the data locator (MoS2 8x8 only)."""
    from defectspace.datasets import TABLE, DataNotFoundError, find_2dmd

    if args.data is not None:
        return Path(args.data)
    if not lattice.same_as(Lattice.preset("MoS2", (8, 8))):
        raise ValueError(f"2DMD's placements are MoS2 8x8; for {lattice!r} give --data or --pairs-only")
    try:
        return find_2dmd(TABLE)
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{exc}; or train on pairs from the core alone with --pairs-only") from None


def cmd_train_embedder(args: argparse.Namespace) -> int:
    """Trains an embedder from scratch, evaluates it on held-out pairs and writes the checkpoint."""
    from defectspace.ml.encoder import torch_threads
    from defectspace.ml.evaluation import held_out_metrics
    from defectspace.ml.training import TrainingData, train

    for option, value, low in (("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1),
                               ("--dim", args.dim, 1), ("--channels", args.channels, 1),
                               ("--threads", args.threads, 0), ("--eval-pairs", args.eval_pairs, 10)):
        if value < low:
            raise ValueError(f"{option} must be >= {low}, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    lattice = lattice_of(args)
    config = TrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         loss=args.loss, architecture=args.architecture, dim=args.dim,
                         channels=args.channels, threads=args.threads, eval_pairs=args.eval_pairs)
    pairs_only = args.pairs_only or (args.data is None
                                     and not lattice.same_as(Lattice.preset("MoS2", (8, 8))))
    if pairs_only and not args.pairs_only:
        print(f"train-embedder: no --data for {lattice!r}: training on pairs from the core alone",
              file=sys.stderr)
    data = None if pairs_only else TrainingData.from_csv(_training_data_path(args, lattice), lattice)
    result = train(config, lattice, device=args.device, progress=not args.no_progress, data=data)
    with torch_threads(config.threads):
        result.metrics.update(held_out_metrics(result.embedder, config))
    result.embedder.metadata["metrics"] = result.metrics
    out = result.embedder.save(args.out)
    m = result.metrics
    print(f"trained in {m['train_seconds']:.0f} s; held-out accuracy low {m['low']['accuracy']:.4f} "
          f"high {m['high']['accuracy']:.4f} -> {out}", file=sys.stderr)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Writes id, the input's other columns and emb_0..emb_<dim-1> for every input row."""
    from defectspace.io import read_placements, report_errors, write_csv_atomic
    from defectspace.ml.embedder import Embedder

    embedder = Embedder.load(args.model)
    lat = embedder.lattice
    if args.lattice is not None or args.supercell is not None:
        lat = lattice_from(args.lattice or embedder.lattice.name,
                           args.supercell or "x".join(map(str, embedder.lattice.supercell)),
                           args.lattice_defects)
        embedder._lattice_for(lat)
    table = read_placements(args.input, lat, args.on_error)
    report_errors(table)
    emb = embedder.embed(table.states, exact=args.exact, lattice=lat)
    out = table.extra.copy()
    if not args.keep_defects and "defects" in out.columns:
        out = out.drop(columns=["defects"])
    for k in range(emb.shape[1]):
        out[f"emb_{k}"] = emb[:, k]
    write_csv_atomic(out, args.output)
    print(f"embedded {len(out)} placements ({len(table.errors)} skipped) -> {args.output}",
          file=sys.stderr)
    return 0


def cmd_plot_embeddings(args: argparse.Namespace) -> int:
    """Draws the Figure-1-like picture of embeddings (one colour per equivalence class)."""
    from defectspace.ml.embedder import Embedder
    from defectspace.ml.plotting import plot_embeddings

    try:
        counts = [int(t) for t in str(args.defects).split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--defects must list positive defect counts, got {args.defects!r}")
    if args.classes < 1 or args.images < 1:
        raise ValueError(f"--classes and --images must be >= 1, got {args.classes} and {args.images}")
    embedder = Embedder.load(args.model)
    path = plot_embeddings(embedder, args.output, counts, n_classes=args.classes,
                           n_images=args.images, method=args.method, exact=args.exact, seed=args.seed)
    print(f"figure -> {path}", file=sys.stderr)
    return 0
