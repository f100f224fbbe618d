"""The descriptor comparison of Ustyuzhanin & Shibaev (2D Mater. 12, 015007, 2025), rebuilt from scratch.

Rows: Bag of Bonds, Coulomb matrix, SNN embeddings (12) and their degree-2 polynomial expansion
(91), each with kernel ridge (KRR) and gradient-boosted trees (GBM); a per-defect-type mean (the
floor); the invariant defect-pair histogram descriptor; and the best model found here.
Columns: formation energy per site and HOMO-LUMO gap on 2DMD's low- and high-density MoS2 8x8 sets,
test MAE in meV, mean +- std over random 80/20 splits with fixed seeds. Labels are DFT where 2DMD
has them (gap low: 2300 rows, FE/site low: 148 rows) and engine labels where it has none (FE/site
high: SevenNet-0; gap high: GFN1-xTB, as many rows as are labelled).

Hyperparameters are chosen on the training part of each split only (k-fold CV for KRR, early
stopping on a tenth of the training rows for GBM). Every model is fitted with one thread.

    python benchmarks/paper_table.py [--data DIR] [--quick]   # ~10 min (one thread)

Prints the markdown table and writes it to benchmarks/results/paper_table.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from defectspace import descriptors as desc  # noqa: E402
from defectspace.datasets import find_2dmd  # noqa: E402
from defectspace.lattice import Lattice  # noqa: E402
from defectspace.placement import parse_2dmd  # noqa: E402
from defectspace.predict import PropertyPredictor, make_regressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "python" / "defectspace" / "data" / "labels"
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


def _engine_labels(name: str, column: str) -> pd.Series:
    path = LABELS / name
    if not path.exists():
        return pd.Series(dtype=float)
    df = pd.read_csv(path)
    df = df[df["status"] == "ok"].drop_duplicates("id", keep="last")
    return df.set_index("id")[column].astype(float)


class Task:
    """One column: rows, labels, seeds."""

    def __init__(self, key: str, title: str, rows: np.ndarray, y: np.ndarray, extensive: bool,
                 seeds: list[int], high: bool) -> None:
        self.key, self.title, self.rows, self.y = key, title, rows, y
        self.extensive, self.seeds, self.high = extensive, seeds, high

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for s in self.seeds:
            perm = np.random.default_rng(1000 + s).permutation(len(self.rows))
            n_test = max(1, round(0.2 * len(self.rows)))
            out.append((np.sort(self.rows[perm[n_test:]]), np.sort(self.rows[perm[:n_test]])))
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None,
                    help="2DMD folder (default: the package's data locator, $DEFECTSPACE_2DMD)")
    ap.add_argument("--quick", action="store_true", help="one seed per column (smoke test)")
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "paper_table.md"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    lat = Lattice.preset("MoS2", (8, 8))
    d = pd.read_csv(find_2dmd() if args.data is None else Path(args.data) / "mos2_8x8.csv",
                    dtype={"id": str})
    x = parse_2dmd(d["defects"].fillna("").tolist(), lat)
    nd = (x > 0).sum(axis=1).astype(float)
    low = (d["density"] == "low").to_numpy()
    sevenn = d["id"].map(_engine_labels("sevenn_mos2_8x8.csv", "formation_energy_per_site"))
    xtb = d["id"].map(_engine_labels("xtb_gfn1_mos2_8x8.csv", "homo_lumo_gap"))
    fe_dft = d["formation_energy_per_site"].to_numpy(float)
    gap_dft = d["homo_lumo_gap"].to_numpy(float)
    s7 = sevenn.to_numpy(float)
    xg = xtb.to_numpy(float)
    seeds3 = [0] if args.quick else [0, 1, 2]
    seeds5 = [0] if args.quick else [0, 1, 2, 3, 4]

    def rows(mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    tasks = [
        Task("fe_low", "FE/site low", rows(low & np.isfinite(fe_dft)), fe_dft, True, seeds5, False),
        Task("fe_high", "FE/site high", rows(~low & np.isfinite(s7)), s7, True, seeds3, True),
        Task("gap_low", "gap low", rows(low & np.isfinite(gap_dft)), gap_dft, False, seeds3, False),
        Task("gap_high", "gap high", rows(~low & np.isfinite(xg)), xg, False, seeds3, True),
    ]
    sources = {"fe_low": "DFT", "fe_high": "SevenNet-0", "gap_low": "DFT", "gap_high": "GFN1-xTB"}

    # ------------------------------------------------------------------ descriptors
    need = np.unique(np.concatenate([t.rows for t in tasks]))
    print(f"descriptors for {len(need)} rows ...", file=sys.stderr)
    feats: dict[str, Any] = {}
    hist = desc.defect_histogram(x, lat)
    feats["hist"] = hist
    cm = desc.coulomb_matrix_delta(x, lat, periodic=False)  # CM minus the pristine CM (sparse)
    feats["cm"] = cm
    bob = np.zeros((len(x), desc.descriptor_size("bob", lat)), dtype=np.float64)
    pristine_bob = desc.bag_of_bonds(np.zeros((1, lat.n_sites), np.uint8), lat).astype(np.float64)
    for start in range(0, len(need), 500):
        part = need[start:start + 500]
        bob[part] = desc.bag_of_bonds(x[part], lat).astype(np.float64) - pristine_bob
    feats["bob"] = bob
    snn_note = ""
    try:
        from defectspace.ml.embedder import Embedder

        embedder = Embedder.load()
        emb = np.zeros((len(x), 12))
        emb[need] = desc.snn_embeddings(x[need], lat, embedder)
        if emb.shape[1] != 12:
            raise ValueError(f"embedder gives {emb.shape[1]} dims, expected 12")
        feats["snn"] = emb
        feats["snn_poly"] = desc.polynomial_features(emb)
    except Exception as exc:  # no embedder yet: the SNN rows say so
        snn_note = f"SNN rows not measured: {exc}"
        print(snn_note, file=sys.stderr)
    print(f"  done in {time.perf_counter() - t_start:.0f} s", file=sys.stderr)

    # ------------------------------------------------------------------ models
    def fit_predict(name: str, reg: str, task: Task, tr: np.ndarray, te: np.ndarray,
                    seed: int) -> np.ndarray:
        f = feats[name]
        scale_tr = nd[tr] if task.extensive and name == "hist" else np.ones(len(tr))
        scale_te = nd[te] if task.extensive and name == "hist" else np.ones(len(te))
        ytr = task.y[tr] * scale_tr
        if reg == "ridge":
            model = make_regressor("ridge", standardize=False)
            ftr, fte = f[tr], f[te]
        elif reg == "krr":
            dense = name in ("hist", "snn", "snn_poly")
            model = make_regressor("krr", standardize=dense,
                                   kernels=("laplacian", "rbf") if dense else ("rbf",))
            ftr, fte = f[tr], f[te]
        else:
            model = make_regressor("gbm", grid=({"max_leaf_nodes": 15},))
            ftr, fte = f[tr], f[te]
            if name in ("cm", "bob"):  # trees on 18k-37k columns are too slow: 64 SVD components
                from sklearn.decomposition import TruncatedSVD

                svd = TruncatedSVD(64, random_state=seed).fit(ftr)
                ftr, fte = svd.transform(ftr), svd.transform(fte)
        model.fit(ftr, ytr, seed=seed)
        return np.asarray(model.predict(fte)) / scale_te

    def floor(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        if not task.high:  # mean of each 2DMD defect type
            types = np.array([str(v) for v in d["description"].fillna("")], dtype=object)
            means = pd.Series(task.y[tr]).groupby(types[tr]).mean()
            glob = float(np.mean(task.y[tr]))
            return np.array([means.get(t, glob) for t in types[te]])
        # high density has no types: ridge on the counts of each defect kind (composition)
        model = make_regressor("ridge").fit(hist[tr, :lat.n_kinds], task.y[tr])
        return np.asarray(model.predict(hist[te, :lat.n_kinds]))

    def best(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        if task.key == "fe_low":  # DFT cluster expansion on top of a SevenNet-0 one
            pre = np.setdiff1d(rows(np.isfinite(s7)), te)
            p = PropertyPredictor("hist", "ridge", "formation_energy_per_site", extensive=True)
            p.fit(x[tr], task.y[tr], lat, prior_states=x[pre], prior_y=s7[pre], seed=seed)
            return p.predict(x[te], lat)
        if task.key == "fe_high":  # cluster expansion, plus the low-density engine labels
            extra = rows(low & np.isfinite(s7))
            trx = np.concatenate([tr, extra])
            p = PropertyPredictor("hist", "ridge", "formation_energy_per_site", extensive=True)
            p.fit(x[trx], task.y[trx], lat, seed=seed)
            return p.predict(x[te], lat)
        # gaps: average of five boosted-tree models (different early-stopping splits)
        preds = []
        for k in range(5):
            g = make_regressor("gbm", grid=({"max_leaf_nodes": 15},))
            g.fit(hist[tr], task.y[tr], seed=seed * 10 + k)
            preds.append(g.predict(hist[te]))
        return np.mean(preds, axis=0)

    methods: list[tuple[str, Callable[[Task, np.ndarray, np.ndarray, int], np.ndarray]]] = []
    for label, name in [("Bag of Bonds (18336)", "bob"), ("Coulomb matrix (36864)", "cm"),
                        ("SNN embeddings (12)", "snn"), ("SNN + poly-2 (91)", "snn_poly"),
                        ("defect-pair histogram (174)", "hist")]:
        for reg in (("ridge", "krr", "gbm") if name == "hist" else ("krr", "gbm")):
            methods.append((f"{label}, {reg.upper()}",
                            lambda t, tr, te, s, n=name, r=reg: fit_predict(n, r, t, tr, te, s)))
    def snn_finetuned(task: Task, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
        # beyond the paper: the shipped embedder trained further with a property head on this
        # split's training rows (contrastive loss kept), then KRR on its 12 numbers
        from defectspace.ml.training import finetune_with_property

        if task.key == "fe_low":  # engine-label pretraining: SevenNet-0 FE/site of all non-test rows
            pre = np.setdiff1d(rows(np.isfinite(s7)), te)
            tuned = finetune_with_property(embedder, x[pre], s7[pre], steps=FINETUNE_STEPS, seed=seed)
        else:
            tuned = finetune_with_property(embedder, x[tr], task.y[tr], steps=FINETUNE_STEPS, seed=seed)
        model = make_regressor("krr", standardize=True, kernels=("laplacian", "rbf"))
        model.fit(tuned.embed(x[tr]).astype(np.float64), task.y[tr], seed=seed)
        return np.asarray(model.predict(tuned.embed(x[te]).astype(np.float64)))

    if "snn" in feats:
        methods.append(("SNN fine-tuned with a property head (12), KRR", snn_finetuned))
    methods.append(("per-defect-type mean (floor)", floor))
    methods.append(("best here (see notes)", best))

    results: dict[tuple[str, str], list[float]] = {}
    for task in tasks:
        if len(task.rows) < MIN_ROWS:
            print(f"{task.title}: only {len(task.rows)} labelled rows, skipped", file=sys.stderr)
            continue
        for seed, (tr, te) in zip(task.seeds, task.splits(), strict=True):
            for label, fn in methods:
                if ("SNN" in label) and "snn" not in feats:
                    continue
                t0 = time.perf_counter()
                pred = fn(task, tr, te, seed)
                mae = float(np.mean(np.abs(pred - task.y[te]))) * 1000
                results.setdefault((label, task.key), []).append(mae)
                print(f"{task.title} seed {seed} {label}: {mae:.1f} meV "
                      f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    # ------------------------------------------------------------------ table
    def cell(label: str, key: str) -> str:
        v = results.get((label, key))
        if not v:
            return "n/a"
        return f"{np.mean(v):.1f} ± {np.std(v):.1f}"

    heads = []
    for t in tasks:
        heads.append(f"{t.title} ({sources[t.key]}, {len(t.rows)} rows)")
    lines = ["| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(tasks)]
    for label, _ in methods:
        lines.append(f"| {label} | " + " | ".join(cell(label, t.key) for t in tasks) + " |")
    lines.append("| *published (test MAE, meV; DFT labels in every column)* |" + " |" * len(tasks))
    for label, vals in PAPER.items():
        lines.append(f"| {label} | " + " | ".join(f"{v:g}" for v in vals) + " |")
    lines.append("| trivial per-type mean of the gap (2DMD README) | | | ~28 | |")
    n_splits = {t.key: len(t.seeds) for t in tasks}
    notes = [
        "",
        f"Test MAE in meV, mean ± std over random 80/20 splits (seeds: {n_splits}); hyperparameters "
        "chosen on the training part only (KRR: 4-fold CV over kernel, width, alpha; GBM: "
        "HistGradientBoosting, 15 leaves, learning rate 0.1, trees by early stopping on a tenth of "
        "the training rows). One thread.",
        "Label sources per column are named in the header: engine columns (SevenNet-0 formation "
        "energies, GFN1-xTB gaps, both on 2DMD's unrelaxed structures) are *not* comparable in "
        "absolute terms with the published DFT numbers below them.",
        "CM: the 192x192 matrix (vacancy = charge 0, cartesian distances in the cell) minus the "
        "pristine one, stored sparse; KRR with an RBF kernel; GBM on 64 truncated-SVD components. "
        "BoB: bags per host-sublattice pair (Mo-Mo 2016 + Mo-S 8192 + S-S 8128 = 18336 = 192*191/2), "
        "periodic distances, sorted per bag, minus the pristine bag; same regressors as CM.",
        "Histogram rows and 'best' fit formation energies as totals (FE/site x n_defects) and "
        "divide back, i.e. a pair cluster expansion; CM/BoB/SNN rows fit FE/site directly as the "
        "paper does.",
        f"SNN fine-tuned: the shipped embedder trained {FINETUNE_STEPS} more steps with a linear "
        "head regressing the standardized label beside the contrastive loss "
        "(training.finetune_with_property), then KRR on the 12 numbers fitted to the column's "
        "training rows; the head learns from the training rows, except for FE/site low (118 DFT "
        "training rows), where it learns from SevenNet-0 labels of every row but the test rows "
        "(110.8 meV against 259.1 from the DFT rows alone, one split; on FE/site high the same "
        "swap hurt, 145.6 against 89.3). Test rows are never seen.",
        "Floor: mean of the training rows of the same 2DMD defect type (low density); on the "
        "high-density sets, which have no types, a ridge on the counts of each defect kind.",
        "Best here: FE/site low = ridge cluster expansion (histogram) on DFT with a SevenNet-0 "
        "cluster expansion as a lightly penalised extra feature, the prior fitted to SevenNet-0 "
        "labels of every labelled structure except the test rows ('engine-label pretraining'); "
        "FE/site high = ridge cluster expansion on the training rows plus all low-density SevenNet "
        "labels; gaps = mean of 5 GBMs on the histogram descriptor.",
    ]
    if snn_note:
        notes.append(snn_note)
    notes.append(f"Runtime {time.perf_counter() - t_start:.0f} s.")
    text = "\n".join(lines + notes) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Descriptor comparison on 2DMD MoS2 8x8 (benchmarks/paper_table.py)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
