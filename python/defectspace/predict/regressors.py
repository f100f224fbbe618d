"""Regressors of the property predictors, behind one :class:`Regressor` protocol that follows
scikit-learn's conventions: settings in the constructor (:meth:`get_params`, :meth:`set_params`),
``fit(X, y)`` returning the regressor, learned state in attributes ending in ``_``,
``predict(X)``. Each also saves itself as plain numbers (:meth:`to_arrays`, ``from_arrays``):
no pickles in a saved predictor.

* :class:`RidgeRegressor` (``"ridge"``): ridge on standardised features, alpha by leave-one-out CV;
* :class:`KernelRidgeRegressor` (``"krr"``): RBF or Laplacian kernel ridge, k-fold CV;
* :class:`GBMRegressor` (``"gbm"``): scikit-learn's HistGradientBoostingRegressor, exported to
  arrays and walked in numpy.

scikit-learn is needed to fit, not to predict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from typing import Self

Array = NDArray[np.float64]

REGRESSORS = ("ridge", "krr", "gbm")
"""Names accepted by :func:`make_regressor`."""


class Regressor(Protocol):
    """What a property predictor needs of its regressor (scikit-learn's estimator conventions)."""

    kind: ClassVar[str]
    """Name in saved predictors: ``"ridge"``, ``"krr"`` or ``"gbm"``."""

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Learns from features ``X`` (n, d) and targets ``y`` (n,); returns the regressor."""
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


def _standardizer(f: Array) -> tuple[Array, Array]:
    mean = f.mean(axis=0)
    scale = f.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


class RidgeRegressor(_Params):
    """Ridge on standardised features, alpha by efficient leave-one-out CV (RidgeCV).

    ``penalty`` (per column, after standardising) scales how strongly each coefficient is shrunk;
    columns with a small penalty (an engine prior, defect counts) are nearly free.
    """

    kind: ClassVar[str] = "ridge"

    def __init__(self, alphas: Sequence[float] = tuple(10.0 ** np.arange(-6, 4)),
                 penalty: ArrayLike | None = None, standardize: bool = True) -> None:
        self.alphas = alphas
        self.penalty = penalty
        self.standardize = standardize

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        from sklearn.linear_model import RidgeCV

        f = np.asarray(X, dtype=np.float64)
        mean, scale = _standardizer(f) if self.standardize else (np.zeros(f.shape[1]),
                                                                 np.ones(f.shape[1]))
        if self.penalty is not None:
            scale = scale * np.sqrt(np.asarray(self.penalty, dtype=np.float64))
        z = (f - mean) / scale
        model = RidgeCV(alphas=tuple(float(a) for a in self.alphas)).fit(z, np.asarray(y))
        self.alpha_ = float(model.alpha_)
        self.coef_: Array = np.asarray(model.coef_, dtype=np.float64) / scale
        self.intercept_ = float(model.intercept_) - float(mean @ self.coef_)
        return self

    def predict(self, X: ArrayLike) -> Array:
        out: Array = np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
        return out

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, Array]]:
        return {"alpha": self.alpha_}, {"coef": self.coef_, "intercept": np.array([self.intercept_])}

    @classmethod
    def from_arrays(cls, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> RidgeRegressor:
        r = cls()
        r.alpha_ = float(params["alpha"])
        r.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        r.intercept_ = float(arrays["intercept"][0])
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

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        yy = np.asarray(y, dtype=np.float64)
        if self.standardize:
            self.mean_, self.scale_ = _standardizer(np.asarray(X, dtype=np.float64))
        z = self._prep(X)
        self.y_mean_ = float(np.mean(yy))
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
                        ktr = k[np.ix_(tr, tr)] + alpha * np.eye(len(tr))
                        try:
                            dual = cho_solve(cho_factor(ktr), yc[tr])
                        except LinAlgError:
                            err = np.inf
                            break
                        err += float(np.abs(k[np.ix_(te, tr)] @ dual - yc[te]).sum())
                    if err / len(yy) < best[0]:
                        best = (err / len(yy), kernel, gamma, alpha)
        self.cv_mae_, self.kernel_, self.gamma_, self.alpha_ = best
        dist = _pairwise(z, z, self.kernel_)
        k = np.exp(-self.gamma_ * dist) + self.alpha_ * np.eye(len(yy))
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

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        f = np.asarray(X, dtype=np.float64)
        yy = np.asarray(y, dtype=np.float64)
        grid = [dict(g) for g in self.grid]
        best: tuple[float, dict[str, Any]] = (np.inf, grid[0])
        if len(grid) > 1:
            for params in grid:
                err = 0.0
                for tr, te in _kfold(len(yy), self.n_folds, self.random_state):
                    m = self._model(params).fit(f[tr], yy[tr])
                    err += float(np.abs(m.predict(f[te]) - yy[te]).sum())
                if err < best[0]:
                    best = (err, params)
        self.params_ = dict(best[1])
        model = self._model(self.params_).fit(f, yy)
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


_CLASSES: dict[str, type[RidgeRegressor] | type[KernelRidgeRegressor] | type[GBMRegressor]] = {
    "ridge": RidgeRegressor, "krr": KernelRidgeRegressor, "gbm": GBMRegressor}

_LOADERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Array]], Regressor]] = {
    kind: cls.from_arrays for kind, cls in _CLASSES.items()}


def make_regressor(kind: str, **settings: Any) -> Regressor:
    """A fresh regressor of kind ``"ridge"``, ``"krr"`` or ``"gbm"`` with constructor settings."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown regressor {kind!r}; known: {', '.join(REGRESSORS)}")
    return _CLASSES[kind](**settings)


def regressor_from_arrays(kind: str, params: Mapping[str, Any], arrays: Mapping[str, Array]) -> Regressor:
    """A regressor saved with :meth:`Regressor.to_arrays` (the inverse)."""
    if kind not in _LOADERS:
        raise ValueError(f"unknown regressor {kind!r}; known: {', '.join(REGRESSORS)}")
    return _LOADERS[kind](params, arrays)
