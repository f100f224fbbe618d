"""Regressors of the property predictors, behind one :class:`Regressor` protocol that follows
scikit-learn's conventions: settings in the constructor (:meth:`get_params`, :meth:`set_params`),
``fit(X, y)`` returning the regressor, learned state in attributes ending in ``_``,
``predict(X)``. Each also saves itself as plain numbers (:meth:`to_arrays`, ``from_arrays``):
no pickles in a saved predictor.

* :class:`RidgeRegressor` (``"ridge"``): ridge on standardised features, alpha by leave-one-out CV;
* :class:`KernelRidgeRegressor` (``"krr"``): RBF or Laplacian kernel ridge, k-fold CV;
* :class:`GBMRegressor` (``"gbm"``): scikit-learn's HistGradientBoostingRegressor, exported to
  arrays and walked in the C++ core;
* :class:`EnsembleRegressor` (``"ensemble"``): a weighted average of several of the above (bootstrap,
  subsample or seed copies, each on a column range of the features); the spread of its members
  (:meth:`EnsembleRegressor.predict_members`) is the raw uncertainty the predictors calibrate.

scikit-learn is needed to fit, not to predict.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from typing import Self

Array = NDArray[np.float64]

REGRESSORS = ("ridge", "krr", "gbm", "ensemble")
"""Names accepted by :func:`make_regressor`."""


class Regressor(Protocol):
    """What a property predictor needs of its regressor (scikit-learn's estimator conventions)."""

    kind: ClassVar[str]
    """Name in saved predictors: ``"ridge"``, ``"krr"``, ``"gbm"`` or ``"ensemble"``."""

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Learns from features ``X`` (n, d) and targets ``y`` (n,), each row's loss weighted by
        ``sample_weight`` (n,) when given; returns the regressor."""
        ...

    def predict(self, X: ArrayLike) -> Array:
        """(n,) float64 predictions for features ``X`` (n, d)."""
        ...

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's settings."""
        ...

    def set_params(self, **params: Any) -> Self:
        """Changes constructor settings; returns the regressor."""
        ...

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        """The learned state as JSON-able parameters and plain arrays (see ``from_arrays``)."""
        ...


class _Params:
    """``get_params``/``set_params`` from the constructor's signature, as in scikit-learn."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> Self:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no setting {name!r}; settings: {sorted(valid)}")
            setattr(self, name, value)
        return self


def _kfold(n: int, k: int, seed: int) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    folds = np.array_split(perm, min(k, n))
    return [(np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), np.sort(folds[i]))
            for i in range(len(folds))]


def _weights(sample_weight: ArrayLike | None, n: int) -> Array:
    """Row weights scaled so that the rows that count (weight > 0) average 1 (all ones when None):
    a constant weight changes nothing and a zero weight drops the row. Refuses negative ones."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64).ravel()
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers, not all zero; got "
                         f"shape {w.shape}")
    out: Array = w / w[w > 0].mean()
    return out


def _standardizer(f: Array, w: Array | None = None) -> tuple[Array, Array]:
    mean = np.average(f, axis=0, weights=w)
    scale = np.sqrt(np.average((f - mean) ** 2, axis=0, weights=w))
    scale[scale < 1e-12] = 1.0
    return mean, scale


def rowwise_dot(X: Array, coef: Array) -> Array:
    """``X @ coef`` with each row's sum in the same order whatever the batch: a placement predicted
    alone or among others gets the same bits (BLAS orders a row's sum by its place in the batch)."""
    out = np.zeros(X.shape[0])
    for j in np.flatnonzero(coef):
        out += X[:, j] * coef[j]
    return out


