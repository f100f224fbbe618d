"""The descriptor comparison of Ustyuzhanin & Shibaev (2D Mater. 12, 015007, 2025), rebuilt from
scratch, with this package's models beside it, and the calibration of their uncertainties.

Rows: Bag of Bonds, Coulomb matrix, SNN embeddings (12) and their degree-2 polynomial expansion
(91), each with kernel ridge (KRR) and gradient-boosted trees (GBM); the invariant pair histogram;
the ``rich`` descriptor ensemble; a cluster expansion with local-environment counts; a small
message-passing network on the defects (gap); the per-defect-type mean (the floor); and the models
shipped as defaults, trained by their recipe (defectspace.predict.recipes) with the test rows
excluded from everything. Columns: formation energy per site and HOMO-LUMO gap on 2DMD's low- and
high-density MoS2 8x8 sets, test MAE in meV, mean +- std over random 80/20 splits with fixed seeds.
Labels are DFT where 2DMD has them (gap low: 2300 rows, FE/site low: 148 rows) and engine labels
where it has none (FE/site high: SevenNet-0; gap high: GFN1-xTB, as many rows as are labelled).

Hyperparameters are chosen on the training part of each split only. Every model is fitted with
one thread. Results are cached per (method, column, seed) in ``--cache`` so that an interrupted
run resumes; ``--methods`` re-runs some rows only.

    python benchmarks/paper_table.py [--data DIR] [--quick] [--methods SUBSTR,...] [--fresh]
    python benchmarks/paper_table.py --methods shipped --uncertainty-only   # the shipped recipes' rows

Writes benchmarks/results/paper_table.md and benchmarks/results/uncertainty.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from defectspace import descriptors as desc  # noqa: E402
from defectspace.predict import PropertyPredictor, interval_coverage, make_regressor  # noqa: E402
from defectspace.predict.recipes import (  # noqa: E402
    benchmark_split,
    fit_engine_correction,
    gap_members,
    load_labelled_rows,
    train_formation_energy_model,
    train_gap_model,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "python" / "defectspace" / "data" / "labels"
RESULTS = ROOT / "benchmarks" / "results"
PAPER = {  # Ustyuzhanin & Shibaev 2025 and Kazeev et al. 2023, as quoted in the 2DMD README
    "Bag of Bonds (SNN paper)": (956.8, 482.5, 612.1, 240.2),
    "Coulomb matrix (SNN paper)": (184.7, 198.8, 106.2, 159.4),
    "SNN embeddings, 12 dims (SNN paper)": (47.1, 382.7, 141.4, 158.4),
    "SNN + degree-2 polynomial, 91 dims (SNN paper)": (39.9, 139.6, 63.2, 110.1),
    "CatBoost + matminer (Kazeev et al. 2023)": (12.9, 90.1, 24.5, 76.9),
    "sparse-representation MEGNet (Kazeev et al. 2023)": (3.87, 21.2, 4.99, 44.6),
}
MIN_ROWS = 30
FINETUNE_STEPS = 500
Method = Callable[["Task", np.ndarray, np.ndarray, int], np.ndarray]


class Task:
    """One column: rows, labels, seeds."""

    def __init__(self, key: str, title: str, source: str, rows: np.ndarray, y: np.ndarray,
                 extensive: bool, seeds: list[int], high: bool) -> None:
        self.key, self.title, self.source, self.rows, self.y = key, title, source, rows, y
        self.extensive, self.seeds, self.high = extensive, seeds, high

    def split(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return benchmark_split(self.rows, seed)


class Cache:
    """(method, column, seed) -> test predictions (and uncertainties), kept in a JSON file."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists() and not fresh:
            self.data = json.loads(path.read_text())

    @staticmethod
    def key(method: str, task: Task | str, seed: int) -> str:
        if isinstance(task, Task):  # the rows are part of the key: a column grows as labels arrive
            return f"{method}|{task.key}|{seed}|{len(task.rows)}"
        return f"{method}|{task}|{seed}"

    def get(self, method: str, task: Task | str, seed: int) -> dict[str, Any] | None:
        return self.data.get(self.key(method, task, seed))

    def put(self, method: str, task: Task | str, seed: int, value: dict[str, Any]) -> None:
        self.data[self.key(method, task, seed)] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


