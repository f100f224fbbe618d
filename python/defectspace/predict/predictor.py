"""Property predictors: a descriptor of placements (:mod:`defectspace.descriptors`) followed by one
regressor (:mod:`defectspace.predict.regressors`: ridge, kernel ridge or gradient-boosted trees);
fit, predict, save, load, and the shipped MoS2 8x8 models.

Hyperparameters are chosen by cross-validation on the training data only. Extensive targets
(``extensive=True``, e.g. formation energy per site) are fitted as totals ``y * n_defects`` and
divided back, which makes a linear model on the histogram descriptor a pair cluster expansion.

An optional *engine prior* is a cluster expansion fitted to cheap engine labels (e.g. SevenNet-0
formation energies of every configuration); its prediction becomes an extra, lightly penalised
feature of the main model, so scarce DFT labels only have to learn the engine-to-DFT correction.
Ridge models of extensive targets have no constant term (no defect, no formation energy).

Uncertainty: :meth:`PropertyPredictor.predict_with_std` returns the mean (exactly what
:meth:`~PropertyPredictor.predict` returns) and a 1-sigma uncertainty: the spread of an ensemble
regressor calibrated on out-of-fold residuals (:mod:`defectspace.predict.uncertainty`), widened
where a placement lies outside the training domain (:mod:`defectspace.predict.domain`;
:meth:`~PropertyPredictor.out_of_domain`, :meth:`~PropertyPredictor.describe_domain`).

Saved predictors are checkpoint folders (:mod:`defectspace.checkpoint`) holding ``metadata.json``
(format version, lattice description, descriptor, target, label source, hyperparameters, scores,
and the sha256 of the arrays) and ``arrays.npz`` (numbers only; no pickles). Loading checks the
checksum and the lattice. The ``snn`` descriptors load the shipped embedder (torch) when asked.
"""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import descriptors as desc
from defectspace.checkpoint import CheckpointFormat, read_checked, read_metadata, sha256_hex, write_checkpoint
from defectspace.descriptors import PlacementEmbedder
from defectspace.lattice import Lattice
from defectspace.placement import as_states
from defectspace.predict.domain import TrainingDomain
from defectspace.predict.regressors import (
    REGRESSORS,
    EnsembleRegressor,
    Regressor,
    RidgeRegressor,
    make_regressor,
    regressor_from_arrays,
)
from defectspace.predict.uncertainty import Calibration, fit_calibration

SIGMA_PER_MAE = float(np.sqrt(np.pi / 2))
"""sigma of a normal distribution per mean absolute deviation (uncertainty of uncalibrated models)."""

FORMAT_VERSION = 1
"""Version of the saved-predictor layout (calibration, domain and ensembles are optional keys that
version-1 files without them lack)."""

ARRAYS_FILE = "arrays.npz"
CHECKPOINT = CheckpointFormat("defectspace-predictor", FORMAT_VERSION, "metadata.json", "predictor")
"""A saved predictor's folder (:mod:`defectspace.checkpoint`)."""

PREDICTORS_DIR = Path(__file__).resolve().parents[1] / "data" / "predictors"
"""Where the shipped predictors live."""

DEFAULT_MODELS = {"homo_lumo_gap": "mos2_8x8_homo_lumo_gap",
                  "formation_energy_per_site": "mos2_8x8_formation_energy_per_site"}
"""Shipped predictor of each target (directory names under :data:`PREDICTORS_DIR`)."""

Array = NDArray[np.float64]


def n_defects(states: ArrayLike, lattice: Lattice) -> Array:
    """(n,) number of defects of every placement (float)."""
    x = as_states(states, lattice)
    out: Array = (x > 0).sum(axis=1).astype(np.float64)
    return out


def _mean_and_spread(model: Regressor, f: Array) -> tuple[Array, Array]:
    """A regressor's prediction and its spread: the members' for an ensemble, the posterior
    standard deviation for a ridge model that has it, zeros otherwise."""
    if isinstance(model, EnsembleRegressor):
        return model.mean_and_spread(f)
    mean = np.asarray(model.predict(f), dtype=np.float64)
    if isinstance(model, RidgeRegressor) and getattr(model, "cov_", None) is not None:
        return mean, model.predict_std(f)
    return mean, np.zeros(len(mean))