class RidgeRegressor(_Params):
    """Ridge on standardised features, alpha by efficient leave-one-out CV (RidgeCV).

    ``penalty`` (per column, after standardising) scales how strongly each coefficient is shrunk;
    columns with a small penalty (an engine prior, defect counts) are nearly free.
    ``fit_intercept=False`` fits through the origin (features are then scaled, not centred): a
    total that vanishes with no defect, such as a formation energy, has no constant term.
    :meth:`predict_std` is the Bayesian reading of the fit: the posterior predictive standard
    deviation of the mean, ``noise * sqrt(z' (Z'Z + alpha)^-1 z)``, with the training residuals'
    RMS as the noise.
    """

    kind: ClassVar[str] = "ridge"

    def __init__(self, alphas: Sequence[float] = tuple(10.0 ** np.arange(-6, 4)),
                 penalty: ArrayLike | None = None, standardize: bool = True,
                 fit_intercept: bool = True) -> None:
        self.alphas = alphas
        self.penalty = penalty
        self.standardize = standardize
        self.fit_intercept = fit_intercept

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        from sklearn.linear_model import RidgeCV

        f = np.asarray(X, dtype=np.float64)
        w = _weights(sample_weight, f.shape[0])
        mean, scale = _standardizer(f, w) if self.standardize else (np.zeros(f.shape[1]),
                                                                    np.ones(f.shape[1]))
        if not self.fit_intercept:
            mean = np.zeros(f.shape[1])
            if self.standardize:
                rms = np.sqrt(np.average(f**2, axis=0, weights=w))
                scale = np.where(rms > 1e-12, rms, 1.0)
        if self.penalty is not None:
            scale = scale * np.sqrt(np.asarray(self.penalty, dtype=np.float64))
        z = (f - mean) / scale
        yy = np.asarray(y, dtype=np.float64)
        model = RidgeCV(alphas=[float(a) for a in self.alphas],
                        fit_intercept=self.fit_intercept).fit(z, yy, sample_weight=w)
        self.alpha_ = float(model.alpha_)
        self.coef_: Array = np.asarray(model.coef_, dtype=np.float64) / scale
        self.intercept_ = float(model.intercept_) - float(mean @ self.coef_)
        # posterior covariance of the coefficients (per unit noise variance), in feature units
        zc = z - w @ z / w.sum() if self.fit_intercept else z
        inv = np.linalg.pinv((zc * w[:, None]).T @ zc + self.alpha_ * np.eye(z.shape[1]), hermitian=True)
        self.cov_: Array = inv / scale[:, None] / scale[None, :]
        self.center_: Array = (w @ f / w.sum() if self.fit_intercept else np.zeros(f.shape[1]))
        self.n_train_ = len(yy)
        self.noise_ = float(np.sqrt(np.average((f @ self.coef_ + self.intercept_ - yy) ** 2, weights=w)))
        return self

    def predict_std(self, X: ArrayLike) -> Array:
        """(n,) posterior standard deviation of the predicted mean (see the class docstring)."""
        if getattr(self, "cov_", None) is None:
            raise ValueError("this ridge model was saved without its posterior covariance")
        d = np.asarray(X, dtype=np.float64) - self.center_
        var = np.einsum("ij,ij->i", d @ self.cov_, d)
        if self.fit_intercept:
            var = var + 1.0 / self.n_train_
        out: Array = self.noise_ * np.sqrt(np.maximum(var, 0.0))
        return out

    def predict(self, X: ArrayLike) -> Array:
        return rowwise_dot(np.asarray(X, dtype=np.float64), self.coef_) + self.intercept_

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        params: dict[str, Any] = {"alpha": self.alpha_}
        arrays = {"coef": self.coef_, "intercept": np.array([self.intercept_])}
        if getattr(self, "cov_", None) is not None:
            params.update(noise=self.noise_, n_train=self.n_train_, fit_intercept=self.fit_intercept)
            arrays.update(cov=self.cov_, center=self.center_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> RidgeRegressor:
        r = cls(fit_intercept=bool(params.get("fit_intercept", True)))
        r.alpha_ = float(params["alpha"])
        r.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        r.intercept_ = float(arrays["intercept"][0])
        if "cov" in arrays:
            r.cov_ = np.asarray(arrays["cov"], dtype=np.float64)
            r.center_ = np.asarray(arrays["center"], dtype=np.float64)
            r.noise_ = float(params["noise"])
            r.n_train_ = int(params["n_train"])
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


class KernelRidgeRegressor(_Params):
    """Kernel ridge with an RBF or Laplacian kernel; kernel, width and alpha by k-fold CV.

    The width grid is relative to the median training distance. Features are standardised
    (dense input) or used as they are (``standardize=False``; scipy sparse input allowed).
    """

    kind: ClassVar[str] = "krr"

    def __init__(self, kernels: Sequence[str] = ("laplacian", "rbf"),
                 width_factors: Sequence[float] = (0.3, 1.0, 3.0),
                 alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), n_folds: int = 4,
                 standardize: bool = True, random_state: int = 0) -> None:
        self.kernels = kernels
        self.width_factors = width_factors
        self.alphas = alphas
        self.n_folds = n_folds
        self.standardize = standardize
        self.random_state = random_state

    def _prep(self, f: Any) -> Any:
        if not self.standardize:
            return f
        return (np.asarray(f, dtype=np.float64) - self.mean_) / self.scale_

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Weighted rows get ``alpha / weight`` on the diagonal (weight 0 is refused)."""
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        yy = np.asarray(y, dtype=np.float64)
        w = _weights(sample_weight, len(yy))
        if np.any(w == 0):
            raise ValueError("kernel ridge needs positive sample weights")
        inv_w = 1.0 / w
        if self.standardize:
            self.mean_, self.scale_ = _standardizer(np.asarray(X, dtype=np.float64))
        z = self._prep(X)
        self.y_mean_ = float(np.average(yy, weights=w))
        yc = yy - self.y_mean_
        folds = _kfold(len(yy), self.n_folds, self.random_state)
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
                        ktr = k[np.ix_(tr, tr)] + alpha * np.diag(inv_w[tr])
                        try:
                            dual = cho_solve(cho_factor(ktr), yc[tr])
                        except LinAlgError:
                            err = np.inf
                            break
                        err += float((w[te] * np.abs(k[np.ix_(te, tr)] @ dual - yc[te])).sum())
                    if err / len(yy) < best[0]:
                        best = (err / len(yy), kernel, gamma, alpha)
        self.cv_mae_, self.kernel_, self.gamma_, self.alpha_ = best
        dist = _pairwise(z, z, self.kernel_)
        k = np.exp(-self.gamma_ * dist) + self.alpha_ * np.diag(inv_w)
        self.dual_coef_: Array = np.asarray(cho_solve(cho_factor(k), yc), dtype=np.float64)
        self.X_fit_: Any = z
        return self

    def predict(self, X: ArrayLike) -> Array:
        z = self._prep(X)
        out: Array = np.exp(-self.gamma_ * _pairwise(z, self.X_fit_, self.kernel_)) @ self.dual_coef_
        return out + self.y_mean_

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        if not isinstance(self.X_fit_, np.ndarray):
            raise ValueError("only kernel ridge models on dense features can be saved")
        mean = self.mean_ if self.standardize else np.zeros(0)
        scale = self.scale_ if self.standardize else np.zeros(0)
        return ({"kernel": self.kernel_, "gamma": self.gamma_, "alpha": self.alpha_,
                 "cv_mae": self.cv_mae_, "standardize": self.standardize},
                {"mean": mean, "scale": scale, "train": self.X_fit_, "dual": self.dual_coef_,
                 "y_mean": np.array([self.y_mean_])})

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any],
                    arrays: Mapping[str, Array]) -> KernelRidgeRegressor:
        r = cls(standardize=bool(params["standardize"]))
        r.kernel_ = str(params["kernel"])
        r.gamma_ = float(params["gamma"])
        r.alpha_ = float(params["alpha"])
        r.cv_mae_ = float(params["cv_mae"])
        r.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        r.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        r.X_fit_ = np.asarray(arrays["train"], dtype=np.float64)
        r.dual_coef_ = np.asarray(arrays["dual"], dtype=np.float64)
        r.y_mean_ = float(arrays["y_mean"][0])
        return r


_FlatTrees = tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.uint8], NDArray[np.int32],
                   NDArray[np.int32], NDArray[np.uint8], NDArray[np.float64], NDArray[np.int64]]
"""Node arrays of a tree ensemble in the C++ walker's order: feature, threshold, missing-left,
left, right, is-leaf, value, offsets."""

_JoinedTrees = tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.uint8], NDArray[np.int32],
                     NDArray[np.int32], NDArray[np.uint8], NDArray[np.float64], NDArray[np.int64],
                     NDArray[np.int64], NDArray[np.float64]]
"""Node arrays, tree offsets, trees per member and baselines of ``_core.predict_tree_ensembles``."""

_TREE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right",
                "is_leaf")


class GBMRegressor(_Params):
    """Gradient-boosted trees (HistGradientBoostingRegressor) exported to arrays.

    Leaf count and L2 regularisation by k-fold CV on the training data; the number of trees by
    early stopping on a held-out tenth of it. Prediction walks the exported trees in the C++ core.
    """

    kind: ClassVar[str] = "gbm"

    _flat_key: int | None = None
    _flat: _FlatTrees

    def __init__(self, grid: Sequence[Mapping[str, Any]] = ({"max_leaf_nodes": 15},
                                                             {"max_leaf_nodes": 31}),
                 learning_rate: float = 0.1, max_iter: int = 1000, n_folds: int = 3,
                 random_state: int = 0, n_threads: int = 0) -> None:
        self.grid = grid
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_folds = n_folds
        self.random_state = random_state
        self.n_threads = n_threads
        """Threads of the C++ tree walk in :meth:`predict` (0: all cores), like scikit-learn's n_jobs."""

    def _model(self, params: Mapping[str, Any]) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=self.max_iter, early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=30, random_state=self.random_state, **params)

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        f = np.asarray(X, dtype=np.float64)
        yy = np.asarray(y, dtype=np.float64)
        w = _weights(sample_weight, len(yy))
        grid = [dict(g) for g in self.grid]
        best: tuple[float, dict[str, Any]] = (np.inf, grid[0])
        if len(grid) > 1:
            for params in grid:
                err = 0.0
                for tr, te in _kfold(len(yy), self.n_folds, self.random_state):
                    m = self._model(params).fit(f[tr], yy[tr], sample_weight=w[tr])
                    err += float((w[te] * np.abs(m.predict(f[te]) - yy[te])).sum())
                if err < best[0]:
                    best = (err, params)
        self.params_ = dict(best[1])
        model = self._model(self.params_).fit(f, yy, sample_weight=w)
        self.params_["n_iter"] = int(model.n_iter_)
        self.baseline_ = float(np.ravel(model._baseline_prediction)[0])
        trees = [p[0].nodes for p in model._predictors]
        self.offsets_ = np.cumsum([0] + [len(t) for t in trees]).astype(np.int64)
        allnodes = np.concatenate(trees)
        self.nodes_ = {k: np.asarray(allnodes[k], dtype=np.float64) for k in _TREE_FIELDS}
        return self

    def predict(self, X: ArrayLike) -> Array:
        """Sum of the trees' leaf values, walked in the C++ core (GIL released, all cores)."""
        from defectspace import _core

        f = np.ascontiguousarray(X, dtype=np.float64)
        feature, threshold, missing_left, left, right, is_leaf, value, offsets = self._flat_nodes()
        out: Array = _core.predict_tree_ensemble(f, feature, threshold, missing_left, left, right,
                                                 is_leaf, value, offsets, float(self.baseline_),
                                                 n_threads=self.n_threads)
        return out

    def predict_on_columns(self, X: ArrayLike, columns: NDArray[np.int64]) -> Array:
        """:meth:`predict` of ``X[:, columns]`` without building it: the trees' features are mapped
        to ``X``'s columns instead (an ensemble member on a column subset copied 20 MB per
        4096 rows, 4x the trees' own time). The same bits as on the copy."""
        from defectspace import _core

        f = np.ascontiguousarray(X, dtype=np.float64)
        flat = self._flat_nodes()
        tag = (id(flat[0]), columns.tobytes())
        if getattr(self, "_remap_key", None) != tag:
            self._remap = np.asarray(columns, dtype=np.int64)[flat[0]].astype(np.int32)
            self._remap_key = tag
        out: Array = _core.predict_tree_ensemble(f, self._remap, *flat[1:], float(self.baseline_),
                                                 n_threads=self.n_threads)
        return out

    def _flat_nodes(self) -> _FlatTrees:
        """The node arrays in the dtypes of the C++ tree walker (cached per fitted model)."""
        key = id(self.nodes_)
        if self._flat_key != key:
            nd = self.nodes_
            self._flat = (nd["feature_idx"].astype(np.int32), np.ascontiguousarray(nd["num_threshold"]),
                          nd["missing_go_to_left"].astype(np.uint8), nd["left"].astype(np.int32),
                          nd["right"].astype(np.int32), nd["is_leaf"].astype(np.uint8),
                          np.ascontiguousarray(nd["value"]), self.offsets_.astype(np.int64))
            self._flat_key = key
        return self._flat

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        arrays = {f"node_{k}": v for k, v in self.nodes_.items()}
        arrays["offsets"] = self.offsets_.astype(np.float64)
        arrays["baseline"] = np.array([self.baseline_])
        return {"params": self.params_, "learning_rate": self.learning_rate}, arrays

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> GBMRegressor:
        r = cls(learning_rate=float(params["learning_rate"]))
        r.params_ = dict(params["params"])
        r.nodes_ = {k: np.asarray(arrays[f"node_{k}"], dtype=np.float64) for k in _TREE_FIELDS}
        r.offsets_ = np.asarray(arrays["offsets"]).astype(np.int64)
        r.baseline_ = float(arrays["baseline"][0])
        return r