def nearest_neighbours(f_tr: np.ndarray, y_tr: np.ndarray, f_te: np.ndarray, seed: int) -> np.ndarray:
    """Mean label of the k nearest training rows in standardised features, k by 5-fold CV (MAE).

    Low-density 2DMD rows form tight clusters (one per defect type) far apart in the embedding: a
    kernel ridge of one width either blurs the clusters or falls back to the mean between them,
    while neighbours need no width."""
    from sklearn.model_selection import KFold
    from sklearn.neighbors import KNeighborsRegressor

    mu, sd = f_tr.mean(axis=0), f_tr.std(axis=0)
    sd[sd == 0] = 1.0
    a, b = (f_tr - mu) / sd, (f_te - mu) / sd
    best = (np.inf, 1)
    for k in (1, 2, 3, 5, 8, 13):
        err = 0.0
        for i, j in KFold(5, shuffle=True, random_state=seed).split(a):
            if k > len(i):
                err = np.inf
                break
            err += float(np.abs(KNeighborsRegressor(k).fit(a[i], y_tr[i]).predict(a[j]) - y_tr[j]).sum())
        best = min(best, (err, k))
    return np.asarray(KNeighborsRegressor(best[1]).fit(a, y_tr).predict(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None,
                    help="2DMD folder (default: the package's data locator, $DEFECTSPACE_2DMD)")
    ap.add_argument("--quick", action="store_true", help="one seed per column (smoke test)")
    ap.add_argument("--methods", default="", help="comma-separated substrings: run only these rows")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "defectspace" / "paper_table.json"))
    ap.add_argument("--fresh", action="store_true", help="ignore the cache")
    ap.add_argument("--labels", default=str(LABELS),
                    help="engine label folder (default: the package's; a snapshot keeps a long run "
                         "consistent while the labeller appends)")
    ap.add_argument("--no-write", action="store_true", help="print the tables only")
    ap.add_argument("--uncertainty-only", action="store_true",
                    help="write uncertainty.md only (with --methods shipped: the shipped recipes alone)")
    ap.add_argument("--property-models", default=None,
                    help="folder with split<SEED>/ property-aware embedders trained without that split's "
                         "test rows")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    cache = Cache(Path(args.cache), args.fresh)

    data = load_labelled_rows(args.data, args.labels)
    lat = data.lattice
    x = data.states
    nd = (x > 0).sum(axis=1).astype(float)
    low = ~data.high
    s7, xg = data.fe_sevenn, data.gap_xtb
    fe_dft, gap_dft = data.fe_dft, data.gap_dft
    d = pd.read_csv(Path(args.data) / "mos2_8x8.csv" if args.data else _find_csv(), dtype={"id": str})
    types = np.array([str(v) for v in d["description"].fillna("")], dtype=object)
    seeds3 = [0] if args.quick else [0, 1, 2]
    seeds5 = [0] if args.quick else [0, 1, 2, 3, 4]

    def rows(mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    tasks = [
        Task("fe_low", "FE/site low", "DFT", rows(low & np.isfinite(fe_dft)), fe_dft, True, seeds5, False),
        Task("fe_high", "FE/site high", "SevenNet-0", rows(~low & np.isfinite(s7)), s7, True, seeds3, True),
        Task("gap_low", "gap low", "DFT", rows(low & np.isfinite(gap_dft)), gap_dft, False, seeds3, False),
        Task("gap_high", "gap high", "GFN1-xTB", rows(~low & np.isfinite(xg)), xg, False, seeds3, True),
    ]
    by_key = {t.key: t for t in tasks}

    # ------------------------------------------------------------------ descriptors (lazily)
    feats: dict[str, Any] = {}
    notes: list[str] = []

    def feature(name: str) -> Any:
        if name in feats:
            return feats[name]
        need = np.unique(np.concatenate([t.rows for t in tasks]))
        if name == "hist":
            feats[name] = desc.defect_histogram(x, lat)
        elif name == "rich":
            feats[name] = desc.rich_descriptor(x, lat)
        elif name == "cm":  # CM minus the pristine CM (sparse)
            feats[name] = desc.coulomb_matrix_delta(x, lat, periodic=False)
        elif name == "bob":
            bob = np.zeros((len(x), desc.descriptor_size("bob", lat)), dtype=np.float64)
            pristine = desc.bag_of_bonds(np.zeros((1, lat.n_sites), np.uint8), lat).astype(np.float64)
            for start in range(0, len(need), 500):
                part = need[start:start + 500]
                bob[part] = desc.bag_of_bonds(x[part], lat).astype(np.float64) - pristine
            feats[name] = bob
        elif name in ("snn", "snn_poly"):
            from defectspace.ml.embedder import Embedder

            emb = np.zeros((len(x), 12))
            emb[need] = desc.snn_embeddings(x[need], lat, Embedder.load())
            feats["snn"], feats["snn_poly"] = emb, desc.polynomial_features(emb)
        elif name == "env":
            feats[name] = desc.environment_counts(x, lat)
        else:
            raise KeyError(name)
        return feats[name]

    # ------------------------------------------------------------------ methods
    def fit_predict(name: str, reg: str, task: Task, tr: np.ndarray, te: np.ndarray,
                    seed: int) -> np.ndarray:
        f = feature(name)
        per_defect = task.extensive and name in ("hist", "rich")
        scale_tr = nd[tr] if per_defect else np.ones(len(tr))
        scale_te = nd[te] if per_defect else np.ones(len(te))
        ytr = task.y[tr] * scale_tr
        w = 1.0 / scale_tr**2
        ftr, fte = f[tr], f[te]
        if reg == "ridge":
            model = make_regressor("ridge", standardize=False, fit_intercept=not per_defect)
        elif reg == "krr":
            dense = name in ("hist", "snn", "snn_poly")
            model = make_regressor("krr", standardize=dense, random_state=seed,
                                   kernels=("laplacian", "rbf") if dense else ("rbf",))
        else:
            model = make_regressor("gbm", grid=({"max_leaf_nodes": 15},), random_state=seed)
            if name in ("cm", "bob"):  # trees on 18k-37k columns are too slow: 64 SVD components
                from sklearn.decomposition import TruncatedSVD

                svd = TruncatedSVD(64, random_state=seed).fit(ftr)
                ftr, fte = svd.transform(ftr), svd.transform(fte)
        model.fit(ftr, ytr, sample_weight=w)
        return np.asarray(model.predict(fte)) / scale_te

    def floor(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        if not task.high:  # mean of each 2DMD defect type
            means = pd.Series(task.y[tr]).groupby(types[tr]).mean()
            glob = float(np.mean(task.y[tr]))
            return np.array([means.get(t, glob) for t in types[te]])
        # high density has no types: ridge on the counts of each defect kind (composition)
        hist = feature("hist")
        model = make_regressor("ridge").fit(hist[tr, :lat.n_kinds], task.y[tr])
        return np.asarray(model.predict(hist[te, :lat.n_kinds]))

    def rich_ensemble(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        p = PropertyPredictor("rich", "ensemble", task.key, extensive=task.extensive, regressor_options={
            "members": gap_members(lat, kernel_ridge=True), "resample": "subsample"})
        p.fit(x[tr], task.y[tr], lat, seed=seed)
        return p.predict(x[te], lat)

    def environment_ce(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        # ridge cluster expansion on the histogram plus local-environment counts (many-body terms),
        # the environment block's extra penalty chosen by 5-fold CV on the training rows; on FE low
        # a SevenNet-0 cluster expansion of every non-test row is the prior (as in the shipped model)
        hist, env = feature("hist"), feature("env")
        a = np.hstack([hist, env])
        extra = np.zeros(len(x))
        if task.key == "fe_low":
            pre = np.setdiff1d(rows(np.isfinite(s7)), te)
            pen0 = np.ones(hist.shape[1])
            pen0[:lat.n_kinds] = 1e-4
            prior = make_regressor("ridge", standardize=False, fit_intercept=False, penalty=pen0)
            prior.fit(hist[pre], s7[pre] * nd[pre], sample_weight=1 / nd[pre] ** 2)
            extra = prior.predict(hist)
            a = np.hstack([extra[:, None], a])
        off = 1 if task.key == "fe_low" else 0
        scale = nd if task.extensive else np.ones(len(x))

        def fit(mult: float, a_rows: np.ndarray) -> Any:
            pen = np.ones(a.shape[1])
            pen[:off + lat.n_kinds] = 1e-4
            pen[off + hist.shape[1]:] = mult
            m = make_regressor("ridge", standardize=False, penalty=pen, fit_intercept=not task.extensive)
            return m.fit(a[a_rows], task.y[a_rows] * scale[a_rows], sample_weight=1 / scale[a_rows] ** 2)

        rng = np.random.default_rng(seed)
        folds = np.array_split(rng.permutation(len(tr)), 5)
        best = (np.inf, 1.0)
        for mult in (10.0, 30.0, 100.0, 300.0):
            err = 0.0
            for f in folds:
                inner = tr[np.setdiff1d(np.arange(len(tr)), f)]
                err += float(np.abs(fit(mult, inner).predict(a[tr[f]]) / scale[tr[f]] - task.y[tr[f]]).sum())
            best = min(best, (err, mult))
        return fit(best[1], tr).predict(a[te]) / scale[te]

    def network(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        from defectspace.predict.network import fit_pair_network

        preds = []
        for k in range(2):
            net = fit_pair_network(x[tr], task.y[tr], lat, seed=seed * 10 + k)
            preds.append(net.predict(x[te]))
        return np.mean(preds, axis=0)

    def best_gap_low(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        a = run_cached("rich descriptor (644): boosted trees + kernel ridge", rich_ensemble, task, seed)
        b = run_cached("message-passing network on the defects (2 seeds)", network, task, seed)
        return 0.5 * (np.asarray(a["pred"]) + np.asarray(b["pred"]))

    def snn_finetuned(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        # the shipped embedder trained further with a property head on this split's training rows
        # (contrastive loss kept), then KRR on its 12 numbers
        from defectspace.ml.embedder import Embedder
        from defectspace.ml.training import finetune_with_property

        embedder = Embedder.load()
        if task.key == "fe_low":  # engine-label pretraining: SevenNet-0 FE/site of all non-test rows
            pre = np.setdiff1d(rows(np.isfinite(s7)), te)
            tuned = finetune_with_property(embedder, x[pre], s7[pre], steps=FINETUNE_STEPS, seed=seed)
        else:
            tuned = finetune_with_property(embedder, x[tr], task.y[tr], steps=FINETUNE_STEPS, seed=seed)
        model = make_regressor("krr", standardize=True, kernels=("laplacian", "rbf"), random_state=seed)
        model.fit(tuned.embed(x[tr]).astype(np.float64), task.y[tr])
        return np.asarray(model.predict(tuned.embed(x[te]).astype(np.float64)))

    property_embeddings: dict[int, np.ndarray] = {}

    def property_embedding(kind: str) -> Method:
        def fn(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
            from defectspace.ml.embedder import Embedder

            if args.property_models is None:
                raise ValueError("needs --property-models (per-split embedders)")
            if seed not in property_embeddings:
                folder = Path(args.property_models) / f"split{seed}"
                property_embeddings[seed] = Embedder.load(folder).embed(x).astype(np.float64)
            e = property_embeddings[seed]
            if kind == "knn":
                return nearest_neighbours(e[tr], task.y[tr], e[te], seed)
            f = desc.polynomial_features(e) if kind == "poly" else e
            model = make_regressor("krr", standardize=True, kernels=("laplacian", "rbf"), random_state=seed)
            model.fit(f[tr], task.y[tr])
            return np.asarray(model.predict(f[te]))
        return fn

    methods: list[tuple[str, Method, tuple[str, ...]]] = []
    all_cols = tuple(t.key for t in tasks)
    for label, name in [("Bag of Bonds (18336)", "bob"), ("Coulomb matrix (36864)", "cm"),
                        ("SNN embeddings (12)", "snn"), ("SNN + poly-2 (91)", "snn_poly"),
                        ("defect-pair histogram (174)", "hist")]:
        for reg in (("ridge", "krr", "gbm") if name == "hist" else ("krr", "gbm")):
            methods.append((f"{label}, {reg.upper()}",
                            lambda t, tr, te, s, n=name, r=reg: fit_predict(n, r, t, tr, te, s), all_cols))
    methods.append(("SNN embeddings (12), nearest neighbours",
                    lambda t, tr, te, s: nearest_neighbours(feature("snn")[tr], t.y[tr],
                                                            feature("snn")[te], s), all_cols))
    methods.append(("SNN fine-tuned with a property head (12), KRR", snn_finetuned, all_cols))
    methods.append(("property-aware SNN embedding (12), KRR", property_embedding("krr"), all_cols))
    methods.append(("property-aware SNN embedding + poly-2 (91), KRR", property_embedding("poly"), all_cols))
    methods.append(("property-aware SNN embedding (12), nearest neighbours", property_embedding("knn"),
                    all_cols))
    methods.append(("rich descriptor (644): boosted trees + kernel ridge", rich_ensemble, all_cols))
    methods.append(("cluster expansion + local environments (ridge)", environment_ce, all_cols))
    methods.append(("message-passing network on the defects (2 seeds)", network, ("gap_low",)))
    methods.append(("per-defect-type mean (floor)", floor, all_cols))
    best_rows = {
        "fe_low": "cluster expansion + local environments (ridge)",
        "fe_high": "cluster expansion + local environments (ridge)",
        "gap_low": "mean of the rich ensemble and the network",
        "gap_high": "rich descriptor (644): boosted trees + kernel ridge",
    }
    methods.append(("mean of the rich ensemble and the network", best_gap_low, ("gap_low",)))

    # ------------------------------------------------------------------ shipped recipes (with std)
    gap_models: dict[int, PropertyPredictor] = {}

    def shipped(task: Task, seed: int) -> dict[str, Any]:
        tr, te = task.split(seed)
        if task.key == "fe_low":
            p = train_formation_energy_model(data, exclude=te, seed=seed)
            m, s = p.predict_with_std(x[te], lat)
            return {"pred": m.tolist(), "std": s.tolist()}
        if task.key == "fe_high":  # engine column: the same cluster expansion on SevenNet-0 labels
            extra = rows(low & np.isfinite(s7))
            trx = np.concatenate([tr, extra])
            p = PropertyPredictor("hist", "ridge", "formation_energy_per_site", extensive=True)
            p.fit(x[trx], s7[trx], lat, seed=seed, calibration_folds=5)
            m, s = p.predict_with_std(x[te], lat)
            return {"pred": m.tolist(), "std": s.tolist()}
        # one gap model per seed serves both gap columns: both test sets held out
        _, te_low = by_key["gap_low"].split(seed)
        _, te_high = by_key["gap_high"].split(seed)
        if seed not in gap_models:
            gap_models[seed] = train_gap_model(data, exclude=np.concatenate([te_low, te_high]), seed=seed)
        p = gap_models[seed]
        m, s = p.predict_with_std(x[te], lat)
        out: dict[str, Any] = {"pred": m.tolist(), "std": s.tolist()}
        if task.key == "gap_high":
            keep = np.ones(len(x), bool)
            keep[np.concatenate([te_low, te_high])] = False
            corr = fit_engine_correction(xg[keep], gap_dft[keep])
            out["corrected"] = corr.apply(xg[te]).tolist()
            floor_model = make_regressor("ridge").fit(feature("hist")[tr, :lat.n_kinds], corr.apply(xg[tr]))
            out["floor"] = floor_model.predict(feature("hist")[te, :lat.n_kinds]).tolist()
        return out

    SHIPPED = "shipped default (recipe, test rows excluded)"

    # ------------------------------------------------------------------ run
    selected = [s for s in args.methods.split(",") if s]

    def wanted(label: str) -> bool:
        return not selected or any(s.lower() in label.lower() for s in selected)

    def run_cached(label: str, fn: Method, task: Task, seed: int) -> dict[str, Any]:
        hit = cache.get(label, task, seed)
        if hit is not None:
            return hit
        tr, te = task.split(seed)
        t0 = time.perf_counter()
        pred = np.asarray(fn(task, tr, te, seed), dtype=np.float64)
        out = {"pred": pred.tolist(), "seconds": time.perf_counter() - t0}
        cache.put(label, task, seed, out)
        return out

    results: dict[tuple[str, str], list[float]] = {}
    compute_s = 0.0  # every row's fit and prediction time, whether cached or computed now
    for task in tasks:
        if len(task.rows) < MIN_ROWS:
            print(f"{task.title}: only {len(task.rows)} labelled rows, skipped", file=sys.stderr)
            continue
        for seed in task.seeds:
            _, te = task.split(seed)
            for label, fn, cols in [*methods, (SHIPPED, lambda *a: np.zeros(0), all_cols)]:
                if task.key not in cols:
                    continue
                hit = cache.get(label, task, seed)
                if hit is None and not wanted(label):
                    continue
                try:
                    if label == SHIPPED:
                        if hit is None:
                            t0 = time.perf_counter()
                            hit = shipped(task, seed)
                            hit["seconds"] = time.perf_counter() - t0
                            cache.put(label, task, seed, hit)
                        out = hit
                    else:
                        out = run_cached(label, fn, task, seed)
                except Exception as exc:  # a row that cannot run here says why in the notes
                    note = f"{label}: not measured ({type(exc).__name__}: {exc})"
                    if note not in notes:
                        notes.append(note)
                        print(note, file=sys.stderr)
                    continue
                mae = float(np.mean(np.abs(np.asarray(out["pred"]) - task.y[te]))) * 1000
                compute_s += float(out.get("seconds", 0.0))
                results.setdefault((label, task.key), []).append(mae)
                print(f"{task.title} seed {seed} {label}: {mae:.2f} meV ({out.get('seconds', 0):.0f} s)",
                      file=sys.stderr)

    # ------------------------------------------------------------------ paper table
    def cell(label: str, key: str) -> str:
        v = results.get((label, key))
        if not v or len(v) < len(by_key[key].seeds):
            return "n/a" if not v else f"{np.mean(v):.2f} ({len(v)} of {len(by_key[key].seeds)} splits)"
        return f"{np.mean(v):.2f} ± {np.std(v):.2f}"

    heads = [f"{t.title} ({t.source}, {len(t.rows)} rows)" for t in tasks]
    lines = ["| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(tasks)]
    for label, _, _ in [*methods, (SHIPPED, None, all_cols)]:
        lines.append(f"| {label} | " + " | ".join(cell(label, t.key) for t in tasks) + " |")
    lines.append("| **best here** (fixed per column, see notes) | "
                 + " | ".join(f"**{cell(best_rows[t.key], t.key)}**" for t in tasks) + " |")
    lines.append("| *published (test MAE, meV; DFT labels in every column)* |" + " |" * len(tasks))
    for label, vals in PAPER.items():
        lines.append(f"| {label} | " + " | ".join(f"{v:g}" for v in vals) + " |")
    lines.append("| trivial per-type mean of the gap (2DMD README) | | | ~28 | |")
    n_splits = {t.key: len(t.seeds) for t in tasks}
    text_notes = [
        "",
        f"Test MAE in meV, mean ± std over random 80/20 splits (seeds: {n_splits}); the test rows of a "
        "split are never used for choosing anything (hyperparameters by cross-validation or early "
        "stopping on training rows). One thread.",
        "Engine columns (SevenNet-0 formation energies, GFN1-xTB gaps, both on 2DMD's unrelaxed "
        "structures) are *not* comparable in absolute terms with the published DFT numbers below.",
        "CM, BoB, SNN, histogram rows: as in the paper (KRR with kernel, width and alpha by 4-fold CV; "
        "GBM = HistGradientBoosting, 15 leaves, early stopping; CM/BoB minus the pristine matrix, GBM "
        "on 64 truncated-SVD components). Histogram rows fit formation energies as totals with a "
        "per-site loss (a pair cluster expansion).",
        "Rich ensemble: the `rich` descriptor (histogram, Gaussian-smeared pair distributions, "
        "nearest-pair distances); boosted trees on two column sets (3 subsampled copies each) and "
        "Laplacian KRR on counts + nearest-pair distances, averaged (defectspace.predict.recipes."
        "gap_members(kernel_ridge=True)).",
        "Cluster expansion + local environments: ridge on the histogram plus, for each defect kind, "
        "histograms of how many defects of each kind sit within 2.5/3.3/4.1/5.6 Å of it "
        "(descriptors.environment_counts: many-body terms), that block's penalty by 5-fold CV on the "
        "training rows; on FE low a SevenNet-0 cluster expansion of every non-test row is the prior.",
        "Network: a 3-layer message-passing network on the defects (edge features: Gaussian "
        "expansions of the minimum-image distance and height difference; defectspace.predict.network), "
        "2 seeds averaged, the epoch kept by MAE on a tenth of the training rows.",
        "Best here is fixed per column in advance (not picked by test MAE): FE low and high = "
        "cluster expansion + local environments; gap low = mean of the rich ensemble and the network; "
        "gap high = rich ensemble.",
        "Shipped default: the recipe of the shipped model (defectspace.predict.recipes) with the "
        "column's test rows excluded from labels, prior, engine correction and calibration: FE low "
        "= DFT ridge cluster expansion with a SevenNet-0 prior (linear in the histogram, for the "
        "integer program); gap = GBM ensemble on the rich descriptor learning from DFT and from "
        "xTB corrected to DFT (its test MAE on gap high is against the raw xTB gaps, which are "
        "~0.1 eV off the DFT scale); FE high = the same cluster expansion fitted to SevenNet-0 "
        "labels. Coverage of their uncertainties: uncertainty.md.",
        "Floor: mean of the training rows of the same 2DMD defect type (low density); on the "
        "high-density sets, which have no types, a ridge on the counts of each defect kind.",
        f"SNN fine-tuned: the shipped embedder trained {FINETUNE_STEPS} more steps with a property head "
        "on the column's training rows (FE low: on SevenNet-0 labels of every non-test row), then KRR. "
        "Property-aware SNN (only with --property-models): an embedder per split trained with the "
        "contrastive loss plus property heads without any column's test rows of that split "
        "(scripts/train_property_embedder.py --exclude-split SEED), then KRR on its 12 numbers or their "
        "degree-2 expansion, or the mean of the k nearest training rows in the 12 numbers (k by 5-fold "
        "CV). The shipped `mos2_8x8_property` is the same recipe on every row.",
    ]
    text_notes += notes
    text_notes.append(f"Runtime of this invocation {time.perf_counter() - t_start:.0f} s (cached rows "
                      f"not recomputed); the rows' own fits and predictions, cached or not, "
                      f"{compute_s:.0f} s (descriptors and the property-aware embedders' training not "
                      "counted).")
    table = "\n".join(lines + text_notes) + "\n"
    print(table)

    # ------------------------------------------------------------------ uncertainty table
    ulines = ["| column | test rows | MAE (meV) | mean std (meV) | 68 % interval | 95 % interval |",
              "|---|---|---|---|---|---|"]
    extra_lines = []
    for task in tasks:
        ys, ms, ss = [], [], []
        hi_mae, fl_r, fl_mae, raw_r = [], [], [], []
        for seed in task.seeds:
            hit = cache.get(SHIPPED, task, seed)
            if hit is None:
                continue
            _, te = task.split(seed)
            target = np.asarray(hit.get("corrected", task.y[te]))
            ys.append(target)
            ms.append(np.asarray(hit["pred"]))
            ss.append(np.asarray(hit["std"]))
            if task.key == "gap_high":
                m = np.asarray(hit["pred"])
                raw_r.append(np.corrcoef(m, task.y[te])[0, 1])
                hi_mae.append(np.mean(np.abs(m - target)) * 1000)
                fl = np.asarray(hit["floor"])
                fl_r.append(np.corrcoef(fl, task.y[te])[0, 1])
                fl_mae.append(np.mean(np.abs(fl - target)) * 1000)
        if not ys:
            continue
        y, m, s = np.concatenate(ys), np.concatenate(ms), np.concatenate(ss)
        cov = interval_coverage(y, m, s)
        label = f"{task.title} ({'xTB corrected to DFT' if task.key == 'gap_high' else task.source})"
        ulines.append(f"| {label} | {len(y)} ({len(ys)} splits) | {1000 * np.mean(np.abs(m - y)):.1f} | "
                      f"{1000 * np.mean(s):.1f} | {100 * cov['68%']:.1f} % | {100 * cov['95%']:.1f} % |")
        if raw_r:
            extra_lines.append(
                f"Gap model on held-out high-density rows ({len(y)} rows over {len(raw_r)} splits): "
                f"Pearson r with the GFN1-xTB gaps {np.mean(raw_r):.3f} ± {np.std(raw_r):.3f} (per split "
                f"{', '.join(f'{v:.3f}' for v in raw_r)}), MAE against the xTB gaps corrected to DFT "
                f"{np.mean(hi_mae):.1f} meV; per-composition baseline (ridge on the defect counts, same "
                f"rows): r {np.mean(fl_r):.3f}, MAE {np.mean(fl_mae):.1f} meV. Before this change the "
                f"shipped gap model (DFT rows only) had r = -0.08 on these rows.")
    unc = "\n".join([
        "# Calibrated uncertainty of the shipped models' recipes (benchmarks/paper_table.py)", "",
        "Each split's model is trained by the shipped recipe with that split's test rows excluded from "
        "everything (labels, engine prior, engine correction, calibration); `predict_with_std` on the "
        "test rows gives mean and 1-sigma std; the table pools the test rows of all splits and reports "
        "the fraction inside mean ± 1 std (nominal 68.3 %) and mean ± 1.96 std (nominal 95 %).", "",
        *ulines, "", *extra_lines, "",
        "The std is the ensemble's spread (gap: GBM copies on subsamples; FE: the ridge's posterior "
        "standard deviation) mapped by a calibration fitted on 5-fold out-of-fold residuals of the "
        "training rows (defectspace.predict.uncertainty), widened in quadrature outside the training "
        "domain (defectspace.predict.domain). FE high is an engine column: a ridge cluster expansion "
        "fitted to SevenNet-0 labels, calibrated the same way.", ""])
    print(unc)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        if not args.uncertainty_only:
            (RESULTS / "paper_table.md").write_text(
                "# Descriptor comparison on 2DMD MoS2 8x8 (benchmarks/paper_table.py)\n\n" + table)
        (RESULTS / "uncertainty.md").write_text(unc)
    return 0


def _find_csv() -> Path:
    from defectspace.datasets import find_2dmd

    return find_2dmd()


if __name__ == "__main__":
    raise SystemExit(main())
