"""``defectspace design`` and ``defectspace decode``: the way back, from properties and embeddings
to placements (a thin layer over :mod:`defectspace.pipeline.design` and
:mod:`defectspace.ml.decode`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from defectspace.cli.common import OutputArgument, add_command, add_input, add_output, check_output
from defectspace.cli.core import add_lattice_option, lattice_of

_OUTPUT_SUFFIXES = (".csv", ".parquet")


def _check_output(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise ValueError(f"-o {path}: the output must end in .csv or .parquet")
    if out.is_dir():
        raise ValueError(f"-o {path} is a folder; give a file name")
    return out


def _write_table(df: Any, out: Path) -> None:
    from defectspace.io import atomic_path, write_csv_atomic

    if out.suffix.lower() == ".parquet":
        with atomic_path(out) as tmp:
            df.to_parquet(tmp, index=False)
    else:
        write_csv_atomic(df, out)


def _predictors(models: list[str] | None, lattice: Any) -> dict[str, Any]:
    from defectspace.predict import PropertyPredictor, load_predictors

    if not models:
        return dict(load_predictors(lattice=lattice))
    out: dict[str, Any] = {}
    for m in models:
        p = PropertyPredictor.load(m, lattice)
        if p.target in out:
            raise ValueError(f"--model: two predictors of {p.target!r}")
        out[p.target] = p
    return out


def cmd_design(args: argparse.Namespace) -> int:
    """Designs distinct classes inside the target windows; writes them best first."""
    from tqdm import tqdm

    from defectspace.pipeline.design import Objective, design, parse_count_ranges, parse_window
    from defectspace.predict import describe_domain

    out = _check_output(args.output)
    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    if args.time_limit <= 0 or args.prove_time_limit <= 0:
        raise ValueError(f"--time-limit and --prove-time-limit must be positive, got {args.time_limit}, "
                         f"{args.prove_time_limit}")
    if (args.verify is None) != (args.budget is None):
        raise ValueError("--verify and --budget go together")
    lattice = lattice_of(args)
    ranges = parse_count_ranges(args.counts)
    targets = [parse_window(t) for t in args.target]
    objective = (
        Objective(args.minimize)
        if args.minimize
        else Objective(args.maximize, maximize=True)
        if args.maximize
        else None
    )
    predictors = _predictors(args.model, lattice)
    bars: dict[str, Any] = {}

    def progress(stage: str, k: int) -> None:
        if args.no_progress:
            return
        if stage not in bars:
            unit = {"score": "class", "search": "cand", "verify": "label"}.get(stage, "it")
            bars[stage] = tqdm(desc=stage, unit=unit, unit_scale=True, file=sys.stderr, leave=False)
        bars[stage].update(k)

    work = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".work")
    if args.verify:
        check_output(OutputArgument("work_dir", "--work-dir", "folder"), work)
    try:
        res = design(
            lattice,
            ranges,
            targets=targets,
            objective=objective,
            n=args.n,
            predictors=predictors,
            seed=args.seed,
            time_limit=args.time_limit,
            prove_time_limit=args.prove_time_limit,
            verify=args.verify,
            budget=args.budget or 0,
            work_dir=work if args.verify else None,
            progress=progress,
            n_threads=args.threads,
            engine_workers=args.engine_workers,
        )
    finally:
        for bar in bars.values():
            bar.close()
    _write_table(res.to_frame(), out)
    for name, p in predictors.items():
        print(f"model {name}: {p.describe_training()}", file=sys.stderr)
    warning = describe_domain(predictors, res.states, lattice) if len(res.states) else None
    for line in (warning or "").splitlines():
        print(f"warning: {line} (designs)", file=sys.stderr)
    print(res.summary(), file=sys.stderr)
    if len(res.states) < args.n:
        print(
            f"only {len(res.states)} classes exist for these counts "
            f"({'exhaustive search' if res.exhaustive else 'stochastic search'})",
            file=sys.stderr,
        )
    elif res.n_feasible < args.n:
        how = "exhaustive: no other class is inside" if res.exhaustive else "stochastic: more may exist"
        print(
            f"only {res.n_feasible} classes found inside every window ({how}); "
            f"the others are the closest found, with distance_to_window > 0",
            file=sys.stderr,
        )
    print(f"{len(res.states)} designs -> {out}", file=sys.stderr)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Decodes embedding vectors (columns emb_0..emb_{dim-1}, as ``embed`` writes) to placements."""
    import numpy as np
    import pandas as pd

    from defectspace.io import InputError, read_table
    from defectspace.ml.decode import decode
    from defectspace.ml.embedder import Embedder
    from defectspace.pipeline.design import parse_count_ranges
    from defectspace.placement import format_2dmd

    out = _check_output(args.output)
    path = Path(args.input)
    df = read_table(path, required=())
    embedder = Embedder.load(args.model) if args.model else Embedder.load()
    cols = [f"emb_{i}" for i in range(embedder.dim)]
    if not set(cols) <= set(df.columns):
        raise InputError(
            f"{path}: needs embedding columns {cols[0]}..{cols[-1]} (as `defectspace embed` writes)"
        )
    try:
        vectors = df[cols].to_numpy(dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: embedding columns must hold numbers") from None
    if len(vectors) == 0:
        raise InputError(f"{path} holds no embedding")
    counts = None
    if args.counts:
        ranges = parse_count_ranges(args.counts)
        if any(lo != hi for lo, hi in ranges.values()):
            raise ValueError("decode takes one composition: --counts without ranges")
        counts = {k: lo for k, (lo, _) in ranges.items()}
    res = decode(embedder, vectors, counts, seed=args.seed)
    from defectspace.canonical import key_to_string

    table = pd.DataFrame(
        {
            "id": df["id"].astype(str) if "id" in df.columns else [f"row{i}" for i in range(len(df))],
            "defects": format_2dmd(res.states, embedder.lattice),
            "canonical_key": key_to_string(res.keys),
            "distance": res.distance,
            "exact_retrieval": res.exact,
        }
    )
    _write_table(table, out)
    print(
        f"decoded {len(table)} embeddings (median distance reached {np.median(res.distance):.2e}) -> {out}",
        file=sys.stderr,
    )
    return 0


def register(subparsers: Any) -> None:
    """Adds design and decode to the command line."""
    p = add_command(
        subparsers, "design", help="the best distinct defect classes inside property windows",
        example="defectspace design --counts 'S->V=3' --target 'homo_lumo_gap=1.0:1.2' "
                "--minimize formation_energy_per_site -n 5 -o designs.csv",
        description="Inverse design: returns the N best distinct symmetry classes of the given "
        "composition whose predicted properties lie inside every --target window, ranked "
        "by --minimize/--maximize or by the probability of lying inside the windows. "
        "Exhaustive where the classes can be enumerated, a deduplicated parallel-tempering "
        "search otherwise; an integer program proves the optimum of pair-expansion models.",
    )
    p.add_argument(
        "--counts", required=True, help="composition, e.g. 'Mo->W=2,S->V=3'; ranges widen it: 'S->V=2..6'"
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="PROPERTY=LOW:HIGH",
        help="window of a predicted property in eV, e.g. 'homo_lumo_gap=0.90:0.95'; repeat",
    )
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--minimize", metavar="PROPERTY", help="property to minimise")
    goal.add_argument("--maximize", metavar="PROPERTY", help="property to maximise")
    p.add_argument("-n", type=int, default=20, help="number of designs (default: 20)")
    add_output(p, "-o", "--output", required=True, help="output .csv or .parquet")
    add_input(p, "--model", kind="predictor", action="append", default=None,
              help="a saved predictor folder (repeat; default: the shipped ones)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic search (default: 0)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        help="seconds for the stochastic search (default: 60)",
    )
    p.add_argument(
        "--prove-time-limit",
        type=float,
        default=300.0,
        help="seconds for the integer program that proves a pair-expansion optimum (default: 300)",
    )
    p.add_argument(
        "--verify",
        choices=["xtb", "sevenn", "chgnet"],
        help="label the most promising candidates with this engine",
    )
    p.add_argument("--budget", type=int, help="at most this many engine calls (with --verify)")
    p.add_argument("--work-dir", help="engine labels of --verify (default: OUTPUT.work; resumable)")
    p.add_argument("--engine-workers", type=int, default=1, help="engine processes (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_lattice_option(p)
    p.add_argument("--threads", type=int, default=0, help="threads for the C++ core (0 = all cores)")
    p.set_defaults(handler=cmd_design)

    p = add_command(
        subparsers, "decode", help="the placements whose embeddings are nearest to given vectors",
        example="defectspace decode embeddings.csv -o placements.csv",
        description="Decodes embeddings (columns emb_0..emb_11, as `defectspace embed` writes) back to "
        "placements: exact retrieval over the enumerated classes where the composition is "
        "small, a search where it is not; the composition is inferred when not given.",
    )
    add_input(p, "input", kind="embeddings",
              help="CSV or Parquet with columns emb_0..emb_<dim-1> (and optionally id)")
    add_output(p, "-o", "--output", required=True, help="output .csv or .parquet")
    p.add_argument("--counts", help="composition of every vector, e.g. 'Mo->W=1,S->V=2' (default: inferred)")
    add_input(p, "--model", kind="embedder", help="embedder checkpoint folder (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (default: 0)")
    p.set_defaults(handler=cmd_decode)
