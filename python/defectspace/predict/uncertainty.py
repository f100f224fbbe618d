"""Calibrated uncertainty of a predictor: the spread of its ensemble, scaled on held-out rows.

An ensemble's spread (the weighted standard deviation of its members) ranks rows by how unsure the
model is, but its size is not an error bar: bootstrap members agree more than they are right. A
:class:`Calibration` maps the spread and the defect count to a 1-sigma uncertainty,

    sigma = exp(c0 + c1 * log(spread + floor) + c2 * log(n_defects)),

with ``n_defects`` and ``spread`` clipped to the ranges the calibration saw (a spread or a defect
count beyond them says the model extrapolates, which the domain widening covers, not the fit).
c1 and c2 are fitted by Gaussian maximum likelihood to out-of-fold residuals (each row predicted by
a model that did not see it, see ``PropertyPredictor.fit(calibration_folds=...)``); c0 is then set
so that the out-of-fold coverage of the nominal 68 % and 95 % intervals err equally (residuals of
materials models have heavier tails than a normal distribution: maximum likelihood alone
over-covers the 68 % interval and under-covers the 95 % one). Where a placement lies outside the
training domain (:mod:`defectspace.predict.domain`) ``ood_std`` is added in quadrature: by default
the scatter of the training labels around their per-composition linear fit, i.e. about what a model
that knows only the composition would get wrong.

:func:`interval_coverage` measures what fraction of labels fall inside ``mean +- z * sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

NOMINAL = {"68%": 1.0, "95%": 1.959963984540054}
"""Nominal coverage -> half-width in sigmas of the central interval of a normal distribution."""


@dataclass(frozen=True)
class Calibration:
    """How a predictor turns its ensemble spread into a 1-sigma uncertainty (eV)."""

    coef: tuple[float, float, float]
    """(c0, c1, c2) of ``log sigma = c0 + c1 log(spread + floor) + c2 log(n_defects)``."""
    floor: float
    """eV added to the spread before the log (a model whose members agree still errs)."""
    ood_std: float
    """eV added in quadrature to sigma for placements outside the training domain."""
    n_defects: tuple[int, int]
    """Range of defect counts of the calibration rows (the count is clipped to it)."""
    spread_max: float
    """Largest spread of the calibration rows, eV (the spread is clipped to it)."""
    n_rows: int
    """Out-of-fold residuals the calibration was fitted to."""
    oof_mae: float
    """Their mean absolute value, eV (the model's cross-validated MAE)."""

    def std(self, spread: ArrayLike, n_defects: ArrayLike,
            out_of_domain: ArrayLike | None = None) -> Array:
        """(n,) 1-sigma uncertainty (eV) from the ensemble spread and the defect count."""
        s = np.clip(np.asarray(spread, dtype=np.float64), 0.0, self.spread_max)
        nd = np.clip(np.asarray(n_defects, dtype=np.float64), *self.n_defects)
        c0, c1, c2 = self.coef
        out: Array = np.exp(c0 + c1 * np.log(s + self.floor) + c2 * np.log(nd))
        if out_of_domain is not None:
            ood = np.asarray(out_of_domain, dtype=bool)
            out = np.where(ood, np.sqrt(out**2 + self.ood_std**2), out)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (:meth:`from_dict` reads it back)."""
        d = asdict(self)
        d["coef"] = list(self.coef)
        d["n_defects"] = list(self.n_defects)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        c = [float(v) for v in d["coef"]]
        lo, hi = (int(v) for v in d["n_defects"])
        return cls((c[0], c[1], c[2]), float(d["floor"]), float(d["ood_std"]), (lo, hi),
                   float(d["spread_max"]), int(d["n_rows"]), float(d["oof_mae"]))


def fit_calibration(residuals: ArrayLike, spread: ArrayLike, n_defects: ArrayLike,
                    ood_std: float) -> Calibration:
    """Fits ``(c0, c1, c2)`` to out-of-fold ``residuals`` (eV) (see the module's docstring).

    The floor is 5 % of the median spread (a tenth of the median absolute residual when the spread
    is zero: a single model, whose c1 then means nothing). c1 is kept in [0, 2] and c2 in
    [-2, 2] (c2 = 0 when every row has the same defect count); with fewer than 20 rows c1 = 1 and
    c2 = 0.
    """
    from scipy.optimize import minimize

    r = np.asarray(residuals, dtype=np.float64)
    s = np.asarray(spread, dtype=np.float64)
    nd = np.maximum(np.asarray(n_defects, dtype=np.float64), 1.0)
    if not (r.shape == s.shape == nd.shape) or r.ndim != 1:
        raise ValueError(f"residuals, spread and n_defects must be (n,) arrays of one length, got "
                         f"{r.shape}, {s.shape}, {nd.shape}")
    if len(r) < 2 or not np.all(np.isfinite(r)) or not np.all(np.isfinite(s)):
        raise ValueError(f"need at least 2 finite residuals to calibrate, got {len(r)}")
    med = float(np.median(s))
    floor = 0.05 * med if med > 0 else max(0.1 * float(np.median(np.abs(r))), 1e-9)
    ls = np.log(s + floor)
    ln = np.log(nd)
    r2 = r**2

    def nll(theta: Array) -> float:
        log_sigma = theta[0] + theta[1] * ls + theta[2] * ln
        return float(np.sum(log_sigma + 0.5 * r2 * np.exp(-2.0 * log_sigma)))

    c2_bound = (-2.0, 2.0) if np.ptp(ln) > 0 else (0.0, 0.0)
    if len(r) < 20:
        c1, c2 = 1.0, 0.0
    else:
        x0 = np.array([0.5 * math.log(float(np.mean(r2)) + 1e-300) - float(np.mean(ls)), 1.0, 0.0])
        res = minimize(nll, x0, method="L-BFGS-B", bounds=[(-50.0, 50.0), (0.0, 2.0), c2_bound])
        c1, c2 = float(res.x[1]), float(res.x[2])
    z = np.abs(r) / np.exp(c1 * ls + c2 * ln)  # residuals in units of exp(-c0)
    widths = np.array(list(NOMINAL.values()))
    levels = np.array([0.6826894921370859, 0.9544997361036416])
    q = np.quantile(z, levels)
    c0 = float(np.mean(np.log(np.maximum(q, 1e-300) / widths)))  # geometric mean of the two scales
    return Calibration((c0, c1, c2), floor, float(ood_std), (int(nd.min()), int(nd.max())),
                       float(s.max()), len(r), float(np.mean(np.abs(r))))


def interval_coverage(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> dict[str, float]:
    """Fraction of ``y`` inside ``mean +- z * std`` for the nominal 68 % and 95 % intervals."""
    yy = np.asarray(y, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    z = np.abs(yy - m) / s
    return {name: float(np.mean(z <= width)) for name, width in NOMINAL.items()}