def _composition_scatter(x: NDArray[np.uint8], y: Array, lattice: Lattice) -> float:
    """RMS scatter (eV) of labels around a ridge fit on the defect amounts and fractions: what a
    model that knows only the composition gets wrong (the uncertainty added out of domain)."""
    counts = np.stack([(x == k.code).sum(axis=1) for k in lattice.kinds], axis=1).astype(np.float64)
    nd = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    f = np.hstack([counts, counts / nd])
    if len(y) < 3:
        return float(np.std(y)) if len(y) else 0.0
    r = y - RidgeRegressor(alphas=(1e-3, 1e-2, 1e-1, 1.0)).fit(f, y).predict(f)
    return float(np.sqrt(np.mean(r**2)))


# --------------------------------------------------------------------------- the predictor
class PropertyPredictor:
    """One target predicted from one descriptor of placements on one lattice.

    Args:
        descriptor: ``"hist"``, ``"rich"``, ``"cm"``, ``"bob"``, ``"snn"`` or ``"snn_poly"``.
        regressor: ``"ridge"``, ``"krr"``, ``"gbm"`` or ``"ensemble"`` (whose member spread gives
            the uncertainty, see :class:`~defectspace.predict.regressors.EnsembleRegressor`).
        target: name of the predicted property (e.g. ``"homo_lumo_gap"``), in eV.
        extensive: fit ``y * n_defects`` and divide predictions by ``n_defects`` (per-site
            quantities such as ``formation_energy_per_site``).
        label_source: free text saying what the labels were (e.g. ``"DFT (2DMD), low density"``).
        regressor_options: keyword arguments of the regressor.
    """

    def __init__(self, descriptor: str = "hist", regressor: str = "gbm",
                 target: str = "homo_lumo_gap", extensive: bool = False,
                 label_source: str = "", regressor_options: Mapping[str, Any] | None = None) -> None:
        if descriptor not in desc.DESCRIPTORS:
            raise ValueError(f"unknown descriptor {descriptor!r}; known: {desc.DESCRIPTORS}")
        if regressor not in REGRESSORS:
            raise ValueError(f"unknown regressor {regressor!r}; known: {REGRESSORS}")
        self.descriptor = descriptor
        self.regressor_kind = regressor
        self.target = target
        self.extensive = extensive
        self.label_source = label_source
        self.regressor_options = dict(regressor_options or {})
        self.lattice: Lattice | None = None
        self.model: Regressor | None = None
        self.prior: RidgeRegressor | None = None
        self.prior_source = ""
        self.info: dict[str, Any] = {}
        self.calibration: Calibration | None = None
        """Maps the ensemble spread to a 1-sigma uncertainty (None: not calibrated)."""
        self.domain: TrainingDomain | None = None
        """Defect counts, amounts per kind and pairs seen in training (None: unknown)."""
        self.embedder: PlacementEmbedder | None = None
        """The embedder of the ``snn`` descriptors (None: the shipped one, loaded when needed)."""

    # ------------------------------------------------------------------ features
    def _check_lattice(self, lattice: Lattice | None) -> Lattice:
        if self.lattice is None:
            raise ValueError("this predictor has not been fitted")
        if lattice is not None and not lattice.same_as(self.lattice):
            raise ValueError(f"this predictor was trained for {self.lattice!r}; it cannot predict "
                             f"for {lattice!r}")
        return self.lattice

    @property
    def reads_histogram(self) -> bool:
        """Whether the features are computed from the histogram descriptor alone (``hist`` and
        ``rich``, with or without a prior): a caller that has the histogram may pass it as ``hist``."""
        return self.descriptor in ("hist", "rich")

    def features(self, states: ArrayLike, lattice: Lattice | None = None, n_threads: int = 0,
                 hist: ArrayLike | None = None) -> Array:
        """The descriptor of ``states`` (plus the engine prior's prediction when there is one);
        ``n_threads``: the core's threads (0: all cores). ``hist``: the histogram descriptor of
        ``states`` when the caller has it already (reused by the ``hist``, ``rich`` and ``env``
        descriptors and the prior instead of counting again; the same bits)."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        h: Array | None = None
        if hist is not None:
            h = np.asarray(hist, dtype=np.float64)
            n_hist = desc.descriptor_size("hist", lat)
            if h.shape != (x.shape[0], n_hist):
                raise ValueError(f"hist must be the ({x.shape[0]}, {n_hist}) histogram descriptor of the "
                                 f"placements, got shape {h.shape}")
        elif self.descriptor in ("hist", "rich", "env") or self.prior is not None:
            h = desc.defect_histogram(x, lat, n_threads)
        if self.descriptor in desc.EMBEDDING_DESCRIPTORS and self.embedder is None:
            from defectspace.ml.embedder import Embedder

            self.embedder = Embedder.load()
        if self.descriptor == "hist" and h is not None:
            f = h
        elif self.descriptor == "rich" and h is not None:
            f = np.hstack([h, desc.smeared_pair_distribution(h, lat), desc.nearest_pair_distances(h, lat)])
        elif self.descriptor == "env" and h is not None:
            f = np.hstack([h, desc.environment_counts(x, lat)])
        else:
            f = np.asarray(desc.compute(self.descriptor, x, lat, embedder=self.embedder,
                                        n_threads=n_threads), dtype=np.float64)
        if self.prior is not None:
            assert h is not None
            g = self.prior.predict(h)
            f = np.hstack([g[:, None], f])
        return f

    # ------------------------------------------------------------------ fit / predict
    def fit(self, states: ArrayLike, y: ArrayLike, lattice: Lattice, *,
            prior_states: ArrayLike | None = None, prior_y: ArrayLike | None = None,
            prior_source: str = "", seed: int = 0, calibration_folds: int = 0,
            sample_weight: ArrayLike | None = None) -> PropertyPredictor:
        """Fits on placements and labels (eV); optional engine labels for the prior.

        The prior is a ridge cluster expansion on the histogram descriptor fitted to
        ``prior_y`` (same target, from a cheap engine); its prediction is the first feature of
        the main model and is penalised 10^4 times less than the descriptor. Ridge models of an
        extensive target (the prior, the main model, ridge members of an ensemble) get no
        constant term unless their settings say otherwise, and every model of an extensive
        target weighs each row's squared error per site (weight ``1 / n_defects^2`` on the total),
        so that large placements do not drown small ones. ``sample_weight`` (n,) weighs rows
        further (e.g. DFT labels above engine-derived ones).

        With ``calibration_folds >= 2`` the same model is also fitted that many times on all but
        one fold of the rows, and the out-of-fold residuals calibrate :meth:`predict_with_std`
        (:func:`~defectspace.predict.uncertainty.fit_calibration`); ``info["cv_mae_meV"]`` is
        their MAE. The training domain is recorded in any case.
        """
        self.lattice = lattice
        x = as_states(states, lattice)
        yy = np.asarray(y, dtype=np.float64).ravel()
        if yy.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} placements but {yy.shape[0]} labels")
        if not np.all(np.isfinite(yy)):
            raise ValueError("labels must be finite")
        nd = n_defects(x, lattice)
        scale = nd if self.extensive else np.ones(len(yy))
        if np.any(scale == 0):
            raise ValueError("an extensive target needs at least one defect per placement")
        weight = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
        if weight.shape != yy.shape or np.any(weight < 0) or not np.all(np.isfinite(weight)):
            raise ValueError(f"sample_weight must be {len(yy)} finite non-negative numbers")
        weight = weight / scale**2
        self.prior = None
        if prior_states is not None and prior_y is not None:
            px = as_states(prior_states, lattice)
            py = np.asarray(prior_y, dtype=np.float64).ravel()
            ps = n_defects(px, lattice) if self.extensive else np.ones(len(py))
            self.prior = RidgeRegressor(standardize=False, fit_intercept=not self.extensive).fit(
                desc.defect_histogram(px, lattice), py * ps, sample_weight=1.0 / ps**2)
            self.prior_source = prior_source
        f = self.features(x, lattice)
        self.model = self._fit_regressor(f, yy * scale, seed, weight)
        self.info = {"n_train": len(yy), "seed": seed}
        self.domain = TrainingDomain.from_histogram(self._histogram(f, x, lattice), lattice)
        self.calibration = None
        if calibration_folds >= 2:
            from defectspace.predict.regressors import _kfold

            mean = np.zeros(len(yy))
            spread = np.zeros(len(yy))
            for tr, te in _kfold(len(yy), calibration_folds, seed):
                sub = self._fit_regressor(f[tr], yy[tr] * scale[tr], seed, weight[tr])
                m, sp = _mean_and_spread(sub, f[te])
                mean[te], spread[te] = m / scale[te], sp / scale[te]
            self.calibration = fit_calibration(mean - yy, spread, nd,
                                               _composition_scatter(x, yy, lattice))
            self.info["cv_mae_meV"] = 1000 * self.calibration.oof_mae
            self.info["calibration_folds"] = calibration_folds
        return self

    def _fit_regressor(self, f: Array, target: Array, seed: int, weight: Array) -> Regressor:
        """A fresh regressor of this predictor's kind and options fitted to ``(f, target)``."""
        assert self.lattice is not None
        opts = copy.deepcopy(self.regressor_options)
        pen = None
        if self.prior is not None:
            pen = np.ones(f.shape[1])
            pen[0] = 1e-4
            if self.descriptor in ("hist", "rich", "env"):
                pen[1:1 + self.lattice.n_kinds] = 1e-4
        ridge_defaults: dict[str, Any] = {} if pen is None else {"penalty": pen, "standardize": False}
        if self.extensive:
            ridge_defaults["fit_intercept"] = False
        if self.regressor_kind == "ridge":
            for k, v in ridge_defaults.items():
                opts.setdefault(k, v)
        elif self.regressor_kind == "ensemble":
            members = []
            for m in opts.get("members", EnsembleRegressor().members):
                m = dict(m)
                if m["kind"] == "ridge" and m.get("columns") is None:
                    settings = dict(m.get("settings", {}))
                    for k, v in ridge_defaults.items():
                        settings.setdefault(k, v)
                    m["settings"] = settings
                members.append(m)
            opts["members"] = members
        model = make_regressor(self.regressor_kind, **opts)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed)
        return model.fit(f, target, sample_weight=weight)

    def _histogram(self, f: Array, x: NDArray[np.uint8], lattice: Lattice, n_threads: int = 0) -> Array:
        """The histogram descriptor of ``x``, taken from its features ``f`` when they hold it."""
        if self.descriptor in ("hist", "rich", "env"):
            off = 0 if self.prior is None else 1
            n_hist = desc.descriptor_size("hist", lattice)
            return f[:, off:off + n_hist]
        return desc.defect_histogram(x, lattice, n_threads)

    def _with_threads(self, n_threads: int) -> Regressor:
        if self.model is None:
            raise ValueError("this predictor has not been fitted")
        model = self.model
        if model.get_params().get("n_threads", n_threads) != n_threads:
            model = copy.copy(model).set_params(n_threads=n_threads)  # shares the fitted arrays
        return model

    def predict(self, states: ArrayLike, lattice: Lattice | None = None, n_threads: int = 0,
                hist: ArrayLike | None = None) -> Array:
        """Predictions (eV) for placements on the lattice this predictor was trained for, with
        ``n_threads`` threads of the core (0: all cores; the result is the same). ``hist``: their
        histogram descriptor, when the caller has it (see :meth:`features`)."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        model = self._with_threads(n_threads)
        out: Array = np.asarray(model.predict(self.features(x, lat, n_threads, hist)), dtype=np.float64)
        if self.extensive:
            nd = n_defects(x, lat)
            out = np.where(nd > 0, out / np.maximum(nd, 1.0), np.nan)
        return out

    def predict_with_std(self, states: ArrayLike, lattice: Lattice | None = None,
                         n_threads: int = 0, hist: ArrayLike | None = None) -> tuple[Array, Array]:
        """``(mean, std)`` in eV: :meth:`predict`'s values (bit for bit) and a 1-sigma uncertainty.

        The uncertainty is the calibrated ensemble spread (:class:`Calibration`), widened in
        quadrature by ``calibration.ood_std`` for placements :meth:`out_of_domain`. A predictor
        without calibration (an older file) gives ``sqrt(pi/2)`` times its cross-validated MAE for
        every row, and raises ValueError when it states none.
        """
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        model = self._with_threads(n_threads)
        f = self.features(x, lat, n_threads, hist)
        mean, spread = _mean_and_spread(model, f)
        nd = n_defects(x, lat)
        if self.extensive:
            mean = np.where(nd > 0, mean / np.maximum(nd, 1.0), np.nan)
            spread = spread / np.maximum(nd, 1.0)
        if self.calibration is None:
            mae = float(self.info.get("cv_mae_meV", float("nan"))) / 1000
            if not np.isfinite(mae):
                raise ValueError(f"the {self.target} predictor is not calibrated and states no "
                                 f"cross-validated MAE (cv_mae_meV)")
            return mean, np.full(len(mean), SIGMA_PER_MAE * mae)
        ood = (self.domain.flags(self._histogram(f, x, lat, n_threads)) > 0 if self.domain is not None
               else np.zeros(len(mean), dtype=bool))
        return mean, self.calibration.std(spread, nd, ood)

    def domain_flags(self, states: ArrayLike, lattice: Lattice | None = None,
                     n_threads: int = 0) -> NDArray[np.uint8]:
        """(n,) bit mask of why each placement lies outside the training domain (0: inside; bits
        in :mod:`defectspace.predict.domain`). All zero when the domain is unknown."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        if self.domain is None:
            return np.zeros(len(x), dtype=np.uint8)
        return self.domain.flags(desc.defect_histogram(x, lat, n_threads))

    def out_of_domain(self, states: ArrayLike, lattice: Lattice | None = None,
                      n_threads: int = 0) -> NDArray[np.bool_]:
        """(n,) whether each placement has a defect count, an amount of some defect kind or a
        defect pair (kinds and distance) that no training placement had."""
        return self.domain_flags(states, lattice, n_threads) > 0

    def describe_domain(self, states: ArrayLike, lattice: Lattice | None = None) -> str | None:
        """One sentence on the placements outside the training domain and why, or None when all
        lie inside (or the domain is unknown): what a command prints once as a warning."""
        lat = self._check_lattice(lattice)
        if self.domain is None:
            return None
        return self.domain.describe(self.domain_flags(states, lat), self.target)

    # ------------------------------------------------------------------ save / load
    def metadata(self) -> dict[str, Any]:
        """The JSON-able description saved beside the arrays."""
        if self.lattice is None or self.model is None:
            raise ValueError("this predictor has not been fitted")
        params, _ = self.model.to_arrays()
        return {
            "lattice": self.lattice.describe(),
            "descriptor": self.descriptor,
            "descriptor_size": desc.descriptor_size(self.descriptor, self.lattice),
            "regressor": self.regressor_kind,
            "regressor_params": params,
            "target": self.target,
            "units": "eV",
            "extensive": self.extensive,
            "label_source": self.label_source,
            "prior": None if self.prior is None else {"source": self.prior_source,
                                                      "alpha": self.prior.alpha_,
                                                      "params": self.prior.to_arrays()[0]},
            "info": self.info,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "domain": None if self.domain is None else self.domain.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Writes ``path/metadata.json`` and ``path/arrays.npz``; returns the directory."""
        if self.model is None:
            raise ValueError("this predictor has not been fitted")
        meta = self.metadata()
        _, arrays = self.model.to_arrays()
        named = {f"model/{k}": np.asarray(v) for k, v in arrays.items()}
        if self.prior is not None:
            _, parr = self.prior.to_arrays()
            named.update({f"prior/{k}": np.asarray(v) for k, v in parr.items()})
        buf = io.BytesIO()
        np.savez_compressed(buf, **named)  # type: ignore[arg-type]
        data = buf.getvalue()
        meta["arrays_sha256"] = sha256_hex(data)
        return write_checkpoint(path, CHECKPOINT, meta, {ARRAYS_FILE: data})

    @classmethod
    def load(cls, path: str | Path, lattice: Lattice | None = None) -> PropertyPredictor:
        """Reads a saved predictor; refuses a corrupt file, another format or another lattice."""
        p = Path(path)
        meta, folder = read_metadata(p, CHECKPOINT)
        data = read_checked(folder, ARRAYS_FILE, meta.get("arrays_sha256"), CHECKPOINT)
        saved_lattice = Lattice.from_description(meta["lattice"])
        if lattice is not None and not lattice.same_as(saved_lattice):
            raise ValueError(f"{p} was trained for {saved_lattice!r}; it cannot be used for "
                             f"{lattice!r}")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
        obj = cls(meta["descriptor"], meta["regressor"], meta["target"], bool(meta["extensive"]),
                  meta.get("label_source", ""))
        obj.lattice = saved_lattice
        obj.info = dict(meta.get("info", {}))
        model_arr = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        obj.model = regressor_from_arrays(meta["regressor"], meta["regressor_params"], model_arr)
        if meta.get("prior"):
            prior_arr = {k[len("prior/"):]: v for k, v in arrays.items() if k.startswith("prior/")}
            obj.prior = RidgeRegressor.from_arrays(
                meta["prior"].get("params", {"alpha": meta["prior"]["alpha"]}), prior_arr)
            obj.prior_source = str(meta["prior"].get("source", ""))
        if meta.get("calibration"):
            obj.calibration = Calibration.from_dict(meta["calibration"])
        if meta.get("domain"):
            obj.domain = TrainingDomain.from_dict(meta["domain"])
        return obj

    def describe_training(self) -> str:
        """One line saying what this predictor learned from."""
        parts = [f"{self.target}: {self.regressor_kind} on {self.descriptor}",
                 f"labels: {self.label_source or 'unknown'}"]
        if "n_train" in self.info:
            parts.append(f"{self.info['n_train']} training rows")
        if self.prior is not None:
            parts.append(f"engine prior: {self.prior_source}")
        if "cv_mae_meV" in self.info:
            parts.append(f"held-out MAE {self.info['cv_mae_meV']:.1f} meV")
        if self.domain is not None:
            lo, hi = self.domain.n_defects
            parts.append(f"trained on {lo}-{hi} defects")
        if self.calibration is not None:
            parts.append("calibrated uncertainty")
        return "; ".join(parts)


# --------------------------------------------------------------------------- shipped models
@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> PropertyPredictor:
    return PropertyPredictor.load(path)


def default_model_paths() -> dict[str, Path]:
    """Target name -> directory of the shipped predictor."""
    return {t: PREDICTORS_DIR / name for t, name in DEFAULT_MODELS.items()}


def load_default(target: str, lattice: Lattice | None = None) -> PropertyPredictor:
    """The shipped predictor of ``target`` (checked against ``lattice`` when given)."""
    paths = default_model_paths()
    if target not in paths:
        raise ValueError(f"no shipped predictor for {target!r}; shipped: {', '.join(paths)}")
    model = _load_cached(str(paths[target]))
    if lattice is not None:
        model._check_lattice(lattice)
    return model


def load_predictors(path: str | Path | None = None,
                    lattice: Lattice | None = None) -> dict[str, PropertyPredictor]:
    """Target name -> predictor, from a folder of saved predictors (default: the shipped ones).

    ``path`` may be one saved predictor or a folder whose sub-folders are saved predictors. Each
    is checked against ``lattice`` when given.
    """
    if path is None:
        return {t: load_default(t, lattice) for t in DEFAULT_MODELS}
    p = Path(path)
    meta_file = CHECKPOINT.meta_file
    dirs = [p] if (p / meta_file).is_file() else sorted(
        q for q in p.iterdir() if (q / meta_file).is_file()) if p.is_dir() else []
    if not dirs:
        raise ValueError(f"{p} holds no saved predictor (folders with {meta_file})")
    out: dict[str, PropertyPredictor] = {}
    for q in dirs:
        m = PropertyPredictor.load(q, lattice)
        if m.target in out:
            raise ValueError(f"{p}: two predictors of {m.target!r}")
        out[m.target] = m
    return out


def predict_properties(states: ArrayLike, lattice: Lattice,
                       models: Sequence[str | Path] | None = None) -> dict[str, Array]:
    """Predicted properties (eV) of placements: target name -> (n,) array.

    With no ``models`` the shipped MoS2 8x8 predictors are used (``homo_lumo_gap`` and
    ``formation_energy_per_site``); a predictor trained for another lattice raises ValueError.
    """
    preds = ([load_default(t) for t in DEFAULT_MODELS] if models is None
             else [_load_cached(str(Path(m).resolve())) for m in models])
    x = as_states(states, lattice)
    return {m.target: m.predict(x, lattice) for m in preds}


def describe_domain(predictors: Mapping[str, PropertyPredictor] | Sequence[PropertyPredictor],
                    states: ArrayLike, lattice: Lattice | None = None) -> str | None:
    """One warning for a batch of placements: the sentence of every predictor that finds some
    outside its training domain (:meth:`PropertyPredictor.describe_domain`), or None.

    ``predict``, ``screen`` and ``design`` print it once to stderr.
    """
    models = list(predictors.values()) if isinstance(predictors, Mapping) else list(predictors)
    lines = [m for m in (p.describe_domain(states, lattice) for p in models) if m]
    return "\n".join(lines) if lines else None
