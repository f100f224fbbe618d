"""Inverse design: from property windows to distinct symmetry classes of defect placements.

:func:`design` returns the ``n`` best distinct classes of a composition (or a range of
compositions) whose predicted properties lie inside every target window, ranked by an objective
(minimise or maximise one property) or, without one, by the probability of lying inside every
window under the predictions' uncertainty. The search fits the space:

* **exhaustive** where the compositions' classes can be enumerated (the C++ core enumerates
  every class exactly once; each is scored once), so the result is exact for the model;
* **parallel tempering** otherwise (:mod:`defectspace.pipeline.annealing`), deduplicated by
  canonical key, every scored class kept as a candidate;
* **proven optimal** where the objective's model is a pair cluster expansion
  (:mod:`defectspace.pipeline.groundstate`): HiGHS solves the integer program and the result
  reports the optimum, the bound and the search's gap to it.

With an engine (``verify``), the most promising candidates are labelled by it, at most
``budget`` calls, the surrogate is corrected with what it measured (a shift and a widened
uncertainty), and the search goes on; engine results live in a resumable label file in
``work_dir``, so a killed and restarted design loses none and computes none twice.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from defectspace.canonical import Canonicalizer, key_to_string
from defectspace.canonical import n_placements as canonical_n_placements
from defectspace.descriptors import blas_threads
from defectspace.lattice import Lattice
from defectspace.pipeline.annealing import ClassArchive, parallel_tempering
from defectspace.pipeline.verification import ENGINE_PROPERTY, EngineLabels, ModelScale
from defectspace.placement import composition, counts_vector, format_2dmd

if TYPE_CHECKING:
    import pandas as pd

    from defectspace.pipeline.groundstate import GroundState

Array = NDArray[np.float64]

EXHAUSTIVE_LIMIT = 1_000_000
"""Largest number of classes (summed over the compositions) that is scored exhaustively."""

_SIGMA_PER_MAE = math.sqrt(math.pi / 2)  # sigma of a normal distribution with unit mean |error|


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class PropertyWindow:
    """A wanted range of one predicted property (eV)."""

    name: str
    """Property name, e.g. ``"homo_lumo_gap"``."""
    low: float
    """Lower end (inclusive)."""
    high: float
    """Upper end (inclusive)."""

    @property
    def centre(self) -> float:
        """Middle of the window."""
        return 0.5 * (self.low + self.high)


@dataclass(frozen=True)
class Objective:
    """Minimise or maximise one predicted property."""

    name: str
    """Property name."""
    maximize: bool = False
    """Maximise instead of minimise."""


def parse_window(text: str) -> PropertyWindow:
    """``"homo_lumo_gap=0.90:0.95"`` -> a window; refuses malformed or empty ones."""
    name, sep, rng = text.partition("=")
    low_t, colon, high_t = rng.partition(":")
    if not sep or not colon or not name.strip():
        raise ValueError(f"a target looks like 'homo_lumo_gap=0.90:0.95', got {text!r}")
    try:
        low, high = float(low_t), float(high_t)
    except ValueError:
        raise ValueError(f"target {text!r}: {low_t!r} and {high_t!r} must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"target {text!r}: the window must be finite")
    if low > high:
        raise ValueError(f"target {text!r} is empty: {low} > {high}")
    return PropertyWindow(name.strip(), low, high)


def parse_count_ranges(text: str) -> dict[str, tuple[int, int]]:
    """``"Mo->W=2,S->V=2..6"`` -> ``{"Mo->W": (2, 2), "S->V": (2, 6)}``."""
    out: dict[str, tuple[int, int]] = {}
    for item in text.split(","):
        label, sep, value = item.strip().rpartition("=")
        lo_t, dots, hi_t = value.partition("..")
        if not dots:
            hi_t = lo_t
        if not sep or not label.strip() or not lo_t.strip().isdigit() or not hi_t.strip().isdigit():
            raise ValueError(f"counts items look like 'S->V=3' or 'S->V=2..6', got {item.strip()!r}")
        lo, hi = int(lo_t), int(hi_t)
        if lo > hi:
            raise ValueError(f"count range {item.strip()!r} is empty: {lo} > {hi}")
        if label.strip() in out:
            raise ValueError(f"{label.strip()!r} is given twice in {text!r}")
        out[label.strip()] = (lo, hi)
    return out


def compositions(
    lattice: Lattice, ranges: Mapping[str, tuple[int, int]] | Mapping[str, int]
) -> list[NDArray[np.int64]]:
    """Every count vector (n_kinds + 1, entry 0 unused) the ranges allow that the lattice can hold."""
    labels = list(ranges)
    spans = []
    for label in labels:
        r = ranges[label]
        lo, hi = (r, r) if isinstance(r, int) else r
        spans.append(range(int(lo), int(hi) + 1))
    out = []
    fits = False
    for combo in itertools.product(*spans):
        vec = counts_vector(dict(zip(labels, combo, strict=True)), lattice)
        if vec[1:].sum() == 0:
            continue
        if _fits(vec, lattice):
            fits = True
            out.append(vec)
    if not out:
        text = ",".join(
            f"{k}={r}" if isinstance(r, int) else f"{k}={r[0]}" if r[0] == r[1] else f"{k}={r[0]}..{r[1]}"
            for k, r in ranges.items()
        )
        why = (
            "hold no defect"
            if not fits and all(s.stop == 1 for s in spans)
            else f"do not fit the {lattice.supercell[0]}x{lattice.supercell[1]} supercell"
        )
        raise ValueError(f"the counts {text} {why}")
    return out


def _fits(vec: NDArray[np.int64], lattice: Lattice) -> bool:
    for t in range(len(lattice.host_types)):
        need = sum(int(vec[k.code]) for k in lattice.kinds if lattice.kind_site_type[k.code - 1] == t)
        if need > int((lattice.site_types == t).sum()):
            return False
    return True


def n_placements(vec: NDArray[np.int64], lattice: Lattice) -> int:
    """Number of placements (not classes) of a composition given as a count vector with entry 0
    unused: :func:`defectspace.canonical.n_placements`."""
    return canonical_n_placements(lattice, vec[1:])


# --------------------------------------------------------------------------- the surrogate
def predict_mean_std(predictor: Any, states: NDArray[np.uint8], lattice: Lattice) -> tuple[Array, Array]:
    """A predictor's mean and 1-sigma uncertainty (eV) for placements.

    Predictors with ``predict_with_std`` give their own; otherwise the uncertainty is the normal
    sigma of the cross-validated MAE stored with the model (``sqrt(pi/2) * MAE``), the same for
    every row.
    """
    if hasattr(predictor, "predict_with_std"):
        mean, std = predictor.predict_with_std(states, lattice)
        return np.asarray(mean, np.float64), np.asarray(std, np.float64)
    mean = np.asarray(predictor.predict(states, lattice), np.float64)
    mae = float(predictor.info.get("cv_mae_meV", float("nan"))) / 1000
    if not math.isfinite(mae):
        raise ValueError(f"the {predictor.target} predictor states no uncertainty (no cv_mae_meV)")
    return mean, np.full(len(mean), _SIGMA_PER_MAE * mae)


@dataclass
class Correction:
    """What engine labels taught about one property: a shift and an extra variance (eV, eV^2)."""

    shift: float = 0.0
    extra_var: float = 0.0
    n_labels: int = 0


class Surrogate:
    """Predicted mean and uncertainty of several properties, with engine corrections.

    ``scores(states)`` returns (n, 2 * n_properties): the means, then the sigmas, of the
    properties in :attr:`names` order -- what :class:`ClassArchive` stores.
    """

    def __init__(self, predictors: Mapping[str, Any], lattice: Lattice,
                 with_std: Sequence[str] | None = None) -> None:
        if not predictors:
            raise ValueError("no predictor given")
        for name, p in predictors.items():
            p._check_lattice(lattice)
            if p.target != name:
                raise ValueError(f"predictor for {name!r} predicts {p.target!r}")
        self.predictors = dict(predictors)
        self.lattice = lattice
        self.names: tuple[str, ...] = tuple(predictors)
        self.with_std = set(self.names if with_std is None else with_std)
        self.corrections: dict[str, Correction] = {n: Correction() for n in self.names}
        self._typical: dict[str, float] = {}
        self._floors: dict[tuple[str, tuple[int, ...]], float] = {}
        self._sampler: Canonicalizer | None = None

    def sigma_floor(self, name: str, counts: NDArray[np.int64]) -> float:
        """The median sigma of ``name`` over 256 random placements of one composition (``counts``:
        defects per kind): no design of that composition gets a smaller one.

        The calibration maps an ensemble's spread to an error bar on rows nobody chose; a search
        for classes likely inside a window selects for a small spread, where that map no longer
        holds (open-space benchmark, 24 defects: the 60 classes design labelled had predicted
        sigmas of 7-10 meV and GFN1-xTB errors of 61-77 meV RMS; screen's randomly drawn kept
        classes 58 meV and 68 meV)."""
        key = (name, tuple(int(v) for v in counts))
        if key not in self._floors:
            if self._sampler is None:
                self._sampler = Canonicalizer(self.lattice)
            sample = self._sampler.sample(np.asarray(counts, np.int64), 256, 12345)
            self._floors[key] = float(np.median(predict_mean_std(self.predictors[name], sample,
                                                                 self.lattice)[1]))
        return self._floors[key]

    def scores(self, states: NDArray[np.uint8]) -> Array:
        """(n, 2 * n_properties) means and sigmas before any engine correction; the sigmas of
        properties not in ``with_std`` are NaN (a search that only minimises a property needs no
        sigma: the ridge posterior was a third of the search's time), the others at least the
        :meth:`sigma_floor` of each placement's composition."""
        cols_m, cols_s = [], []
        comp = composition(states, self.lattice)[:, 1:] if len(states) else np.zeros((0, 0), np.int64)
        for name in self.names:
            if name in self.with_std:
                m, s = predict_mean_std(self.predictors[name], states, self.lattice)
                if len(states):
                    uniq, inverse = np.unique(comp, axis=0, return_inverse=True)
                    floors = np.array([self.sigma_floor(name, u) for u in uniq])
                    s = np.maximum(s, floors[np.ravel(inverse)])
            else:
                m = np.asarray(self.predictors[name].predict(states, self.lattice), np.float64)
                s = np.full(len(m), np.nan)
                if name not in self._typical and len(states):
                    self._typical[name] = float(np.median(predict_mean_std(
                        self.predictors[name], states[:256], self.lattice)[1]))
            cols_m.append(m)
            cols_s.append(s)
        return np.column_stack(cols_m + cols_s) if len(states) else np.zeros((0, 2 * len(self.names)))

    def typical_std(self, name: str, std: Array) -> float:
        """A fixed sigma scale of ``name``: its median sigma on the first placements scored (the
        annealing energy must not change its units from batch to batch)."""
        if name not in self._typical:
            finite = std[np.isfinite(std)]
            self._typical[name] = float(np.median(finite)) if len(finite) else 1.0
        return max(self._typical[name], 1e-6)

    def corrected(self, scores: Array) -> tuple[Array, Array]:
        """(means, sigmas), each (n, n_properties), with the engine corrections applied."""
        k = len(self.names)
        mean = scores[:, :k].copy()
        std = scores[:, k:].copy()
        for i, name in enumerate(self.names):
            c = self.corrections[name]
            mean[:, i] += c.shift
            std[:, i] = np.sqrt(std[:, i] ** 2 + c.extra_var)
        return mean, std

    def learn(self, name: str, predicted: Array, measured: Array) -> Correction:
        """Updates the correction of ``name`` from engine labels of classes it had predicted.

        The shift is the mean residual shrunk towards 0 (one pseudo-label of weight); the extra
        variance is what the residuals' spread shows beyond the predicted sigma.
        """
        r = np.asarray(measured, np.float64) - np.asarray(predicted, np.float64)
        r = r[np.isfinite(r)]
        c = Correction()
        if len(r):
            c.shift = float(r.sum() / (len(r) + 1))
            c.extra_var = float(np.mean((r - c.shift) ** 2)) if len(r) > 1 else 0.0
            c.n_labels = len(r)
        self.corrections[name] = c
        return c


# --------------------------------------------------------------------------- ranking
def window_probability(
    mean: Array, std: Array, windows: Sequence[PropertyWindow], names: Sequence[str]
) -> Array:
    """(n,) probability that every windowed property lies in its window (independent normals)."""
    from scipy.special import ndtr

    p = np.ones(mean.shape[0])
    for w in windows:
        i = names.index(w.name)
        s = np.maximum(std[:, i], 1e-12)
        p *= ndtr((w.high - mean[:, i]) / s) - ndtr((w.low - mean[:, i]) / s)
    return p


def window_distance(mean: Array, windows: Sequence[PropertyWindow], names: Sequence[str]) -> Array:
    """(n,) summed distance (eV) of the predicted means outside their windows (0 inside all)."""
    d = np.zeros(mean.shape[0])
    for w in windows:
        m = mean[:, names.index(w.name)]
        d += np.maximum(0.0, np.maximum(w.low - m, m - w.high))
    return d


def _energy(
    surrogate: Surrogate, windows: Sequence[PropertyWindow], objective: Objective | None
) -> Callable[[Array], Array]:
    """The annealing energy: the objective in units of its sigma plus a window penalty, or the
    negative log-probability of lying inside every window."""
    names = list(surrogate.names)

    def energy(scores: Array) -> Array:
        mean, std = surrogate.corrected(scores)
        if objective is None:
            p = window_probability(mean, std, windows, names)
            out: Array = -np.log(np.maximum(p, 1e-300))
            return out
        i = names.index(objective.name)
        sign = -1.0 if objective.maximize else 1.0
        scale = surrogate.typical_std(objective.name, std[:, i])
        penalty = np.zeros(len(mean))
        for w in windows:
            j = names.index(w.name)
            m, s = mean[:, j], np.maximum(std[:, j], 1e-6)
            penalty += np.maximum(0.0, np.maximum(w.low - m, m - w.high)) / s
        return sign * mean[:, i] / scale + 10.0 * penalty

    return energy


def rank(
    mean: Array,
    std: Array,
    names: Sequence[str],
    windows: Sequence[PropertyWindow],
    objective: Objective | None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_], Array, Array]:
    """Order of candidates: (order, in_window, p_window, distance).

    Candidates whose predicted means lie inside every window come first: by the objective when
    there is one, otherwise by the probability of lying inside every window (then closeness to
    the window centres). The rest follow by their distance to the windows.
    """
    p = window_probability(mean, std, windows, names)
    dist = window_distance(mean, windows, names)
    inside = dist == 0
    centre = np.zeros(len(mean))
    for w in windows:
        half = max(0.5 * (w.high - w.low), 1e-9)
        centre += np.abs(mean[:, names.index(w.name)] - w.centre) / half
    if objective is not None:
        obj = mean[:, names.index(objective.name)] * (-1.0 if objective.maximize else 1.0)
        primary = np.where(inside, obj, np.inf)
        order = np.lexsort((centre, -p, dist, primary))
    else:
        order = np.lexsort((centre, -p, dist))
    return order.astype(np.int64), inside, p, dist


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class DesignResult:
    """The designs, best first, and how they were found."""

    lattice: Lattice
    """The supercell the placements live on."""
    states: NDArray[np.uint8]
    """(n, n_sites) uint8 canonical placement of each design."""
    keys: NDArray[np.uint8]
    """(n, key_bytes) uint8 canonical keys (all distinct)."""
    orbit_size: NDArray[np.int64]
    """(n,) placements in each class."""
    names: tuple[str, ...]
    """Predicted properties, in column order of ``mean`` and ``std``."""
    mean: Array
    """(n, n_properties) predicted means (eV), engine corrections applied."""
    std: Array
    """(n, n_properties) predicted 1-sigma uncertainties (eV)."""
    p_window: Array
    """(n,) probability of lying inside every window."""
    in_window: NDArray[np.bool_]
    """(n,) whether the predicted means lie inside every window."""
    distance: Array
    """(n,) distance (eV) of the predicted means outside the windows (0 inside)."""
    windows: tuple[PropertyWindow, ...]
    """The target windows."""
    objective: Objective | None
    """The objective, if any."""
    n_feasible: int
    """Scored classes whose predictions lie inside every window."""
    n_scored: int
    """Distinct classes scored (each exactly once)."""
    n_proposed: int
    """Candidates looked up (proposals, including repeats of known classes)."""
    exhaustive: bool
    """Whether every class of every composition was scored (the result is exact for the model)."""
    seconds: float
    """Wall time."""
    optimum: list[GroundState] = field(default_factory=list)
    """Per composition, the integer program's result where the objective's model allows one."""
    engine: str = ""
    """Verification engine, if any."""
    engine_value: Array = field(default_factory=lambda: np.zeros(0))
    """(n,) the engine's value of its property on the model's scale (NaN where not verified):
    what the windows are checked against (see :class:`ModelScale`)."""
    engine_calls: int = 0
    """Engine labels used (computed now or found in the work folder)."""
    engine_raw: Array = field(default_factory=lambda: np.zeros(0))
    """(n,) the engine's value as it measured it (NaN where not verified)."""
    engine_scale: str = ""
    """How engine values were brought onto the model's scale."""
    engine_failures: int = 0
    """Engine calls that gave no value (a failed or timed-out calculation, a worker that died);
    each is a row with its reason in the work folder's label file, and a rerun does not repeat it."""
    engine_log: str = ""
    """The label file of the verification engine (every result and failure with its reason)."""

    @property
    def proven_optimal(self) -> bool:
        """Whether the first design is proven optimal for the model: an exhaustive search, or an
        integer program whose optimum it matches, for every composition."""
        if self.exhaustive:
            return True
        if not self.optimum or not len(self.mean) or self.objective is None:
            return False
        i = self.names.index(self.objective.name)
        best = float(self.mean[0, i])
        return all(g.proven_optimal for g in self.optimum) and any(
            abs(g.value - best) <= 1e-9 * max(1.0, abs(best)) for g in self.optimum
        )

    @property
    def verified(self) -> NDArray[np.bool_]:
        """(n,) whether the engine labelled each design."""
        return np.isfinite(self.engine_value) if len(self.engine_value) else np.zeros(len(self.mean), bool)

    def to_frame(self) -> pd.DataFrame:
        """One row per design: id, defects (2DMD), canonical_key, orbit_size, every property with
        its uncertainty, p_window, in_window, distance_to_window, and the engine columns."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "id": [f"design{i}" for i in range(len(self.orbit_size))],
                "defects": format_2dmd(self.states, self.lattice),
                "canonical_key": key_to_string(self.keys),
                "orbit_size": self.orbit_size,
            }
        )
        for i, name in enumerate(self.names):
            df[name] = self.mean[:, i]
            df[f"{name}_std"] = self.std[:, i]
        df["p_window"] = self.p_window
        df["in_window"] = self.in_window
        df["distance_to_window"] = self.distance
        if self.engine:
            prop = ENGINE_PROPERTY[self.engine]
            df[f"{prop}_{self.engine}"] = self.engine_raw if len(self.engine_raw) else self.engine_value
            df[f"{prop}_{self.engine}_on_model_scale"] = self.engine_value
            df["engine_verified"] = self.verified
            w = next((w for w in self.windows if w.name == prop), None)
            inside = (self.engine_value >= w.low) & (self.engine_value <= w.high) if w else self.verified
            df[f"{self.engine}_in_window"] = np.where(self.verified, inside, False)
        return df

    def summary(self) -> str:
        """A few lines for stderr."""
        lines = [
            f"{len(self.orbit_size)} designs ({self.n_feasible} of {self.n_scored} scored classes "
            f"inside every window); {self.n_proposed} candidates looked up in {self.seconds:.1f} s; "
            f"search {'exhaustive (exact for the model)' if self.exhaustive else 'stochastic'}"
        ]
        for g in self.optimum:
            state = (
                "proven optimal"
                if g.proven_optimal
                else f"not proven within its time limit (bound {g.bound:.6f})"
            )
            lines.append(f"integer program: optimum {g.value:.6f} eV, {state}, {g.seconds:.1f} s")
        if self.optimum and self.objective is not None and len(self.mean):
            i = self.names.index(self.objective.name)
            best = (
                min(g.value for g in self.optimum)
                if not self.objective.maximize
                else max(g.value for g in self.optimum)
            )
            lines.append(
                f"best design {self.mean[0, i]:.6f} eV; gap to the integer program "
                f"{abs(self.mean[0, i] - best) * 1000:.3f} meV"
            )
        lines.append(
            "first design proven optimal for the model"
            if self.proven_optimal
            else "first design not proven optimal"
        )
        if self.engine:
            prop = ENGINE_PROPERTY[self.engine]
            w = next((w for w in self.windows if w.name == prop), None)
            ok = self.verified
            if w is not None:
                ok = ok & (self.engine_value >= w.low) & (self.engine_value <= w.high)
            lines.append(
                f"{self.engine}: {int(self.verified.sum())} designs verified"
                + (f", {int(ok.sum())} inside the {prop} window" if w else "")
                + f"; {self.engine_calls} engine labels used; {self.engine_scale}"
            )
            if self.engine_failures:
                lines.append(
                    f"{self.engine}: {self.engine_failures} of {self.engine_calls} engine calls gave no "
                    f"value (reasons in the error column of {self.engine_log})"
                )
        return "\n".join(lines)


# --------------------------------------------------------------------------- the search
Progress = Callable[[str, int], None]


def _one_blas_thread(fn: Callable[..., DesignResult]) -> Callable[..., DesignResult]:
    """Runs ``fn`` with numpy's BLAS on one thread: the search's batches are small and its trees
    and canonical keys already use the cores, so OpenBLAS's threads only spun against them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> DesignResult:
        with blas_threads(1):
            return fn(*args, **kwargs)

    return wrapper


