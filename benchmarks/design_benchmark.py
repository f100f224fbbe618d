"""Inverse-design benchmarks (issue 13): prints tables and writes benchmarks/results/design_benchmark.*.

Sections (all by default; pick with --only):

* ``pool``: the 2,300 DFT gaps of 2DMD as a pool. For windows holding at most 3 % of the rows, the
  methods see no label until they ask for one, one at a time, refitting as they go; queries needed
  to find 10 in-window rows by the window-probability rule, a greedy surrogate (same model, no
  uncertainty) and random order, mean and spread over seeds and windows.
* ``exact``: an enumerable composition (``S->V=5``): ``design --minimize`` against an exhaustive
  scoring, the forced stochastic search, and the integer program.
* ``milp``: a composition too large to enumerate (``Mo->W=4,S->V=8``): the integer program's
  optimum or bound, and the parallel-tempering search's gap to it.
* ``speed``: candidates per second of the stochastic search (2 cores, shipped models).
* ``decode``: embeddings of held-out placements back to their classes (1-4 and 8-24 defects).
* ``landscape``: steepest descent on the embedding distance from 1-5 hops away from the true
  placement (why decoding at density falls short).
* ``open``: open space with an engine oracle. 2DMD's high-density composition Mo56W4Se8S112
  (``Mo->V=4,Mo->W=4,S->Se=8,S->V=8``, 24 defects) has 100 random placements, all with GFN1-xTB
  gaps in the package's labels: they give the random hit rate of a 100 meV window on the gap
  model's scale (xTB mapped to DFT by the model's own correction) chosen to hold at most 5 % of
  them. ``design --verify xtb --budget 60 -n 20`` against ``screen --keep`` (the screening
  pipeline on random draws, 60 of its kept classes labelled) on the same budget. Engine labels are
  kept in ``benchmarks/results/design_open_space/`` (resumable: a rerun computes none twice).
  ``DESIGN_OPEN_PART=ours|screen|none`` runs one part (parts can run in parallel; ``none`` redraws
  the table from the saved labels and part results).
* ``open_retrained``: the same with the gap model that learned all 500 high-density xTB rows, 60
  engine calls each, labels in ``benchmarks/results/design_open_space_500xtb/``.

Usage: ``python benchmarks/design_benchmark.py [--only pool,exact,...] [--quick]``. Needs ../shared
(the 2DMD data) for ``pool``; the other sections use the shipped models only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("pool", "exact", "milp", "speed", "decode", "landscape", "open", "open_retrained")


def _lattice():  # type: ignore[no-untyped-def]
    from defectspace import Lattice

    return Lattice.preset("MoS2", (8, 8))


def pool_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    import pandas as pd
    from defectspace import parse_2dmd
    from defectspace.datasets import find_2dmd
    from defectspace.descriptors import defect_histogram
    from defectspace.pipeline.active import search_pool

    lat = _lattice()
    d = pd.read_csv(find_2dmd(), dtype={"id": str})
    d = d[d["homo_lumo_gap"].notna()].reset_index(drop=True)
    x = parse_2dmd(d["defects"].fillna("").tolist(), lat)
    f = defect_histogram(x, lat)
    y = d["homo_lumo_gap"].to_numpy(float)
    windows = [(0.90, 1.06), (1.15, 1.20), (0.60, 0.70), (0.25, 0.27)]
    seeds = range(2 if quick else 5)
    rows = [
        "| window (eV) | rows inside | probability (ours) | greedy, no uncertainty | random order | random / ours |",
        "|---|---|---|---|---|---|",
    ]
    out: dict[str, object] = {}
    all_ratio = []
    all_q: dict[str, list[int]] = {"probability": [], "greedy": [], "random": []}
    for w in windows:
        inside = int(((y >= w[0]) & (y <= w[1])).sum())
        share = inside / len(y)
        if share > 0.03:
            raise AssertionError(f"window {w} holds {share:.1%} of the rows (at most 3 % wanted)")
        res: dict[str, list[int]] = {}
        for strategy in ("probability", "greedy", "random"):
            qs = []
            for seed in seeds:
                r = search_pool(f, lambda i: float(y[i]), w, strategy=strategy, seed=seed)
                q = r.queries_to(10)
                qs.append(len(y) if q is None else q)
            res[strategy] = qs
            all_q[strategy] += qs
        ratio = np.mean(res["random"]) / np.mean(res["probability"])
        all_ratio.append(ratio)
        cell = {k: f"{np.mean(v):.1f} +- {np.std(v):.1f}" for k, v in res.items()}
        rows.append(
            f"| {w[0]:.2f}-{w[1]:.2f} | {inside} ({share:.1%}) | {cell['probability']} | "
            f"{cell['greedy']} | {cell['random']} | {ratio:.1f}x |"
        )
        out[f"{w[0]:.2f}-{w[1]:.2f}"] = {"inside": inside, **res}
        print(rows[-1], flush=True)
    mean = {k: float(np.mean(v)) for k, v in all_q.items()}
    rows.append(
        f"| all windows | | {mean['probability']:.1f} | {mean['greedy']:.1f} | {mean['random']:.1f} | "
        f"{mean['random'] / mean['probability']:.1f}x |"
    )
    text = [
        f"Queries to find 10 in-window rows among {len(y)} DFT gaps (2DMD, low density); "
        f"{len(list(seeds))} seeds per window (5 random queries first, same for every method), "
        "extra-trees ensemble on the pair-histogram descriptor refitted after every label.",
        "",
        *rows,
    ]
    return text, {"windows": out, "mean_queries": mean}


def exact_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    from defectspace import Canonicalizer
    from defectspace.pipeline.design import Objective, design
    from defectspace.predict import load_predictors

    lat = _lattice()
    preds = load_predictors(lattice=lat)
    fe = "formation_energy_per_site"
    t = time.perf_counter()
    e = Canonicalizer(lat).enumerate({"S->V": 5})
    p = preds[fe].predict(e.canonical, lat)
    t_ref = time.perf_counter() - t
    want = np.sort(p)[:5]
    t = time.perf_counter()
    exact = design(lat, {"S->V": 5}, objective=Objective(fe), n=5, predictors=preds)
    t_exact = time.perf_counter() - t
    got = exact.mean[:, exact.names.index(fe)]
    search = design(
        lat,
        {"S->V": 5},
        objective=Objective(fe),
        n=5,
        predictors=preds,
        exhaustive_limit=0,
        time_limit=10 if quick else 30,
        seed=0,
    )
    g = search.optimum[0]
    s_got = search.mean[:, search.names.index(fe)]
    text = [
        f"`S->V=5` on 8x8 MoS2: {len(e.orbit_size)} classes.",
        "",
        "| | result | time |",
        "|---|---|---|",
        f"| exhaustive reference (enumerate + predict every class) | 5 lowest FE/site {np.round(want, 6).tolist()} | {t_ref:.1f} s |",
        f"| `design --minimize` (chose exhaustive) | same 5 classes: {bool(np.array_equal(got, want))} | {t_exact:.1f} s |",
        f"| stochastic search forced ({search.n_scored} of {len(e.orbit_size)} classes scored) | "
        f"top 5 equal to the exhaustive top 5: {bool(np.allclose(s_got, want, atol=1e-12))} | {search.seconds:.1f} s |",
        f"| integer program (HiGHS) | {g.value:.6f} eV, proven optimal: {g.proven_optimal} | {g.seconds:.1f} s |",
    ]
    return text, {
        "classes": len(e.orbit_size),
        "reference_s": t_ref,
        "design_s": t_exact,
        "exhaustive_equal": bool(np.array_equal(got, want)),
        "search_equal": bool(np.allclose(s_got, want, atol=1e-12)),
        "search_s": search.seconds,
        "milp_value": g.value,
        "milp_proven": g.proven_optimal,
        "milp_s": g.seconds,
    }


MILP_CASES = (
    # (composition, integer-program time limit in s): 1.4e12 and 4.3e17 placements, neither enumerable
    ({"S->V": 8}, 1200.0),
    ({"Mo->W": 4, "S->V": 8}, 300.0),
)


def milp_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    from defectspace.canonical import n_placements
    from defectspace.pipeline.design import Objective, design
    from defectspace.pipeline.groundstate import minimize_pair_expansion, pair_expansion
    from defectspace.predict import load_predictors

    lat = _lattice()
    preds = load_predictors(lattice=lat)
    fe = "formation_energy_per_site"
    expansion = pair_expansion(preds[fe])
    assert expansion is not None
    wanted = os.environ.get("DESIGN_MILP_CASES", "")  # e.g. "S->V=8": only those; the others keep their rows
    text: list[str] = []
    out: dict[str, object] = {}
    prev_path = RESULTS / "design_benchmark.json"
    prev = json.loads(prev_path.read_text()) if prev_path.exists() else {}
    for counts, full_limit in MILP_CASES:
        name = ",".join(f"{k}={v}" for k, v in counts.items())
        if wanted and name not in wanted.split(";"):
            old = prev.get("sections", {}).get("milp", {}).get(name)
            old_text = prev.get("texts", {}).get("milp", [])
            start = next((i for i, t in enumerate(old_text) if t.startswith(f"`{name}`")), None)
            if old is not None and start is not None:
                out[name] = old
                end = next((i for i in range(start + 1, len(old_text)) if old_text[i].startswith("`")), len(old_text))
                text += old_text[start:end]
            continue
        limit = 60.0 if quick else full_limit
        g = minimize_pair_expansion(expansion, lat, counts, time_limit=limit)
        rows = [
            "| search | best FE/site (eV) | gap to the integer program's best (meV) | gap to its bound (meV) "
            "| classes scored | time |",
            "|---|---|---|---|---|---|",
            f"| integer program (HiGHS, {limit:.0f} s limit) | {g.value:.6f} | 0 | {(g.value - g.bound) * 1000:.2f} "
            f"| - | {g.seconds:.0f} s |",
        ]
        res: dict[str, object] = {
            "milp_value": g.value, "milp_bound": g.bound, "proven": g.proven_optimal, "milp_s": g.seconds,
            "variables": g.n_variables, "load": os.getloadavg()[0],
        }
        for tl in (10.0,) if quick else (10.0, 60.0):
            r = design(lat, counts, objective=Objective(fe), n=1, predictors={fe: preds[fe]}, time_limit=tl,
                       prove=False, seed=0)
            best = float(r.mean[0, 0])
            rows.append(
                f"| parallel tempering, {tl:.0f} s | {best:.6f} | {(best - g.value) * 1000:.2f} | "
                f"{(best - g.bound) * 1000:.2f} | {r.n_scored} | {r.seconds:.0f} s |"
            )
            res[f"anneal_{tl:.0f}s"] = {"best": best, "gap_meV": (best - g.value) * 1000, "scored": r.n_scored}
            print(rows[-1], flush=True)
        out[name] = res
        text += [
            f"`{name}` ({float(n_placements(lat, counts)):.1e} placements): pair-expansion formation energy per "
            f"site (the shipped ridge model). Integer program: {g.n_variables} variables, "
            f"{'proven optimal' if g.proven_optimal else 'not proven within the limit'} ({g.status}); "
            f"load average {res['load']:.1f} on 2 cores.",
            "",
            *rows,
            "",
        ]
    return text, out


def speed_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    from defectspace.pipeline.design import Objective, PropertyWindow, design
    from defectspace.predict import load_predictors

    lat = _lattice()
    preds = load_predictors(lattice=lat)
    rows = [
        "| composition | scored by | candidates looked up | distinct classes scored | time | candidates / s "
        "| CPU time | candidates / CPU-s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out: dict[str, object] = {}
    tl = 10.0 if quick else 30.0
    cases = [
        (
            "Mo->W=4,S->V=8",
            {"Mo->W": 4, "S->V": 8},
            dict(objective=Objective("formation_energy_per_site")),
            "FE/site (ridge)",
        ),
        (
            "Mo->V=2,Mo->W=3,S->V=7,S->Se=7",
            {"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7},
            dict(targets=[PropertyWindow("homo_lumo_gap", 0.9, 1.0)]),
            "gap (trees)",
        ),
    ]
    import resource

    def cpu() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    load = os.getloadavg()[0]
    for name, counts, kw, what in cases:
        c0 = cpu()
        r = design(lat, counts, n=20, predictors=preds, time_limit=tl, prove=False, seed=0, **kw)  # type: ignore[arg-type]
        cpu_s = cpu() - c0
        rate = r.n_proposed / r.seconds
        rows.append(
            f"| `{name}` | {what} | {r.n_proposed} | {r.n_scored} | {r.seconds:.1f} s | {rate:,.0f} | "
            f"{cpu_s:.1f} s | {r.n_proposed / cpu_s:,.0f} |"
        )
        out[name] = {"proposed": r.n_proposed, "scored": r.n_scored, "seconds": r.seconds, "rate": rate,
                     "cpu_seconds": cpu_s}
        print(rows[-1], flush=True)
    rows += ["", f"Load average {load:.1f} on {os.cpu_count()} cores when the section started (other jobs "
             "share the machine: the wall rate is what was left for it; the rate per CPU-second is the "
             "work done, and 2 cores give at most twice it)."]
    return rows, out


def decode_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    from defectspace import Canonicalizer
    from defectspace.ml.decode import decode
    from defectspace.ml.embedder import Embedder
    from defectspace.placement import random_placements

    lat = _lattice()
    emb = Embedder.load()
    c = Canonicalizer(lat)
    rows = [
        "| defects | placements | composition given | top-1 exact class | median distance reached | "
        "max distance | time per placement |",
        "|---|---|---|---|---|---|---|",
    ]
    out: dict[str, object] = {}
    cases = [
        ((1, 4), 40 if quick else 200, True),
        ((1, 4), 20 if quick else 100, False),
        ((8, 24), 10 if quick else 40, True),
    ]
    # DESIGN_DECODE_CASES=8-24 runs only those rows; the others keep their last result
    wanted = os.environ.get("DESIGN_DECODE_CASES", "")
    if wanted:
        cases = [c for c in cases if f"{c[0][0]}-{c[0][1]}" in wanted.split(",")]
        prev_path = RESULTS / "design_benchmark.json"
        if prev_path.exists():
            prev = json.loads(prev_path.read_text()).get("sections", {}).get("decode", {})
            out.update({k: v for k, v in prev.items() if isinstance(v, dict)})
            rows += [r for r in json.loads(prev_path.read_text()).get("texts", {}).get("decode", [])
                     if r.startswith("| 1-4") or r.startswith("| 8-24")]
    for (lo, hi), n, given in cases:
        x = random_placements(lat, n, (lo, hi), np.random.default_rng(12345 + lo))
        v = emb.embed(x)
        counts = None
        if given:
            from defectspace.placement import composition

            counts = composition(x, lat)[:, 1:]
        t = time.perf_counter()
        r = decode(emb, v, counts=counts, seed=0)
        dt = (time.perf_counter() - t) / n
        ok = (c.keys(r.states) == c.keys(x)).all(axis=1)
        rows.append(
            f"| {lo}-{hi} | {n} | {'yes' if given else 'inferred'} | {ok.mean():.1%} | "
            f"{np.median(r.distance):.2e} | {r.distance.max():.2e} | {dt:.2f} s |"
        )
        out[f"{lo}-{hi}_{'given' if given else 'inferred'}"] = {
            "n": n,
            "top1": float(ok.mean()),
            "median_distance": float(np.median(r.distance)),
            "seconds_per": dt,
        }
        print(rows[-1], flush=True)
    return rows, out


def landscape_section(quick: bool) -> tuple[list[str], dict[str, object]]:
    """Why decoding at density falls short: steepest descent on the embedding distance (every
    single-defect hop, as decode's search ends) started k hops from the true placement."""
    from defectspace import Canonicalizer
    from defectspace.ml.decode import steepest_descent
    from defectspace.ml.embedder import Embedder
    from defectspace.pipeline.annealing import ClassArchive

    lat = _lattice()
    emb = Embedder.load()
    canon = Canonicalizer(lat)
    types = lat.site_types
    rng = np.random.default_rng(5)
    x = canon.sample({"Mo->W": 3, "S->V": 6, "S->Se": 3}, 4 if quick else 12, seed=11)

    rows = ["| hops from the true placement | recovered by descent | median distance reached |", "|---|---|---|"]
    out: dict[str, object] = {}
    for hops in (1, 2, 3, 5):
        found, dists = 0, []
        for row in x:
            v = emb.embed(row[None])[0].astype(np.float64)

            def score(s: np.ndarray, v: np.ndarray = v) -> np.ndarray:
                return np.linalg.norm(emb.embed(s).astype(np.float64) - v[None, :], axis=1)[:, None]

            archive = ClassArchive(canon, score)
            y = row.copy()
            for _ in range(hops):
                s_ = rng.choice(np.flatnonzero(y))
                t_ = rng.choice(np.flatnonzero((types == types[s_]) & (y == 0)))
                y[t_], y[s_] = y[s_], 0
            _, d = steepest_descent(archive, y)
            found += d < 1e-3
            dists.append(d)
        rows.append(f"| {hops} | {found} of {len(x)} | {np.median(dists):.3f} |")
        out[str(hops)] = {"recovered": found, "n": len(x), "median_distance": float(np.median(dists))}
        print(rows[-1], flush=True)
    text = ["12-defect placements (Mo->W=3, S->V=6, S->Se=3) of 8x8 MoS2, the shipped 12-number embedder: "
            "each true placement moved by k random single-defect hops, then steepest descent over every "
            "single-defect hop on the distance to its embedding (how decode's search ends).", "", *rows, "",
            "One hop away the descent always returns; two hops away it mostly stops in a local minimum a "
            "few hundredths away: the distance to a 12-number contrastive embedding does not guide a local "
            "search across more than one move, which is why decoding 8-24 defects stays far from 90 %."]
    return text, out


OPEN_COMPOSITION = {"Mo->V": 4, "Mo->W": 4, "S->Se": 8, "S->V": 8}
OPEN_WINDOW = (0.35, 0.45)  # eV, the gap model's (DFT) scale
OPEN_BUDGET = 60
OPEN_DESIGNS = 20
OPEN_WORK = RESULTS / "design_open_space"
# the same benchmark with the gap model that learned all 500 high-density xTB rows (60 calls each)
RETRAINED_WORK = RESULTS / "design_open_space_500xtb"
RETRAINED_BUDGET = 60


def open_section(quick: bool, work: Path = OPEN_WORK, default_budget: int = OPEN_BUDGET
                 ) -> tuple[list[str], dict[str, object]]:
    import pandas as pd
    from defectspace.pipeline.design import PropertyWindow, design
    from defectspace.pipeline.screening import ScreenConfig, screen
    from defectspace.pipeline.verification import EngineLabels, ModelScale
    from defectspace.placement import counts_vector, parse_2dmd
    from defectspace.predict import load_predictors

    # ours | screen | all (parts can run in parallel) | none (the table again from the saved results)
    part = os.environ.get("DESIGN_OPEN_PART", "all")
    workers = int(os.environ.get("DESIGN_OPEN_WORKERS", "1"))
    lat = _lattice()
    predictors = load_predictors(lattice=lat)
    gap = predictors["homo_lumo_gap"]
    scale = ModelScale(gap, "xtb", lat)
    lo, hi = OPEN_WINDOW
    budget = 6 if quick else int(os.environ.get("DESIGN_OPEN_BUDGET", default_budget))

    # random: 2DMD's 100 random placements of the composition, labelled by the package's labeller
    labels = pd.read_csv(ROOT / "python" / "defectspace" / "data" / "labels" / "xtb_gfn1_mos2_8x8.csv",
                         dtype={"id": str})
    labels = labels[labels["status"] == "ok"].drop_duplicates("id", keep="last").set_index("id")
    from defectspace.datasets import find_2dmd

    d = pd.read_csv(find_2dmd(), dtype={"id": str})
    rows = d[d["id"].str.split("_").str[1] == "Mo56W4Se8S112"]
    rows = rows[rows["id"].isin(labels.index)]
    x_rand = parse_2dmd(rows["defects"].tolist(), lat)
    want = counts_vector(OPEN_COMPOSITION, lat)
    exact = np.array([(np.bincount(r, minlength=lat.n_kinds + 1)[1:] == want[1:]).all() for r in x_rand])
    rows, x_rand = rows[exact], x_rand[exact]  # 2 of the 100 hold 2 Mo vacancies, not 4
    y_rand = scale(labels.loc[rows["id"], "homo_lumo_gap"].to_numpy(float), x_rand)
    rand_hit = float(((y_rand >= lo) & (y_rand <= hi)).mean())
    if rand_hit > 0.05:
        raise AssertionError(f"window {OPEN_WINDOW} holds {rand_hit:.0%} of the random placements")
    out: dict[str, object] = {"random": {"n": len(y_rand), "hit_rate": rand_hit}}
    window = PropertyWindow("homo_lumo_gap", lo, hi)

    if part in ("ours", "all"):
        t = time.perf_counter()
        res = design(lat, OPEN_COMPOSITION, targets=[window], n=OPEN_DESIGNS, predictors=predictors,
                     seed=0, time_limit=30 if quick else 120, verify="xtb", budget=budget,
                     work_dir=work / "design", engine_workers=workers)
        inside = res.verified & (res.engine_value >= lo) & (res.engine_value <= hi)
        done = EngineLabels(work / "design", "xtb", lat).done()
        out["design"] = {"designs": len(res.orbit_size), "verified": int(res.verified.sum()),
                         "verified_inside": int(inside.sum()), "hit_rate": float(inside.mean()),
                         "engine_calls": res.engine_calls, "labels_on_disk": len(done), "budget": budget,
                         "seconds": time.perf_counter() - t, "summary": res.summary()}
        print(res.summary(), flush=True)
    if part in ("screen", "all"):
        import tempfile

        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            comp = (tuple(int(v) for v in want[1:]),)
            cfg = ScreenConfig(lat.describe(), "random", comp, 1_000_000, seed=0, chunk_size=65536,
                               n_partitions=4, ranges=(("homo_lumo_gap", lo, hi),))
            s = screen(cfg, Path(tmp) / "kept.parquet")
            kept = pd.read_parquet(Path(tmp) / "kept.parquet")
        pick = kept.sample(n=min(budget, len(kept)), random_state=0)
        x = parse_2dmd(pick["defects"].tolist(), lat)
        from defectspace.canonical import Canonicalizer, key_to_string

        keys = key_to_string(Canonicalizer(lat).keys(x))
        eng = EngineLabels(work / "screen", "xtb", lat, workers=workers)
        y = scale(eng.measure(x, keys), x)
        ok = np.isfinite(y)
        hit = (y >= lo) & (y <= hi)
        out["screen"] = {"generated": s.generated, "distinct": s.distinct, "kept": s.kept,
                         "labelled": int(ok.sum()), "inside": int(hit.sum()), "no_value": int((~ok).sum()),
                         "hit_rate": float(hit.sum() / max(ok.sum(), 1)),
                         "seconds": time.perf_counter() - t}
    # a part not run now keeps its last result (parts may run in parallel: each writes its own file)
    for k in ("design", "screen"):
        part_file = work / f"{k}_result.json"
        if k in out:
            work.mkdir(parents=True, exist_ok=True)
            part_file.write_text(json.dumps(out[k], indent=1, default=float) + "\n")
        elif part_file.exists():
            out[k] = json.loads(part_file.read_text())
        elif work == OPEN_WORK and (RESULTS / "design_benchmark.json").exists():
            prev = json.loads((RESULTS / "design_benchmark.json").read_text())
            if k in prev.get("sections", {}).get("open", {}):
                out[k] = prev["sections"]["open"][k]
    # every label each method asked for (on disk, resumable): how many landed inside the window
    for k in ("design", "screen"):
        done = EngineLabels(work / k, "xtb", lat)
        states, _, values = done.labelled()
        if k in out and len(values):
            y = scale(values, states)
            assert isinstance(out[k], dict)
            out[k]["labels"] = int(np.isfinite(y).sum())
            out[k]["labels_inside"] = int(((y >= lo) & (y <= hi)).sum())
            out[k]["labels_mean"] = float(np.nanmean(y))
            out[k]["labels_std"] = float(np.nanstd(y))
            half = len(y) // 2  # labels are stored in the order they were asked for
            out[k]["labels_inside_halves"] = [int(((h >= lo) & (h <= hi)).sum()) for h in (y[:half], y[half:])]
    # which gap model the labels were asked by: the default run predates the model that learned all
    # 500 high-density xTB rows; a run in another folder names the model it used
    n_xtb = re.search(r"GFN1-xTB gaps of (\d+) rows", gap.label_source)
    model_note = (
        "Run with the gap model of commit a555655 (its 2,523 training rows held 223 of the 500 "
        "high-density xTB rows; the shipped one now learns from all 500)."
        if work == OPEN_WORK
        else f"Run with the gap model that learned {n_xtb[1] if n_xtb else 'no'} GFN1-xTB rows ({work.name}/)."
    )
    text = [
        f"Composition Mo->V=4, Mo->W=4, S->Se=8, S->V=8 (2DMD's Mo56W4Se8S112: {len(y_rand)} of its "
        "100 random placements have exactly this composition; 24 defects); window "
        f"homo_lumo_gap {lo:.2f}-{hi:.2f} eV on the gap model's scale ({scale.describe()}); "
        f"GFN1-xTB is the oracle (tblite, unrelaxed structures). {model_note}",
        "",
        "| method | engine calls | labelled inside the window (per call) | labels' mean and spread (eV) "
        f"| {OPEN_DESIGNS} designs, engine-verified inside |",
        "|---|---|---|---|---|",
        f"| random placements (2DMD's) | {len(y_rand)} | {int(round(rand_hit * len(y_rand)))} ({rand_hit:.0%}) "
        f"| {np.mean(y_rand):.3f} +- {np.std(y_rand):.3f} | - |",
    ]
    if "screen" in out:
        sc = out["screen"]
        assert isinstance(sc, dict)
        n_in = min(int(sc["inside"]), OPEN_DESIGNS)
        text.append(
            f"| screen --keep (1,000,000 draws, {sc['kept']:,} kept; {sc['labelled']} of them labelled at "
            f"random) | {sc['labelled']} | {sc['inside']} ({sc['hit_rate']:.0%}) | "
            f"{sc.get('labels_mean', float('nan')):.3f} +- {sc.get('labels_std', float('nan')):.3f} | "
            f"{n_in} of {OPEN_DESIGNS} ({n_in / OPEN_DESIGNS:.0%}) if its hits are returned first |")
    if "design" in out:
        de = out["design"]
        assert isinstance(de, dict)
        inside = de.get("labels_inside", de["verified_inside"])
        calls = de.get("labels", de["engine_calls"])
        text.append(
            f"| design --verify xtb --budget {de.get('budget', budget)} -n {OPEN_DESIGNS} | {calls} | "
            f"{inside} ({inside / max(calls, 1):.0%}) | "
            f"{de.get('labels_mean', float('nan')):.3f} +- {de.get('labels_std', float('nan')):.3f} | "
            f"{de['verified_inside']} of {de['designs']} ({de['hit_rate']:.0%}) |")
    sc_open = out.get("screen")
    if isinstance(sc_open, dict) and sc_open.get("no_value"):
        text += ["", f"Screen: {sc_open['no_value']} engine calls gave no value (reasons in the error "
                     f"column of {work.name}/screen/xtb_labels.csv); its hit rate counts the others."]
    if "design" in out and "screen" in out:
        de, sc = out["design"], out["screen"]
        assert isinstance(de, dict) and isinstance(sc, dict)
        per_call = de.get("labels_inside", 0) / max(de.get("labels", 1), 1)
        text += [
            "",
            f"Both model-guided methods land in the window far more often than random placements. Design "
            f"returns {de['hit_rate']:.0%} of its {de['designs']} designs engine-verified inside (target 70 %); "
            f"per engine call it does {'better' if per_call > sc['hit_rate'] else 'worse'} than labelling "
            f"screen's kept classes at random ({per_call:.0%} against {sc['hit_rate']:.0%}). The labels design "
            f"asked for scatter around the window by {de.get('labels_std', float('nan')) * 1e3:.0f} meV "
            f"(screen's {sc.get('labels_std', float('nan')) * 1e3:.0f} meV) against a 100 meV window: the gap "
            "model's error at 24 defects. Hits in the first and second half of design's calls: "
            f"{' and '.join(str(v) for v in de.get('labels_inside_halves', []))}.",
        ]
    return text, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    ap.add_argument("--quick", action="store_true", help="fewer seeds and shorter limits (a smoke run)")
    ap.add_argument("--out", default=str(RESULTS / "design_benchmark"), help="results path stem")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SECTIONS]
    if bad:
        print(f"design_benchmark: unknown section(s) {bad}; known: {SECTIONS}", file=sys.stderr)
        return 2
    funcs = {
        "pool": pool_section,
        "exact": exact_section,
        "milp": milp_section,
        "speed": speed_section,
        "decode": decode_section,
        "landscape": landscape_section,
        "open": open_section,
        "open_retrained": lambda quick: open_section(quick, RETRAINED_WORK, RETRAINED_BUDGET),
    }
    stem = Path(args.out)
    previous = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else {}
    results: dict[str, object] = dict(previous.get("sections", {}))
    texts: dict[str, list[str]] = dict(previous.get("texts", {}))
    for name in chosen:
        print(f"## {name}", flush=True)
        t = time.perf_counter()
        text, res = funcs[name](args.quick)
        res["section_seconds"] = time.perf_counter() - t
        results[name] = res
        texts[name] = text
        print("\n".join(text), flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "sections": results, "texts": texts}, indent=1, default=float) + "\n"
    )
    md = [
        "# Inverse design benchmarks",
        "",
        f"`python benchmarks/design_benchmark.py` ({meta['machine']}, Python {meta['python']}, {meta['date']}).",
        "Sections are run separately (`--only`) and kept in design_benchmark.json; on this shared 2-core "
        "machine other engineers' jobs ran beside them (load average 6-10), so times are pessimistic: "
        "where it matters a section gives the load and CPU seconds.",
        "",
    ]
    for name in SECTIONS:
        if name in texts:
            md += [f"## {name}", "", *texts[name], ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