_RESAMPLING = ("bootstrap", "subsample", "none")


def _ranges(columns: Any) -> list[tuple[int, int]] | None:
    """``None``, ``[lo, hi]`` or ``[[lo, hi], ...]`` as a list of ``(lo, hi)`` column ranges."""
    if columns is None:
        return None
    cols = list(columns)
    if len(cols) == 2 and all(isinstance(c, (int, np.integer)) for c in cols):
        cols = [cols]
    out = [(int(lo), int(hi)) for lo, hi in cols]
    if not out or any(lo < 0 or hi <= lo for lo, hi in out):
        raise ValueError(f"columns must be [start, stop) ranges with 0 <= start < stop, got {columns!r}")
    return out


def _column_index(ranges: list[tuple[int, int]]) -> NDArray[np.int64]:
    return np.concatenate([np.arange(lo, hi) for lo, hi in ranges])


class EnsembleRegressor(_Params):
    """A weighted average of regressors, each fitted on a resampling of the rows.

    ``members`` lists member specifications, each a mapping with ``kind`` (``"ridge"``, ``"krr"``
    or ``"gbm"``), optional ``settings`` (the member's constructor settings), ``columns``
    (the ``[start, stop)`` ranges of the features it sees, e.g. ``[[0, 4], [584, 644]]``; default
    all), ``weight`` (of the specification in
    the average; default 1), ``copies`` (default ``n_copies``) and ``resample`` (default
    ``resample``): ``"bootstrap"`` (rows drawn with replacement), ``"subsample"`` (a random
    ``subsample`` fraction without replacement) or ``"none"`` (all rows; copies differ by seed only).
    The prediction is ``sum_s w_s mean_c member_{s,c}``; an ensemble of ridge models on all
    columns is itself linear (:meth:`linear_coefficients`).
    """

    kind: ClassVar[str] = "ensemble"

    def __init__(self, members: Sequence[Mapping[str, Any]] = ({"kind": "ridge"},), n_copies: int = 8,
                 resample: str = "bootstrap", subsample: float = 0.8, random_state: int = 0,
                 n_threads: int = 0) -> None:
        self.members = members
        self.n_copies = n_copies
        self.resample = resample
        self.subsample = subsample
        self.random_state = random_state
        self.n_threads = n_threads
        """Threads of members that have the setting (the GBM's C++ tree walk); 0: all cores."""

    def _specs(self) -> list[dict[str, Any]]:
        out = []
        for i, m in enumerate(self.members):
            spec: dict[str, Any] = {"kind": str(m["kind"]), "settings": dict(m.get("settings", {})),
                    "columns": _ranges(m.get("columns")),
                    "weight": float(m.get("weight", 1.0)), "copies": int(m.get("copies", self.n_copies)),
                    "resample": str(m.get("resample", self.resample))}
            if spec["kind"] not in _CLASSES:
                raise ValueError(f"member {i}: unknown regressor {spec['kind']!r}; known: ridge, krr, gbm")
            if spec["resample"] not in _RESAMPLING:
                raise ValueError(f"member {i}: resample must be one of {_RESAMPLING}, got "
                                 f"{spec['resample']!r}")
            if spec["copies"] < 1 or spec["weight"] <= 0:
                raise ValueError(f"member {i}: needs copies >= 1 and weight > 0, got {spec['copies']} "
                                 f"and {spec['weight']}")
            out.append(spec)
        if not out:
            raise ValueError("an ensemble needs at least one member")
        return out

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        f = np.asarray(X, dtype=np.float64)
        yy = np.asarray(y, dtype=np.float64)
        n = len(yy)
        sw = _weights(sample_weight, n)
        rng = np.random.default_rng(self.random_state)
        specs = self._specs()
        total = sum(s["weight"] for s in specs)
        self._joined_key: tuple[int, ...] | None = None  # new members: the joined trees are built again
        self.members_: list[Regressor] = []
        self.columns_: list[list[tuple[int, int]] | None] = []
        weights = []
        for spec in specs:
            cols = spec["columns"]
            sub = f if cols is None else f[:, _column_index(cols)]
            for _ in range(spec["copies"]):
                if spec["resample"] == "bootstrap":
                    idx = rng.integers(0, n, n)
                elif spec["resample"] == "subsample":
                    idx = np.sort(rng.choice(n, max(2, round(self.subsample * n)), replace=False))
                else:
                    idx = np.arange(n)
                member = make_regressor(spec["kind"], **spec["settings"])
                if "random_state" in member.get_params():
                    member.set_params(random_state=int(rng.integers(0, 2**31 - 1)))
                self.members_.append(member.fit(sub[idx], yy[idx], sample_weight=sw[idx]))
                self.columns_.append(cols)
                weights.append(spec["weight"] / total / spec["copies"])
        self.weights_: Array = np.asarray(weights, dtype=np.float64)
        self.n_features_in_ = f.shape[1]
        return self

    def predict_members(self, X: ArrayLike) -> Array:
        """(n_members, n) every member's prediction; :attr:`weights_` average them to :meth:`predict`.

        The boosted-tree members are walked together in one pass of the C++ core over the rows
        (each row read from memory once, not once per member); the same bits as one by one."""
        from defectspace import _core

        f = np.asarray(X, dtype=np.float64)
        out = np.empty((len(self.members_), f.shape[0]))
        trees = self._joined_trees()
        if trees is not None and f.shape[0]:
            which, arrays = trees
            fe, th, ml, le, ri, lf, va, off, member_trees, baselines = arrays
            rows = np.ascontiguousarray(f)
            out[which] = _core.predict_tree_ensembles(rows, fe, th, ml, le, ri, lf, va, off, member_trees,
                                                      baselines, n_threads=self.n_threads)
        for i, (member, cols) in enumerate(zip(self.members_, self.columns_, strict=True)):
            if trees is not None and i in trees[0]:
                continue
            if member.get_params().get("n_threads", self.n_threads) != self.n_threads:
                member = copy.copy(member).set_params(n_threads=self.n_threads)
            if cols is None:
                out[i] = member.predict(f)
            else:
                out[i] = member.predict(f[:, _column_index(cols)])
        return out

    def _joined_trees(self) -> tuple[list[int], _JoinedTrees] | None:
        """The boosted-tree members' nodes one after another, features mapped to the whole row:
        (member indices, the arrays of ``_core.predict_tree_ensembles``); cached per fit."""
        key = tuple(id(m) for m in self.members_)
        if getattr(self, "_joined_key", None) == key:
            cached: tuple[list[int], _JoinedTrees] | None = self._joined
            return cached
        which = [i for i, m in enumerate(self.members_) if isinstance(m, GBMRegressor)]
        joined: tuple[list[int], _JoinedTrees] | None = None
        if which:
            parts: list[list[NDArray[Any]]] = [[] for _ in range(7)]
            offsets, member_trees, baselines = [np.zeros(1, np.int64)], [0], []
            for i in which:
                member, cols = self.members_[i], self.columns_[i]
                assert isinstance(member, GBMRegressor)
                flat = member._flat_nodes()
                feature = flat[0] if cols is None else _column_index(cols)[flat[0]].astype(np.int32)
                leaf_safe = np.where(flat[5] > 0, 0, feature).astype(np.int32)
                arrays: tuple[NDArray[Any], ...] = (leaf_safe, *flat[1:7])
                for k, a in enumerate(arrays):
                    parts[k].append(a)
                offsets.append(flat[7][1:] + offsets[-1][-1])
                member_trees.append(member_trees[-1] + len(flat[7]) - 1)
                baselines.append(float(member.baseline_))
            fe, th, ml, le, ri, lf, va = (np.ascontiguousarray(np.concatenate(a)) for a in parts)
            joined = (which, (fe, th, ml, le, ri, lf, va, np.concatenate(offsets).astype(np.int64),
                              np.asarray(member_trees, np.int64), np.asarray(baselines, np.float64)))
        self._joined: tuple[list[int], _JoinedTrees] | None = joined
        self._joined_key = key
        return joined

    def _weighted(self, p: Array) -> Array:
        # elementwise in a fixed order, not a matrix product: BLAS sums a column differently by
        # its place in the batch, and a placement must get the same bits in any batch
        out = np.zeros(p.shape[1])
        for w, row in zip(self.weights_, p, strict=True):
            out += w * row
        return out

    def predict(self, X: ArrayLike) -> Array:
        return self._weighted(self.predict_members(X))

    def mean_and_spread(self, X: ArrayLike) -> tuple[Array, Array]:
        """The prediction and the weighted standard deviation of the members around it."""
        p = self.predict_members(X)
        mean = self._weighted(p)
        spread: Array = np.sqrt(np.maximum(self._weighted((p - mean) ** 2), 0.0))
        return mean, spread

    def linear_coefficients(self) -> tuple[Array, float] | None:
        """``(coef, intercept)`` of the average when every member is a ridge model, else None."""
        if not all(isinstance(m, RidgeRegressor) for m in self.members_):
            return None
        coef = np.zeros(self.n_features_in_)
        intercept = 0.0
        for w, m, cols in zip(self.weights_, self.members_, self.columns_, strict=True):
            assert isinstance(m, RidgeRegressor)
            idx = np.arange(self.n_features_in_) if cols is None else _column_index(cols)
            coef[idx] += w * m.coef_
            intercept += float(w) * m.intercept_
        return coef, intercept

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        params: dict[str, Any] = {"n_features": self.n_features_in_, "members": []}
        arrays: dict[str, Array] = {"weights": self.weights_}
        for i, (m, cols) in enumerate(zip(self.members_, self.columns_, strict=True)):
            p, a = m.to_arrays()
            params["members"].append({"kind": m.kind, "params": p,
                                      "columns": None if cols is None else [list(c) for c in cols]})
            arrays.update({f"{i}/{k}": v for k, v in a.items()})
        return params, arrays

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> EnsembleRegressor:
        r = cls()
        r.n_features_in_ = int(params["n_features"])
        r.weights_ = np.asarray(arrays["weights"], dtype=np.float64)
        r.members_, r.columns_ = [], []
        for i, m in enumerate(params["members"]):
            sub = {k[len(f"{i}/"):]: v for k, v in arrays.items() if k.startswith(f"{i}/")}
            r.members_.append(regressor_from_arrays(m["kind"], m["params"], sub))
            r.columns_.append(_ranges(m["columns"]))
        return r


_CLASSES: dict[str, type[RidgeRegressor] | type[KernelRidgeRegressor] | type[GBMRegressor]
               | type[EnsembleRegressor]] = {
    "ridge": RidgeRegressor, "krr": KernelRidgeRegressor, "gbm": GBMRegressor,
    "ensemble": EnsembleRegressor}

_LOADERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Array]], Regressor]] = {
    kind: cls.from_arrays for kind, cls in _CLASSES.items()}


def make_regressor(kind: str, **settings: Any) -> Regressor:
    """A fresh regressor of kind ``"ridge"``, ``"krr"``, ``"gbm"`` or ``"ensemble"`` with
    constructor settings."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown regressor {kind!r}; known: {', '.join(REGRESSORS)}")
    return _CLASSES[kind](**settings)


def regressor_from_arrays(kind: str, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> Regressor:
    """A regressor saved with :meth:`Regressor.to_arrays` (the inverse)."""
    if kind not in _LOADERS:
        raise ValueError(f"unknown regressor {kind!r}; known: {', '.join(REGRESSORS)}")
    return _LOADERS[kind](params, arrays)
