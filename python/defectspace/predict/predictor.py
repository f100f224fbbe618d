"""Property predictors: a descriptor of placements (:mod:`defectspace.descriptors`) followed by one
regressor (:mod:`defectspace.predict.regressors`: ridge, kernel ridge or gradient-boosted trees);
fit, predict, save, load, and the shipped MoS2 8x8 models.

Hyperparameters are chosen by cross-validation on the training data only. Extensive targets
(``extensive=True``, e.g. formation energy per site) are fitted as totals ``y * n_defects`` and
divided back, which makes a linear model on the histogram descriptor a pair cluster expansion.

An optional *engine prior* is a cluster expansion fitted to cheap engine labels (e.g. SevenNet-0
formation energies of every configuration); its prediction becomes an extra, lightly penalised
feature of the main model, so scarce DFT labels only have to learn the engine-to-DFT correction.

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
from defectspace.predict.regressors import (
    REGRESSORS,
    Regressor,
    RidgeRegressor,
    make_regressor,
    regressor_from_arrays,
)

FORMAT_VERSION = 1
"""Version of the saved-predictor layout."""

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


# --------------------------------------------------------------------------- the predictor
class PropertyPredictor:
    """One target predicted from one descriptor of placements on one lattice.

    Args:
        descriptor: ``"hist"``, ``"cm"``, ``"bob"``, ``"snn"`` or ``"snn_poly"``.
        regressor: ``"ridge"``, ``"krr"`` or ``"gbm"``.
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

    def features(self, states: ArrayLike, lattice: Lattice | None = None, n_threads: int = 0) -> Array:
        """The descriptor of ``states`` (plus the engine prior's prediction when there is one);
        ``n_threads``: the core's threads (0: all cores)."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        if self.descriptor in desc.EMBEDDING_DESCRIPTORS and self.embedder is None:
            from defectspace.ml.embedder import Embedder

            self.embedder = Embedder.load()
        f = np.asarray(desc.compute(self.descriptor, x, lat, embedder=self.embedder,
                                    n_threads=n_threads), dtype=np.float64)
        if self.prior is not None:
            g = self.prior.predict(desc.defect_histogram(x, lat, n_threads))
            f = np.hstack([g[:, None], f])
        return f

    # ------------------------------------------------------------------ fit / predict
    def fit(self, states: ArrayLike, y: ArrayLike, lattice: Lattice, *,
            prior_states: ArrayLike | None = None, prior_y: ArrayLike | None = None,
            prior_source: str = "", seed: int = 0) -> PropertyPredictor:
        """Fits on placements and labels (eV); optional engine labels for the prior.

        The prior is a ridge cluster expansion on the histogram descriptor fitted to
        ``prior_y`` (same target, from a cheap engine); its prediction is the first feature of
        the main model and is penalised 10^4 times less than the descriptor.
        """
        self.lattice = lattice
        x = as_states(states, lattice)
        yy = np.asarray(y, dtype=np.float64).ravel()
        if yy.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} placements but {yy.shape[0]} labels")
        if not np.all(np.isfinite(yy)):
            raise ValueError("labels must be finite")
        scale = n_defects(x, lattice) if self.extensive else np.ones(len(yy))
        if np.any(scale == 0):
            raise ValueError("an extensive target needs at least one defect per placement")
        self.prior = None
        if prior_states is not None and prior_y is not None:
            px = as_states(prior_states, lattice)
            py = np.asarray(prior_y, dtype=np.float64).ravel()
            ps = n_defects(px, lattice) if self.extensive else np.ones(len(py))
            self.prior = RidgeRegressor(standardize=False).fit(
                desc.defect_histogram(px, lattice), py * ps)
            self.prior_source = prior_source
        f = self.features(x, lattice)
        opts = dict(self.regressor_options)
        if self.prior is not None and self.regressor_kind == "ridge":
            pen = np.ones(f.shape[1])
            pen[0] = 1e-4
            if self.descriptor == "hist":
                pen[1:1 + lattice.n_kinds] = 1e-4
            opts.setdefault("penalty", pen)
            opts.setdefault("standardize", False)
        model = make_regressor(self.regressor_kind, **opts)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed)
        self.model = model.fit(f, yy * scale)
        self.info = {"n_train": len(yy), "seed": seed}
        return self

    def predict(self, states: ArrayLike, lattice: Lattice | None = None, n_threads: int = 0) -> Array:
        """Predictions (eV) for placements on the lattice this predictor was trained for, with
        ``n_threads`` threads of the core (0: all cores; the result is the same)."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        if self.model is None:
            raise ValueError("this predictor has not been fitted")
        model = self.model
        if model.get_params().get("n_threads", n_threads) != n_threads:
            model = copy.copy(model).set_params(n_threads=n_threads)  # shares the fitted arrays
        out: Array = np.asarray(model.predict(self.features(x, lat, n_threads)), dtype=np.float64)
        if self.extensive:
            nd = n_defects(x, lat)
            out = np.where(nd > 0, out / np.maximum(nd, 1.0), np.nan)
        return out

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
                                                      "alpha": self.prior.alpha_},
            "info": self.info,
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
            obj.prior = RidgeRegressor.from_arrays({"alpha": meta["prior"]["alpha"]}, prior_arr)
            obj.prior_source = str(meta["prior"].get("source", ""))
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
