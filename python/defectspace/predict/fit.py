"""Property predictors trained on a user's own labels (``defectspace fit``).

:func:`read_labels` reads labelled placements: a CSV or Parquet table with ``id``, ``defects`` (2DMD
form) and a label column, or a table with ``id`` and a label column beside CIF structures (a file,
a folder or a tar) whose file names give the ids. :func:`fit_predictor` fits the package's
regressors to them: every candidate (a bootstrap ensemble of ridge cluster expansions on the
``hist`` descriptor, whose penalty each member chooses by cross-validation; an ensemble of boosted
trees on the ``rich`` descriptor, whose number of trees is chosen by early stopping) tunes its own
hyperparameters on its training rows, the candidates are compared by their
out-of-fold MAE (``calibration_folds``-fold), and the best is kept with its calibrated uncertainty
(:mod:`defectspace.predict.uncertainty`) and training domain (:mod:`defectspace.predict.domain`).
The result is a :class:`~defectspace.predict.PropertyPredictor`; ``save`` writes a folder that
``defectspace predict --model`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace.io import InputError, is_structure_input
from defectspace.lattice import Lattice
from defectspace.predict.predictor import PropertyPredictor

Array = NDArray[np.float64]

CANDIDATES = ("ridge", "gbm")
"""Regressor families :func:`fit_predictor` compares (``"auto"``: all of them)."""


@dataclass(frozen=True)
class LabelledPlacements:
    """Placements with one label each, as :func:`read_labels` reads them."""

    ids: list[str]
    """Row ids, in file order."""
    states: NDArray[np.uint8]
    """(n, n_sites) uint8 placements."""
    y: Array
    """(n,) float64 labels (finite)."""
    target: str
    """Name of the label column."""
    source: str = ""
    """Where the rows came from (file names), for the predictor's ``label_source``."""


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit_predictor`."""

    target: str
    """Name of the property (the label column)."""
    extensive: bool = False
    """Fit ``y * n_defects`` (per-defect quantities such as formation energy per site)."""
    regressor: str = "auto"
    """``"auto"`` (the best of :data:`CANDIDATES` by out-of-fold MAE), ``"ridge"`` or ``"gbm"``."""
    seed: int = 0
    """Seed of the folds, the resampling and the trees."""
    folds: int = 5
    """Cross-validation folds (model choice and uncertainty calibration); at least 2."""
    label_source: str = ""
    """Free text saved with the model (what the labels are)."""
    gbm_copies: int = 3
    """Boosted-tree ensemble members (each on an 80 % subsample)."""
    ridge_copies: int = 8
    """Ridge ensemble members (each on a bootstrap sample)."""


def _column_values(df: Any, target: str, name: str, first: int, where: str) -> Array:
    """The label column as floats; text or missing values raise one :class:`InputError` line."""
    import pandas as pd

    if target not in df.columns:
        raise InputError(f"{name}: no label column {target!r}; columns: {[str(c) for c in df.columns]}")
    raw = df[target]
    text = raw.astype(str).str.strip()
    values: Array = np.asarray(pd.to_numeric(raw.where(text != "", None), errors="coerce"),
                               dtype=np.float64)
    ids = df["id"].astype(str).tolist()
    missing = (text == "").to_numpy() | raw.isna().to_numpy()
    not_number = ~np.isfinite(values) & ~missing
    if not_number.any():
        r = int(np.flatnonzero(not_number)[0])
        raise InputError(f"{name}, {where} {r + first} (id {ids[r]}): label {target} is "
                         f"{str(raw.iloc[r])!r}, not a finite number ({int(not_number.sum())} such rows)")
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        raise InputError(f"{name}, {where} {r + first} (id {ids[r]}): label {target} is missing "
                         f"({int(missing.sum())} rows lack it); drop unlabelled rows before fitting")
    return values


def read_labels(path: str | Path, target: str, lattice: Lattice,
                structures: str | Path | None = None) -> LabelledPlacements:
    """Labelled placements of ``lattice``.

    Args:
        path: CSV or Parquet with ``id`` and the ``target`` column, and ``defects`` (2DMD form)
            unless ``structures`` is given.
        structures: CIF structures (a file, a folder or a tar) whose ids (file names, see
            :func:`defectspace.structure.structure_id`) are the table's ids; their placements
            are read by :func:`defectspace.structure.map_structure`.

    Raises:
        InputError: a missing column, a label that is text or missing (one line naming the row),
            a bad placement, ids without a structure, or fewer than 5 rows.
    """
    from defectspace.io import placements_from_table, read_placements, read_table

    p = Path(path)
    where, first = ("row", 1) if p.suffix.lower() == ".parquet" else ("line", 2)
    if structures is None:
        df = read_table(p, required=("id", "defects"))
        y = _column_values(df, target, str(p), first, where)
        table = placements_from_table(df, p, lattice)
        ids, states, source = table.ids, table.states, str(p)
    else:
        if not is_structure_input(Path(structures)):
            raise InputError(f"structures {structures} is not a CIF file, a folder or a tar of CIFs")
        df = read_table(p, required=("id",))
        y = _column_values(df, target, str(p), first, where)
        read = read_placements(structures, lattice)
        row_of = {i: r for r, i in enumerate(read.ids)}
        ids = df["id"].astype(str).tolist()
        lacking = [i for i in ids if i not in row_of]
        if lacking:
            raise InputError(f"{p}: {len(lacking)} ids have no structure in {structures} "
                             f"(first: {lacking[0]!r}); structure ids are the CIF file names")
        states = read.states[[row_of[i] for i in ids]]
        source = f"{p} with structures {structures}"
    if len(ids) < 5:
        raise InputError(f"{p}: {len(ids)} labelled rows; fitting needs at least 5")
    return LabelledPlacements(list(ids), np.ascontiguousarray(states), y, target, source)


def candidate(kind: str, config: FitConfig) -> PropertyPredictor:
    """An unfitted predictor of one regressor family (see the module docstring)."""
    source = config.label_source
    if kind == "ridge":
        return PropertyPredictor("hist", "ensemble", config.target, extensive=config.extensive,
                                 label_source=source, regressor_options={
                                     "members": [{"kind": "ridge"}], "n_copies": config.ridge_copies,
                                     "resample": "bootstrap"})
    if kind == "gbm":
        gbm = {"grid": ({"max_leaf_nodes": 15},), "max_iter": 500, "learning_rate": 0.1}
        return PropertyPredictor("rich", "ensemble", config.target, extensive=config.extensive,
                                 label_source=source, regressor_options={
                                     "members": [{"kind": "gbm", "settings": gbm,
                                                  "copies": config.gbm_copies}],
                                     "resample": "subsample", "subsample": 0.8})
    raise ValueError(f"unknown regressor {kind!r}; known: auto, {', '.join(CANDIDATES)}")


def fit_predictor(states: ArrayLike, y: ArrayLike, lattice: Lattice, config: FitConfig
                  ) -> PropertyPredictor:
    """The best predictor of ``y`` from ``states`` (see the module docstring).

    ``info["candidates_cv_mae_meV"]`` holds every candidate's out-of-fold MAE (in thousandths
    of the label's unit: meV for eV labels), ``info["cv_mae_meV"]`` the chosen one's.

    Raises:
        ValueError: fewer than 5 rows, fewer than 2 folds, non-finite labels, an unknown regressor.
    """
    x = np.asarray(states, dtype=np.uint8)
    yy = np.asarray(y, dtype=np.float64).ravel()
    if len(yy) < 5:
        raise ValueError(f"fitting needs at least 5 labelled rows, got {len(yy)}")
    if config.folds < 2:
        raise ValueError(f"folds must be >= 2, got {config.folds}")
    folds = min(config.folds, len(yy))
    kinds: Sequence[str] = CANDIDATES if config.regressor == "auto" else (config.regressor,)
    fitted: dict[str, PropertyPredictor] = {}
    for kind in kinds:
        fitted[kind] = candidate(kind, config).fit(x, yy, lattice, seed=config.seed,
                                                   calibration_folds=folds)
    scores = {k: float(p.info["cv_mae_meV"]) for k, p in fitted.items()}
    best = min(scores, key=lambda k: scores[k])
    chosen = fitted[best]
    chosen.info["candidates_cv_mae_meV"] = scores
    chosen.info["chosen"] = best
    return chosen