@_one_blas_thread
def design(
    lattice: Lattice,
    counts: Mapping[str, tuple[int, int]] | Mapping[str, int],
    *,
    targets: Sequence[PropertyWindow] = (),
    objective: Objective | None = None,
    n: int = 20,
    predictors: Mapping[str, Any] | None = None,
    seed: int = 0,
    time_limit: float = 60.0,
    exhaustive_limit: int = EXHAUSTIVE_LIMIT,
    chains: int = 512,
    prove: bool = True,
    prove_time_limit: float = 300.0,
    verify: str | None = None,
    budget: int = 0,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    n_threads: int = 0,
    engine_workers: int = 1,
) -> DesignResult:
    """The ``n`` best distinct classes with the asked composition(s) inside every target window.

    Args:
        lattice: the supercell.
        counts: defect counts by label, each an int or an inclusive (low, high) range.
        targets: property windows every design must lie in (by its predicted mean).
        objective: property to minimise or maximise; without one, designs are ranked by the
            probability of lying inside every window.
        n: number of designs.
        predictors: property name -> fitted predictor (default: the shipped ones of the lattice).
        seed: seed of the stochastic search.
        time_limit: seconds for the stochastic search (and for each integer program).
        exhaustive_limit: score every class when the compositions have at most this many.
        chains: parallel-tempering chains (a multiple of 8).
        prove: solve the integer program where the objective's model is a pair expansion.
        prove_time_limit: seconds for each integer program (past it: the best found and the bound).
        verify: engine (``xtb``, ``sevenn``, ``chgnet``) that labels the best candidates.
        budget: at most this many engine labels.
        work_dir: folder of the resumable engine labels (needed with ``verify``).
        progress: called with (stage, increment) as the search goes.
        n_threads: threads of the C++ core (0 = all cores).
        engine_workers: engine processes.
    """
    t0 = time.perf_counter()
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if time_limit <= 0:
        raise ValueError(f"time_limit must be positive, got {time_limit}")
    if predictors is None:
        from defectspace.predict import load_predictors

        predictors = load_predictors(lattice=lattice)
    names = list(predictors)
    for w in targets:
        if w.name not in names:
            raise ValueError(f"no model predicts {w.name!r}; predicted: {', '.join(names)}")
    if objective is not None and objective.name not in names:
        raise ValueError(f"no model predicts {objective.name!r}; predicted: {', '.join(names)}")
    if not targets and objective is None:
        raise ValueError("nothing to design for: give a target window or an objective")
    if verify is not None:
        if verify not in ENGINE_PROPERTY:
            raise ValueError(f"unknown engine {verify!r}; known: {', '.join(ENGINE_PROPERTY)}")
        if ENGINE_PROPERTY[verify] not in names:
            raise ValueError(f"{verify} measures {ENGINE_PROPERTY[verify]}, which no model predicts")
        if budget < 1:
            raise ValueError(f"verification needs a budget of at least 1 engine call, got {budget}")
        if work_dir is None:
            raise ValueError("verification needs a work folder for its engine labels")
    # the search scores only what decides the ranking; the designs get every property at the end
    active = [
        nm
        for nm in names
        if nm in {w.name for w in targets}
        or (objective is not None and nm == objective.name)
        or (verify is not None and nm == ENGINE_PROPERTY[verify])
    ]
    windowed = {w.name for w in targets} | ({ENGINE_PROPERTY[verify]} if verify is not None else set())
    surrogate = Surrogate({nm: predictors[nm] for nm in active}, lattice, with_std=sorted(windowed))
    comps = compositions(lattice, counts)
    canon = Canonicalizer(lattice, n_threads=n_threads)
    archive = ClassArchive(canon, surrogate.scores)
    group_order = canon.group.order
    estimate = sum(-(-n_placements(v, lattice) // group_order) for v in comps)
    exhaustive = estimate <= exhaustive_limit
    tick = progress or (lambda stage, k: None)
    energy = _energy(surrogate, targets, objective)
    # with an engine, half the search time goes to searching on between its rounds
    deadline = t0 + (time_limit / 2 if verify is not None and not exhaustive else time_limit)

    if exhaustive:
        for vec in comps:
            e = canon.enumerate(vec[1:])
            for lo in range(0, len(e.orbit_size), 65536):
                archive.add(e.canonical[lo : lo + 65536])
                tick("score", min(65536, len(e.orbit_size) - lo))
    else:
        rng = np.random.default_rng(seed)
        per = max(8, (chains // len(comps)) // 8 * 8)
        for ci, vec in enumerate(comps):
            start = canon.sample(vec[1:], per, int(rng.integers(2**62)))
            remaining = max(deadline - time.perf_counter(), 0.0) / (len(comps) - ci)
            parallel_tempering(
                archive,
                start,
                energy,
                max_steps=10**9,
                time_limit=remaining,
                seed=int(rng.integers(2**62)),
                on_step=lambda k: tick("search", k),
            )

    optimum: list[GroundState] = []
    if prove and objective is not None and not targets and not exhaustive:
        optimum = _prove(predictors[objective.name], lattice, comps, objective, prove_time_limit, archive)

    engine_value = engine_raw = None
    engine_calls = 0
    engine_scale = engine_log = ""
    engine_failures = 0
    if verify is not None:
        engine_value, engine_raw, engine_calls, engine_scale, engine_failures, engine_log = _verify_loop(
            archive,
            comps,
            surrogate,
            targets,
            objective,
            verify,
            budget,
            Path(work_dir or "."),
            n,
            exhaustive,
            energy,
            seed,
            max(t0 + time_limit - time.perf_counter(), 0.0),
            engine_workers,
            tick,
        )

    states, keys, orbits, scores = archive.arrays()
    mean, std = surrogate.corrected(scores)
    eng_all = np.full(len(orbits), np.nan)
    raw_all = eng_all.copy()
    if engine_value is not None and engine_raw is not None:
        eng_all[: len(engine_value)] = engine_value
        raw_all[: len(engine_raw)] = engine_raw
        # a verified class is ranked by what the engine measured, with no uncertainty left
        j = active.index(ENGINE_PROPERTY[verify or ""])
        known = np.isfinite(eng_all)
        mean[known, j] = eng_all[known]
        std[known, j] = 0.0
    order, inside, p, dist = rank(mean, std, active, targets, objective)
    top = order[:n]
    report = Surrogate(predictors, lattice)
    report.corrections.update(surrogate.corrections)
    mean_all, std_all = report.corrected(report.scores(states[top]))
    for i, nm in enumerate(active):
        mean_all[:, names.index(nm)] = mean[top, i]
        searched = std[top, i]  # NaN where the search did not need a sigma
        std_all[:, names.index(nm)] = np.where(np.isfinite(searched), searched, std_all[:, names.index(nm)])
    return DesignResult(
        lattice,
        states[top],
        keys[top],
        orbits[top],
        tuple(names),
        mean_all,
        std_all,
        p[top],
        inside[top],
        dist[top],
        tuple(targets),
        objective,
        int(inside.sum()),
        len(orbits),
        archive.n_proposed,
        exhaustive,
        time.perf_counter() - t0,
        optimum,
        verify or "",
        eng_all[top] if verify else np.zeros(0),
        engine_calls,
        raw_all[top] if verify else np.zeros(0),
        engine_scale,
        engine_failures,
        engine_log,
    )


def _prove(
    predictor: Any,
    lattice: Lattice,
    comps: Sequence[NDArray[np.int64]],
    objective: Objective,
    time_limit: float,
    archive: ClassArchive,
) -> list[GroundState]:
    """The integer program's optimum per composition (added to the archive as a candidate)."""
    from defectspace.pipeline.groundstate import minimize_pair_expansion, pair_expansion

    expansion = pair_expansion(predictor)
    if expansion is None:
        return []
    out = []
    for vec in comps:
        g = minimize_pair_expansion(
            expansion, lattice, vec, maximize=objective.maximize, time_limit=time_limit
        )
        archive.add(g.state[None, :])
        out.append(g)
    return out


def _verify_loop(
    archive: ClassArchive,
    comps: Sequence[NDArray[np.int64]],
    surrogate: Surrogate,
    targets: Sequence[PropertyWindow],
    objective: Objective | None,
    engine: str,
    budget: int,
    work_dir: Path,
    n: int,
    exhaustive: bool,
    energy: Callable[[Array], Array],
    seed: int,
    time_left: float,
    workers: int,
    tick: Progress,
) -> tuple[Array, Array, int, str, int, str]:
    """Rounds of: rank, label the best unverified candidates, correct the surrogate, search on.

    Returns the engine's value per archived class on the model's scale and as measured (NaN where
    not labelled), the labels used, how values were brought onto the model's scale, the calls
    that gave no value and the label file that says why.
    """

    prop = ENGINE_PROPERTY[engine]
    names = list(surrogate.names)
    j = names.index(prop)
    labels = EngineLabels(work_dir, engine, archive.canonicalizer.lattice, workers=workers)
    scale = ModelScale(surrogate.predictors[prop], engine, archive.canonicalizer.lattice)
    raw: dict[int, float] = {}
    rounds = max(1, min(budget, 5))
    per_round = -(-budget // rounds)
    used = 0
    rng = np.random.default_rng(seed + 1)
    known: dict[int, float] = {}
    # a restarted design keeps what the engine measured before (its search may differ: it is timed)
    before, before_keys, before_values = labels.labelled()
    if len(before_keys):
        have = composition(before, labels.lattice)[:, 1:]
        ok = np.array([any((h == c[1:]).all() for c in comps) for h in have], dtype=bool)
        if ok.any():
            idx = archive.add(before[ok])
            mapped = scale(before_values[ok], before[ok])
            for i, v, m, k in zip(idx, before_values[ok], mapped, np.asarray(before_keys)[ok], strict=True):
                known[int(i)], raw[int(i)] = float(m), float(v)
                labels.reuse(str(k))
            used = len(known)
            known_idx = np.asarray(sorted(known), dtype=np.int64)
            surrogate.learn(prop, archive.scores[known_idx, j], np.asarray([known[i] for i in known_idx]))
            tick("verify", used)
    for r in range(rounds):
        if used >= budget:
            break
        states, keys, _, scores = archive.arrays()
        mean, std = surrogate.corrected(scores)
        known_idx = np.asarray(sorted(known), dtype=np.int64)
        order, _, _, _ = rank(mean, std, names, targets, objective)
        take = min(per_round, budget - used)
        fresh = [int(i) for i in order if int(i) not in known][:take]
        if not fresh:
            break
        values = labels.measure(states[fresh], key_to_string(keys[fresh]))
        mapped = scale(values, states[fresh])
        used += len(fresh)
        tick("verify", len(fresh))
        for i, v, m in zip(fresh, values, mapped, strict=True):
            raw[i] = float(v)
            known[i] = float(m)
        known_idx = np.asarray(sorted(known), dtype=np.int64)
        surrogate.learn(prop, scores[known_idx, j], np.asarray([known[i] for i in known_idx]))
        if not exhaustive and r + 1 < rounds and time_left > 0:
            # search on from the best classes under the corrected surrogate
            states, _, _, scores = archive.arrays()
            order, _, _, _ = rank(*surrogate.corrected(scores), names, targets, objective)
            n_def = (states[order] > 0).sum(axis=1)
            same = order[n_def == n_def[0]][:64]
            restart = states[np.resize(same, 64)]
            parallel_tempering(
                archive,
                restart,
                energy,
                max_steps=10**9,
                time_limit=time_left / rounds,
                seed=int(rng.integers(2**62)),
                on_step=lambda k: tick("search", k),
            )
    out = np.full(len(archive.arrays()[2]), np.nan)
    out_raw = out.copy()
    for i, v in known.items():
        out[i] = v
        out_raw[i] = raw[i]
    failed = sum(not np.isfinite(v) for v in raw.values())
    return out, out_raw, labels.n_used, scale.describe(), failed, str(labels.output)
