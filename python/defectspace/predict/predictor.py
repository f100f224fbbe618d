"""Property predictors on defect descriptors: fit, predict, save, load, and ``defectspace predict``.

A :class:`PropertyPredictor` is a descriptor (:mod:`defectspace.descriptors`) followed by one
regressor: ridge (``"ridge"``), kernel ridge (``"krr"``, RBF or Laplacian kernel) or gradient-boosted
trees (``"gbm"``, scikit-learn's HistGradientBoostingRegressor, exported to plain arrays).
Hyperparameters are chosen by cross-validation on the training data only. Extensive targets
(``extensive=True``, e.g. formation energy per site) are fitted as totals ``y * n_defects`` and
divided back, which makes a linear model on the histogram descriptor a pair cluster expansion.

An optional *engine prior* is a cluster expansion fitted to cheap engine labels (e.g. SevenNet-0
formation energies of every configuration); its prediction becomes an extra, lightly penalised
feature of the main model, so scarce DFT labels only have to learn the engine-to-DFT correction.

Saved predictors are directories holding ``metadata.json`` (format version, lattice description,
descriptor, target, label source, hyperparameters, scores, and the sha256 of the arrays) and
``arrays.npz`` (numbers only; no pickles). Loading checks the checksum and the lattice.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import descriptors as desc
from defectspace.checkpoint import CheckpointFormat, read_checked, read_metadata, sha256_hex, write_checkpoint
from defectspace.lattice import Lattice
from defectspace.placement import as_states

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

REGRESSORS = ("ridge", "krr", "gbm")

Array = NDArray[np.float64]


# --------------------------------------------------------------------------- helpers
def _kfold(n: int, k: int, seed: int) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    folds = np.array_split(perm, min(k, n))
    return [(np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), np.sort(folds[i]))
            for i in range(len(folds))]


def _standardizer(f: Array) -> tuple[Array, Array]:
    mean = f.mean(axis=0)
    scale = f.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def n_defects(states: ArrayLike, lattice: Lattice) -> Array:
    """(n,) number of defects of every placement (float)."""
    x = as_states(states, lattice)
    out: Array = (x > 0).sum(axis=1).astype(np.float64)
    return out


# --------------------------------------------------------------------------- regressors
class RidgeRegressor:
    """Ridge on standardised features, alpha by efficient leave-one-out CV (RidgeCV).

    ``penalty`` (per column, after standardising) scales how strongly each coefficient is shrunk;
    columns with a small penalty (an engine prior, defect counts) are nearly free.
    """

    kind = "ridge"

    def __init__(self, alphas: Sequence[float] = tuple(10.0 ** np.arange(-6, 4)),
                 penalty: ArrayLike | None = None, standardize: bool = True) -> None:
        self.alphas = tuple(float(a) for a in alphas)
        self.penalty = None if penalty is None else np.asarray(penalty, dtype=np.float64)
        self.standardize = standardize
        self.coef: Array = np.zeros(0)
        self.intercept = 0.0
        self.alpha = float("nan")

    def fit(self, f: Array, y: Array, seed: int = 0) -> RidgeRegressor:
        from sklearn.linear_model import RidgeCV

        mean, scale = _standardizer(f) if self.standardize else (np.zeros(f.shape[1]),
                                                                 np.ones(f.shape[1]))
        if self.penalty is not None:
            scale = scale * np.sqrt(self.penalty)
        z = (f - mean) / scale
        model = RidgeCV(alphas=self.alphas).fit(z, y)
        self.alpha = float(model.alpha_)
        self.coef = np.asarray(model.coef_, dtype=np.float64) / scale
        self.intercept = float(model.intercept_) - float(mean @ self.coef)
        return self

    def predict(self, f: Array) -> Array:
        out: Array = f @ self.coef + self.intercept
        return out

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        return {"alpha": self.alpha}, {"coef": self.coef, "intercept": np.array([self.intercept])}

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> RidgeRegressor:
        r = cls()
        r.alpha = float(params["alpha"])
        r.coef = np.asarray(arrays["coef"], dtype=np.float64)
        r.intercept = float(arrays["intercept"][0])
        return r


def _pairwise(a: Any, b: Any, kernel: str) -> Array:
    """Euclidean (rbf) or L1 (laplacian) distances; ``a``, ``b`` dense or scipy sparse."""
    from sklearn.metrics.pairwise import euclidean_distances, manhattan_distances

    if kernel == "rbf":
        d: Array = euclidean_distances(a, b, squared=True)
        return np.maximum(d, 0.0)
    if kernel == "laplacian":
        out: Array = manhattan_distances(a, b)
        return out
    raise ValueError(f"unknown kernel {kernel!r}; known: rbf, laplacian")


class KernelRidgeRegressor:
    """Kernel ridge with an RBF or Laplacian kernel; kernel, width and alpha by k-fold CV.

    The width grid is relative to the median training distance. Features are standardised
    (dense input) or used as they are (``standardize=False``; sparse input allowed).
    """

    kind = "krr"

    def __init__(self, kernels: Sequence[str] = ("laplacian", "rbf"),
                 width_factors: Sequence[float] = (0.3, 1.0, 3.0),
                 alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), n_folds: int = 4,
                 standardize: bool = True) -> None:
        self.kernels = tuple(kernels)
        self.width_factors = tuple(width_factors)
        self.alphas = tuple(alphas)
        self.n_folds = n_folds
        self.standardize = standardize
        self.kernel = ""
        self.gamma = float("nan")
        self.alpha = float("nan")
        self.mean: Array = np.zeros(0)
        self.scale: Array = np.zeros(0)
        self.train: Any = np.zeros((0, 0))
        self.dual: Array = np.zeros(0)
        self.y_mean = 0.0
        self.cv_mae = float("nan")

    def _prep(self, f: Any) -> Any:
        if not self.standardize:
            return f
        out = (np.asarray(f, dtype=np.float64) - self.mean) / self.scale
        return out

    def fit(self, f: Any, y: Array, seed: int = 0) -> KernelRidgeRegressor:
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        if self.standardize:
            self.mean, self.scale = _standardizer(np.asarray(f, dtype=np.float64))
        z = self._prep(f)
        self.y_mean = float(np.mean(y))
        yc = y - self.y_mean
        folds = _kfold(len(y), self.n_folds, seed)
        best: tuple[float, str, float, float] = (np.inf, "", 0.0, 0.0)
        for kernel in self.kernels:
            dist = _pairwise(z, z, kernel)
            med = float(np.median(dist[dist > 0])) if np.any(dist > 0) else 1.0
            for wf in self.width_factors:
                gamma = 1.0 / (wf * med)
                k = np.exp(-gamma * dist)
                for alpha in self.alphas:
                    err = 0.0
                    for tr, te in folds:
                        ktr = k[np.ix_(tr, tr)] + alpha * np.eye(len(tr))
                        try:
                            dual = cho_solve(cho_factor(ktr), yc[tr])
                        except LinAlgError:
                            err = np.inf
                            break
                        err += float(np.abs(k[np.ix_(te, tr)] @ dual - yc[te]).sum())
                    if err / len(y) < best[0]:
                        best = (err / len(y), kernel, gamma, alpha)
        self.cv_mae, self.kernel, self.gamma, self.alpha = best
        dist = _pairwise(z, z, self.kernel)
        k = np.exp(-self.gamma * dist) + self.alpha * np.eye(len(y))
        self.dual = np.asarray(cho_solve(cho_factor(k), yc), dtype=np.float64)
        self.train = z
        return self

    def predict(self, f: Any) -> Array:
        z = self._prep(f)
        out: Array = np.exp(-self.gamma * _pairwise(z, self.train, self.kernel)) @ self.dual
        return out + self.y_mean

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        if not isinstance(self.train, np.ndarray):
            raise ValueError("only kernel ridge models on dense features can be saved")
        return ({"kernel": self.kernel, "gamma": self.gamma, "alpha": self.alpha,
                 "cv_mae": self.cv_mae, "standardize": self.standardize},
                {"mean": self.mean, "scale": self.scale, "train": self.train,
                 "dual": self.dual, "y_mean": np.array([self.y_mean])})

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any],
                    arrays: Mapping[str, Array]) -> KernelRidgeRegressor:
        r = cls(standardize=bool(params["standardize"]))
        r.kernel = str(params["kernel"])
        r.gamma = float(params["gamma"])
        r.alpha = float(params["alpha"])
        r.cv_mae = float(params["cv_mae"])
        r.mean = np.asarray(arrays["mean"], dtype=np.float64)
        r.scale = np.asarray(arrays["scale"], dtype=np.float64)
        r.train = np.asarray(arrays["train"], dtype=np.float64)
        r.dual = np.asarray(arrays["dual"], dtype=np.float64)
        r.y_mean = float(arrays["y_mean"][0])
        return r


_TREE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right",
                "is_leaf")


class GBMRegressor:
    """Gradient-boosted trees (HistGradientBoostingRegressor) exported to arrays.

    Leaf count and L2 regularisation by k-fold CV on the training data; the number of trees by
    early stopping on a held-out tenth of it. Prediction walks the exported trees in numpy.
    """

    kind = "gbm"

    def __init__(self, grid: Sequence[Mapping[str, Any]] = ({"max_leaf_nodes": 15},
                                                             {"max_leaf_nodes": 31}),
                 learning_rate: float = 0.1, max_iter: int = 1000, n_folds: int = 3) -> None:
        self.grid = [dict(g) for g in grid]
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_folds = n_folds
        self.params: dict[str, Any] = {}
        self.baseline = 0.0
        self.nodes: dict[str, Array] = {}
        self.offsets: NDArray[np.int64] = np.zeros(1, dtype=np.int64)

    def _model(self, params: Mapping[str, Any], seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=self.max_iter, early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=30, random_state=seed, **params)

    def fit(self, f: Array, y: Array, seed: int = 0) -> GBMRegressor:
        f = np.asarray(f, dtype=np.float64)
        best: tuple[float, dict[str, Any]] = (np.inf, self.grid[0])
        if len(self.grid) > 1:
            for params in self.grid:
                err = 0.0
                for tr, te in _kfold(len(y), self.n_folds, seed):
                    m = self._model(params, seed).fit(f[tr], y[tr])
                    err += float(np.abs(m.predict(f[te]) - y[te]).sum())
                if err < best[0]:
                    best = (err, params)
        self.params = dict(best[1])
        model = self._model(self.params, seed).fit(f, y)
        self.params["n_iter"] = int(model.n_iter_)
        self.baseline = float(np.ravel(model._baseline_prediction)[0])
        trees = [p[0].nodes for p in model._predictors]
        self.offsets = np.cumsum([0] + [len(t) for t in trees]).astype(np.int64)
        allnodes = np.concatenate(trees)
        self.nodes = {k: np.asarray(allnodes[k], dtype=np.float64) for k in _TREE_FIELDS}
        return self

    def predict(self, f: Array) -> Array:
        f = np.asarray(f, dtype=np.float64)
        n = f.shape[0]
        out = np.full(n, self.baseline)
        feat = self.nodes["feature_idx"].astype(np.int64)
        thr = self.nodes["num_threshold"]
        left = self.nodes["left"].astype(np.int64)
        right = self.nodes["right"].astype(np.int64)
        leaf = self.nodes["is_leaf"].astype(bool)
        miss_left = self.nodes["missing_go_to_left"].astype(bool)
        value = self.nodes["value"]
        rows = np.arange(n)
        for start in self.offsets[:-1]:
            node = np.full(n, start, dtype=np.int64)
            active = ~leaf[node]
            while active.any():
                nd = node[active]
                x = f[rows[active], feat[nd]]
                go_left = np.where(np.isnan(x), miss_left[nd], x <= thr[nd])
                node[active] = start + np.where(go_left, left[nd], right[nd])
                active = ~leaf[node]
            out += value[node]
        return out

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        arrays = {f"node_{k}": v for k, v in self.nodes.items()}
        arrays["offsets"] = self.offsets.astype(np.float64)
        arrays["baseline"] = np.array([self.baseline])
        return {"params": self.params, "learning_rate": self.learning_rate}, arrays

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> GBMRegressor:
        r = cls(learning_rate=float(params["learning_rate"]))
        r.params = dict(params["params"])
        r.nodes = {k: np.asarray(arrays[f"node_{k}"], dtype=np.float64) for k in _TREE_FIELDS}
        r.offsets = np.asarray(arrays["offsets"]).astype(np.int64)
        r.baseline = float(arrays["baseline"][0])
        return r


_REGRESSOR_CLASSES: dict[str, Any] = {"ridge": RidgeRegressor, "krr": KernelRidgeRegressor,
                                      "gbm": GBMRegressor}


def make_regressor(kind: str, **kwargs: Any) -> Any:
    """A fresh regressor of kind ``"ridge"``, ``"krr"`` or ``"gbm"``."""
    if kind not in _REGRESSOR_CLASSES:
        raise ValueError(f"unknown regressor {kind!r}; known: {', '.join(REGRESSORS)}")
    return _REGRESSOR_CLASSES[kind](**kwargs)


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
        self.model: Any = None
        self.prior: RidgeRegressor | None = None
        self.prior_source = ""
        self.info: dict[str, Any] = {}
        self.embedder: Any = None

    # ------------------------------------------------------------------ features
    def _check_lattice(self, lattice: Lattice | None) -> Lattice:
        if self.lattice is None:
            raise ValueError("this predictor has not been fitted")
        if lattice is not None and not lattice.same_as(self.lattice):
            raise ValueError(f"this predictor was trained for {self.lattice!r}; it cannot predict "
                             f"for {lattice!r}")
        return self.lattice

    def features(self, states: ArrayLike, lattice: Lattice | None = None) -> Array:
        """The descriptor of ``states`` (plus the engine prior's prediction when there is one)."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        f = np.asarray(desc.compute(self.descriptor, x, lat, embedder=self.embedder),
                       dtype=np.float64)
        if self.prior is not None:
            g = self.prior.predict(desc.defect_histogram(x, lat))
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
        self.model = make_regressor(self.regressor_kind, **opts).fit(f, yy * scale, seed=seed)
        self.info = {"n_train": len(yy), "seed": seed}
        return self

    def predict(self, states: ArrayLike, lattice: Lattice | None = None) -> Array:
        """Predictions (eV) for placements on the lattice this predictor was trained for."""
        lat = self._check_lattice(lattice)
        x = as_states(states, lat)
        if self.model is None:
            raise ValueError("this predictor has not been fitted")
        out: Array = np.asarray(self.model.predict(self.features(x, lat)), dtype=np.float64)
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
                                                      "alpha": self.prior.alpha},
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
        obj.model = _REGRESSOR_CLASSES[meta["regressor"]].from_arrays(meta["regressor_params"],
                                                                      model_arr)
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
