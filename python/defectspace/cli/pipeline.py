"""``defectspace screen``: the screening pipeline (the ``screen`` extra: pyarrow, dask)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectspace.cli.common import add_command, add_input, add_output
from defectspace.cli.core import add_lattice_args, lattice_of, parse_counts


def _parse_ranges(items: Sequence[str]) -> tuple[tuple[str, float, float], ...]:
    out = []
    for item in items:
        name, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        try:
            if not sep or not sep2:
                raise ValueError
            out.append((name.strip(), float(lo) if lo.strip() else -np.inf,
                        float(hi) if hi.strip() else np.inf))
        except ValueError:
            raise ValueError(f"--keep items look like 'homo_lumo_gap=0.5:1.2', got {item!r}") from None
    return tuple(out)


def register(subparsers: Any) -> None:
    """Adds screen to the command line."""
    p = add_command(
        subparsers, "screen", help="generate, canonicalize, dedupe, predict, filter (and embed) placements",
        example="defectspace screen --input placements.csv --keep 'homo_lumo_gap=0.5:1.5' -o hits.parquet",
        description="Screen placements for wanted properties; writes Parquet. Resumable: rerun the "
                    "same command after an interruption. Only the properties that --keep filters on "
                    "are predicted for every class; the rest, and the embeddings (--embed), only for "
                    "the kept classes.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", metavar="N", type=int, help="draw N uniformly random placements")
    src.add_argument("--exhaustive", action="store_true", help="every distinct placement")
    add_input(src, "--input", kind="table", help="CSV or Parquet with id,defects")
    p.add_argument("--counts", action="append", default=[],
                   help="defect multiset, e.g. 'S->V=3,Mo->W=1'; repeat for several")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN=LOW:HIGH",
                   help="keep classes with COLUMN in [LOW, HIGH] (eV); repeat for several")
    add_output(p, "-o", "--output", required=True,
               help="output Parquet file: a path or an fsspec URL (s3://..., memory://...)")
    p.add_argument("--embed", action="store_true",
                   help="add the kept classes' embeddings (emb_0 ...; needs torch); the other columns "
                        "are the same with or without it")
    p.add_argument("--work", metavar="URL",
                   help="work folder for the resumable intermediate files, a path or an fsspec URL "
                        "that every worker reaches (default: OUTPUT.work)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=65536)
    p.add_argument("--partitions", type=int, default=0,
                   help="key partitions (default: one per 65536 placements, at least 8), which "
                        "bound the memory of the predict phase")
    p.add_argument("--scheduler", default="none",
                   help="'none' (this process, default), 'local' (a Dask LocalCluster) or a Dask "
                        "scheduler address such as tcp://host:8786")
    p.add_argument("--workers", type=int, default=0,
                   help="tasks at once: threads of this process, or workers of the local Dask "
                        "cluster (default: one per core; each task runs on one thread)")
    add_input(p, "--model", kind="embedder", help="embedder checkpoint (default: the shipped one)")
    add_input(p, "--predictors", kind="predictor", help="predictor folder (default: the shipped ones)")
    add_lattice_args(p, threads=False)
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad input rows: stop with an error (default) or skip them")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    p.set_defaults(handler=cmd_screen)


def cmd_screen(args: argparse.Namespace) -> int:
    """Runs (or resumes) a screening run and prints its summary."""
    from defectspace.pipeline.screening import PARTITION_ROWS, ScreenConfig, format_summary, screen
    from defectspace.placement import counts_vector

    started = time.perf_counter()  # the reported wall time covers the whole command
    lat = lattice_of(args, args.input)
    comps = tuple(tuple(int(v) for v in counts_vector(parse_counts(c), lat)[1:]) for c in args.counts)
    if (args.random is not None or args.exhaustive) and not comps:
        raise ValueError("--random and --exhaustive need at least one --counts")
    if args.random is not None and args.random < 0:
        raise ValueError(f"--random must be >= 0, got {args.random}")
    if args.chunk_size < 1 or args.partitions < 0 or args.workers < 0:
        raise ValueError("--chunk-size must be positive, --partitions and --workers non-negative")
    if args.exhaustive:  # an enumeration that cannot fit is refused before the work folder exists
        from defectspace.canonical import Canonicalizer, check_enumeration_fits

        canon = Canonicalizer(lat, args.subgroup)
        for comp in comps:
            check_enumeration_fits(canon, comp)
    import pyarrow  # noqa: F401  (the screen extra, checked before anything is written)

    # the models load (or fail, naming the file) before the work folder exists; torch only with --embed
    from defectspace.predict import load_predictors

    if args.embed or args.model is not None:  # a given --model is checked even if unused
        from defectspace.ml.embedder import Embedder

        Embedder.load(args.model, lattice=lat)
    load_predictors(args.predictors, lat)
    source = "random" if args.random is not None else "exhaustive" if args.exhaustive else "file"
    input_path = None
    table = None
    if source == "file":
        from defectspace.io import read_placements, report_errors

        input_path = str(Path(args.input).resolve())
        table = read_placements(input_path, lat, "skip" if args.on_error == "skip" else "fail")
        report_errors(table)
    prepared = time.perf_counter() - started
    partitions = args.partitions
    if partitions == 0:
        total = args.random if source == "random" else len(table.ids) if table is not None else 0
        partitions = max(8, -(-int(total) // PARTITION_ROWS))
    cfg = ScreenConfig(lat.describe(), source, comps, args.random or 0, input_path, args.seed,
                       args.chunk_size, partitions, args.subgroup, _parse_ranges(args.keep),
                       args.model, args.predictors, args.on_error, args.embed)
    summary = screen(cfg, args.output, scheduler=None if args.scheduler == "none" else args.scheduler,
                     n_workers=args.workers, work_dir=args.work, keep_work=args.keep_work, table=table)
    # screen() times its own phases; reading the input and loading the models came before it
    summary = dataclasses.replace(summary, wall_seconds=time.perf_counter() - started,
                                  phase_seconds={"read input + models": prepared, **summary.phase_seconds})
    print(format_summary(summary), file=sys.stderr)
    for line in summary.domain_warnings:
        print(f"warning: {line}", file=sys.stderr)
    return 0
