"""How the shipped MoS2 8x8 predictors are trained: DFT labels where 2DMD has them, engine labels
brought onto the DFT scale elsewhere.

2DMD has DFT gaps for 2300 and DFT formation energies for 148 of its 5933 low-density (1-3
defect) rows, and no label for its 500 high-density (4-24 defect) rows. The package's own engines
label the rest (``data/labels``): SevenNet-0 formation energies for all 6433 rows, GFN1-xTB gaps for
the high-density rows (as far as the background labeller has come) and for ~100 low-density rows
beside their DFT gaps.

* Gap (:func:`train_gap_model`): the xTB gaps of high-density rows are mapped to the DFT scale by
  a straight line fitted on the rows that have both (:func:`fit_engine_correction`); the model, an
  ensemble of boosted trees and kernel ridge on the ``rich`` descriptor, learns from the DFT rows
  and the corrected high-density rows together, so its training domain spans 1-24 defects.
* Formation energy per site (:func:`train_formation_energy_model`): a ridge pair cluster
  expansion on the ``hist`` descriptor (linear, so its minimum at fixed composition is an integer
  program, :mod:`defectspace.pipeline.groundstate`) fitted to the DFT rows, with a SevenNet-0
  cluster expansion of every row as its engine prior: the DFT rows learn the engine-to-DFT
  correction, the prior carries it to every density. Outside the DFT rows' domain its uncertainty
  is widened by the measured gap between the model and the SevenNet-0 labels corrected to DFT.

``exclude`` (row indices) keeps rows out of everything (labels, prior, correction, calibration):
how benchmarks hold test rows out. ``scripts/train_predictors.py`` writes the shipped models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import descriptors as desc
from defectspace.lattice import Lattice
from defectspace.predict.predictor import PropertyPredictor

Array = NDArray[np.float64]

LABELS_DIR = Path(__file__).resolve().parents[1] / "data" / "labels"
"""Where the engine labels live (read only here)."""

GAP = "homo_lumo_gap"
FORMATION = "formation_energy_per_site"


@dataclass(frozen=True)
class LabelledRows:
    """The 6433 MoS2 8x8 rows of 2DMD with every label the package has for them (NaN: none)."""

    ids: list[str]
    """2DMD structure ids."""
    states: NDArray[np.uint8]
    """(n, 192) placements."""
    high: NDArray[np.bool_]
    """(n,) whether a row belongs to the high-density set."""
    gap_dft: Array
    """(n,) DFT HOMO-LUMO gap, eV."""
    fe_dft: Array
    """(n,) DFT formation energy per site, eV."""
    gap_xtb: Array
    """(n,) GFN1-xTB HOMO-LUMO gap, eV."""
    fe_sevenn: Array
    """(n,) SevenNet-0 formation energy per site, eV."""
    lattice: Lattice
    """The lattice of ``states``."""


def _engine_column(path: Path, column: str, ids: Sequence[str]) -> Array:
    import pandas as pd

    out = np.full(len(ids), np.nan)
    if not path.exists():
        return out
    df = pd.read_csv(path, dtype={"id": str})
    df = df[df["status"] == "ok"].drop_duplicates("id", keep="last").set_index("id")[column]
    out[:] = pd.Series(list(ids)).map(df.astype(float)).to_numpy(np.float64)
    return out


def load_labelled_rows(data: str | Path | None = None, labels_dir: str | Path = LABELS_DIR) -> LabelledRows:
    """2DMD's MoS2 rows (``data``: its CSV or folder; default :func:`defectspace.datasets.find_2dmd`)
    joined with the engine labels in ``labels_dir``."""
    import pandas as pd

    from defectspace.datasets import find_2dmd
    from defectspace.placement import parse_2dmd

    path = find_2dmd() if data is None else Path(data)
    if path.is_dir():
        path = path / "mos2_8x8.csv"
    d = pd.read_csv(path, dtype={"id": str})
    lattice = Lattice.preset("MoS2", (8, 8))
    ids = d["id"].tolist()
    labels = Path(labels_dir)
    return LabelledRows(
        ids, parse_2dmd(d["defects"].fillna("").tolist(), lattice), (d["density"] == "high").to_numpy(),
        d["homo_lumo_gap"].to_numpy(np.float64), d["formation_energy_per_site"].to_numpy(np.float64),
        _engine_column(labels / "xtb_gfn1_mos2_8x8.csv", GAP, ids),
        _engine_column(labels / "sevenn_mos2_8x8.csv", FORMATION, ids), lattice)


@dataclass(frozen=True)
class EngineCorrection:
    """An engine label mapped to the DFT scale: ``dft ~ intercept + slope * engine`` (intensive),
    or per site ``sum_k a_k n_k / n + slope * engine`` (extensive: per-kind reference energies)."""

    slope: float
    intercept: float
    per_kind: tuple[float, ...]
    """a_k per defect kind (extensive only; empty otherwise)."""
    residual_rms: float
    """RMS of DFT minus corrected engine label on the rows it was fitted to, eV."""
    n_rows: int
    engine: str = ""
    """The engine whose labels it maps (``xtb``, ``sevenn``); design's verification maps that
    engine's values to the model's scale with it."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineCorrection:
        """The inverse of :meth:`to_dict`."""
        return cls(float(d["slope"]), float(d["intercept"]), tuple(float(v) for v in d.get("per_kind", ())),
                   float(d["residual_rms"]), int(d["n_rows"]), str(d.get("engine", "")))

    def apply(self, engine: ArrayLike, counts: ArrayLike | None = None) -> Array:
        """Corrected labels; ``counts`` (n, n_kinds) defect amounts for an extensive correction."""
        e = np.asarray(engine, dtype=np.float64)
        out: Array = self.intercept + self.slope * e
        if self.per_kind:
            if counts is None:
                raise ValueError("this correction is per defect kind: give the defect counts")
            c = np.asarray(counts, dtype=np.float64)
            out = out + (c @ np.asarray(self.per_kind)) / np.maximum(c.sum(axis=1), 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["per_kind"] = list(self.per_kind)
        return d


def fit_engine_correction(engine: ArrayLike, dft: ArrayLike, counts: ArrayLike | None = None,
                          name: str = "") -> EngineCorrection:
    """Least-squares correction of engine labels to DFT on rows that have both (see the class)."""
    e = np.asarray(engine, dtype=np.float64)
    y = np.asarray(dft, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(y)
    if ok.sum() < 3:
        raise ValueError(f"an engine correction needs at least 3 rows with both labels, got {int(ok.sum())}")
    if counts is None:
        a = np.column_stack([np.ones(int(ok.sum())), e[ok]])
        coef = np.linalg.lstsq(a, y[ok], rcond=None)[0]
        res = y[ok] - a @ coef
        return EngineCorrection(float(coef[1]), float(coef[0]), (), float(np.sqrt(np.mean(res**2))),
                                int(ok.sum()), name)
    c = np.asarray(counts, dtype=np.float64)[ok]
    a = np.column_stack([c / np.maximum(c.sum(axis=1, keepdims=True), 1.0), e[ok]])
    coef = np.linalg.lstsq(a, y[ok], rcond=None)[0]
    res = y[ok] - a @ coef
    return EngineCorrection(float(coef[-1]), 0.0, tuple(float(v) for v in coef[:-1]),
                            float(np.sqrt(np.mean(res**2))), int(ok.sum()), name)


def gap_members(lattice: Lattice, copies: int = 3, kernel_ridge: bool = False) -> list[dict[str, Any]]:
    """The gap ensemble on the ``rich`` descriptor: boosted trees on the histogram with its smeared
    distributions and boosted trees on all of it, each trained ``copies`` times on 80 % subsamples;
    with ``kernel_ridge``, also Laplacian kernel ridge on the defect counts and nearest-pair
    distances (0.3-0.4 meV better at low density, but ~10x slower to predict: the benchmarks use
    it, the shipped model does not)."""
    b = desc.rich_blocks(lattice)
    nk = lattice.n_kinds
    gbm = {"grid": ({"max_leaf_nodes": 15},), "max_iter": 3000, "learning_rate": 0.1}
    members: list[dict[str, Any]] = [
        {"kind": "gbm", "settings": gbm, "columns": [[b["hist"][0], b["smeared"][1]]],
         "copies": copies},
        {"kind": "gbm", "settings": gbm, "columns": None, "copies": copies},
    ]
    if kernel_ridge:
        members.append({"kind": "krr", "settings": {"kernels": ("laplacian",)},
                        "columns": [[0, nk], list(b["nearest"])], "copies": 1, "resample": "none"})
    return members


def _keep(n: int, exclude: Sequence[int] | NDArray[np.int64]) -> NDArray[np.bool_]:
    keep = np.ones(n, dtype=bool)
    keep[np.asarray(exclude, dtype=np.int64)] = False
    return keep


def train_gap_model(rows: LabelledRows, *, exclude: Sequence[int] | NDArray[np.int64] = (),
                    seed: int = 0, calibration_folds: int = 5,
                    members: Sequence[Mapping[str, Any]] | None = None,
                    use_engine: bool = True) -> PropertyPredictor:
    """The gap model: DFT gaps, plus high-density GFN1-xTB gaps corrected to DFT (``use_engine``)."""
    keep = _keep(len(rows.ids), exclude)
    dft = keep & np.isfinite(rows.gap_dft)
    x = rows.states[dft]
    y = rows.gap_dft[dft]
    source = f"DFT HOMO-LUMO gaps of 2DMD (PBE), {int(dft.sum())} low-density MoS2 8x8 rows"
    info: dict[str, Any] = {}
    if use_engine:
        corr = fit_engine_correction(rows.gap_xtb[keep], rows.gap_dft[keep], name="xtb")
        eng = keep & ~np.isfinite(rows.gap_dft) & np.isfinite(rows.gap_xtb)
        x = np.concatenate([x, rows.states[eng]])
        y = np.concatenate([y, corr.apply(rows.gap_xtb[eng])])
        source += (f", and GFN1-xTB gaps of {int(eng.sum())} rows without DFT (mostly high density) "
                   f"corrected to DFT by {corr.intercept:+.3f} + {corr.slope:.3f} x (fitted on "
                   f"{corr.n_rows} rows with both, RMS {1000 * corr.residual_rms:.0f} meV)")
        info["engine_correction"] = corr.to_dict()
    p = PropertyPredictor("rich", "ensemble", GAP, label_source=source, regressor_options={
        "members": list(members) if members is not None else gap_members(rows.lattice),
        "resample": "subsample", "subsample": 0.8})
    p.fit(x, y, rows.lattice, seed=seed, calibration_folds=calibration_folds)
    p.info.update(info)
    return p


def train_formation_energy_model(rows: LabelledRows, *, exclude: Sequence[int] | NDArray[np.int64] = (),
                                 seed: int = 0, calibration_folds: int = 5) -> PropertyPredictor:
    """The formation-energy model: a ridge cluster expansion on the DFT rows with a SevenNet-0
    cluster expansion of every (not excluded) row as prior; uncertainty widened outside the DFT
    rows' domain by the RMS gap to corrected SevenNet-0 labels there (see the module docstring)."""
    keep = _keep(len(rows.ids), exclude)
    dft = keep & np.isfinite(rows.fe_dft)
    eng = keep & np.isfinite(rows.fe_sevenn)
    p = PropertyPredictor("hist", "ridge", FORMATION, extensive=True, label_source=(
        f"DFT formation energies per site of 2DMD (PBE, 2DMD chemical potentials), {int(dft.sum())} "
        f"low-density MoS2 8x8 rows"))
    p.fit(rows.states[dft], rows.fe_dft[dft], rows.lattice, prior_states=rows.states[eng],
          prior_y=rows.fe_sevenn[eng], seed=seed, calibration_folds=calibration_folds,
          prior_source=f"SevenNet-0 single points (unrelaxed), {int(eng.sum())} rows of 2DMD "
                       f"({int((eng & ~rows.high).sum())} low, {int((eng & rows.high).sum())} high density)")
    counts = np.stack([(rows.states == k.code).sum(axis=1) for k in rows.lattice.kinds], axis=1)
    corr = fit_engine_correction(rows.fe_sevenn[dft], rows.fe_dft[dft], counts[dft], name="sevenn")
    p.info["engine_correction"] = corr.to_dict()
    if p.calibration is not None and p.domain is not None:
        outside = eng & ~dft
        outside[outside] = p.out_of_domain(rows.states[outside])
        if outside.any():
            gap = p.predict(rows.states[outside]) - corr.apply(rows.fe_sevenn[outside], counts[outside])
            ood = float(np.sqrt(np.mean(gap**2) + corr.residual_rms**2))
            p.calibration = dataclasses.replace(p.calibration, ood_std=ood)
            p.info["ood_std_source"] = (
                f"RMS of model minus corrected SevenNet-0 on {int(outside.sum())} rows outside the DFT "
                f"domain, with the correction's RMS in quadrature")
    return p


BENCHMARK_COLUMNS = ("fe_low", "fe_high", "gap_low", "gap_high")
"""The columns of ``benchmarks/paper_table.py``."""


def benchmark_columns(rows: LabelledRows) -> dict[str, tuple[NDArray[np.int64], Array]]:
    """Column -> (row indices, labels) of the benchmark table: FE/site low (DFT), FE/site high
    (SevenNet-0), gap low (DFT), gap high (GFN1-xTB)."""
    low = ~rows.high
    return {
        "fe_low": (np.flatnonzero(low & np.isfinite(rows.fe_dft)), rows.fe_dft),
        "fe_high": (np.flatnonzero(rows.high & np.isfinite(rows.fe_sevenn)), rows.fe_sevenn),
        "gap_low": (np.flatnonzero(low & np.isfinite(rows.gap_dft)), rows.gap_dft),
        "gap_high": (np.flatnonzero(rows.high & np.isfinite(rows.gap_xtb)), rows.gap_xtb),
    }


def benchmark_split(indices: NDArray[np.int64], seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The benchmark's random 80/20 split of a column's rows: (train, test), sorted."""
    perm = np.random.default_rng(1000 + seed).permutation(len(indices))
    n_test = max(1, round(0.2 * len(indices)))
    return np.sort(indices[perm[n_test:]]), np.sort(indices[perm[:n_test]])


def benchmark_test_rows(rows: LabelledRows, seed: int) -> NDArray[np.int64]:
    """Every column's test rows of split ``seed``: what a model evaluated on that split must not see."""
    return np.unique(np.concatenate([benchmark_split(idx, seed)[1]
                                     for idx, _ in benchmark_columns(rows).values()]))


def train_default_models(out: str | Path, data: str | Path | None = None,
                         labels_dir: str | Path = LABELS_DIR, seed: int = 0) -> dict[str, Path]:
    """Trains both shipped predictors on every labelled row and saves them under ``out``."""
    rows = load_labelled_rows(data, labels_dir)
    folder = Path(out)
    saved = {}
    for name, model in ((GAP, train_gap_model(rows, seed=seed)),
                        (FORMATION, train_formation_energy_model(rows, seed=seed))):
        saved[name] = model.save(folder / f"mos2_8x8_{name}")
    return saved


__all__ = ["BENCHMARK_COLUMNS", "EngineCorrection", "LabelledRows", "benchmark_columns",
           "benchmark_split", "benchmark_test_rows", "fit_engine_correction", "gap_members",
           "load_labelled_rows", "train_default_models", "train_formation_energy_model",
           "train_gap_model"]
