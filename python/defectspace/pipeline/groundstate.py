"""Exact optimum of a pair cluster expansion at fixed composition, as an integer program.

A predictor that is linear in the pair-histogram descriptor (ridge on ``hist``, with or without an
engine prior that is itself ridge on ``hist``) predicts a total

    T(x) = c0 + sum_k a_k n_k(x) + sum_{i<j} J[code_i, code_j, shell(i, j)]

over the defects of a placement ``x``: a pair cluster expansion. Divided by the defect count
(constant at fixed composition) it is the formation energy per site. Minimising it over the
placements of one composition is a quadratic 0-1 program; with auxiliary variables ``y_ij`` for
defect pairs it becomes a mixed-integer linear program (Larsen et al., PRL 120, 256101, 2018: icet's
ground-state finder), solved here with HiGHS through :func:`scipy.optimize.milp`. Two additions
tighten it: the pair variables obey the cardinality (RLT) equalities ``sum_j y_ij = (c_l - [k = l])
x_ik``, and one defect of the rarest kind is placed on one site of each site orbit (symmetry
breaking; every placement has an image with that property).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import descriptors as desc
from defectspace.lattice import Lattice
from defectspace.placement import as_states, counts_vector


@dataclass(frozen=True)
class PairExpansion:
    """A pair cluster expansion of a predictor's total (not per-defect) prediction."""

    constant: float
    """c0, the prediction's constant term (eV)."""
    count: NDArray[np.float64]
    """(n_kinds + 1,) a_k per defect of code k (entry 0 unused), eV."""
    pair: NDArray[np.float64]
    """(n_codes, n_codes, n_shells) J of a defect pair by codes and distance shell, eV; symmetric."""
    shell_of: NDArray[np.int32]
    """(n_sites, n_sites) distance shell of every site pair."""
    extensive: bool
    """Whether the predictor divides the total by the number of defects."""

    def total(self, states: ArrayLike, lattice: Lattice) -> NDArray[np.float64]:
        """(n,) T(x) evaluated site pair by site pair (a check of the expansion, not fast)."""
        x = as_states(states, lattice).astype(np.int64)
        out = np.full(x.shape[0], self.constant)
        for r, row in enumerate(x):
            sites = np.flatnonzero(row)
            codes = row[sites]
            out[r] += self.count[codes].sum()
            i, j = np.triu_indices(len(sites), k=1)
            out[r] += self.pair[codes[i], codes[j], self.shell_of[sites[i], sites[j]]].sum()
        return out

    def predict(self, states: ArrayLike, lattice: Lattice) -> NDArray[np.float64]:
        """(n,) what the predictor predicts (per defect when extensive)."""
        x = as_states(states, lattice)
        t = self.total(x, lattice)
        if not self.extensive:
            return t
        nd = (x > 0).sum(axis=1)
        return np.where(nd > 0, t / np.maximum(nd, 1), np.nan)


def pair_expansion(predictor: Any) -> PairExpansion | None:
    """The pair cluster expansion of a fitted predictor, or None where its model is not one.

    Exact for a model on the ``hist`` descriptor that is linear in it: ridge, or an ensemble whose
    members are all ridge (their weighted average is one linear model), with or without a ridge
    engine prior on ``hist``. The damped pair sums are linear in the shell counts and fold into ``J``.
    """
    from defectspace.predict import RidgeRegressor

    lattice = predictor.lattice
    if lattice is None or predictor.descriptor != "hist":
        return None
    model = predictor.model
    if isinstance(model, RidgeRegressor):
        coef, const = np.asarray(model.coef_, dtype=np.float64), float(model.intercept_)
    elif callable(getattr(model, "linear_coefficients", None)) and model.linear_coefficients() is not None:
        coef, const = model.linear_coefficients()  # an ensemble of ridge models
    else:
        return None
    if predictor.prior is not None and not isinstance(predictor.prior, RidgeRegressor):
        return None
    if predictor.prior is not None:
        w_prior, coef = coef[0], coef[1:]
        coef = coef + w_prior * np.asarray(predictor.prior.coef_, dtype=np.float64)
        const += w_prior * float(predictor.prior.intercept_)
    table, n_hist, names = desc._histogram_layout(lattice)
    if coef.shape[0] != len(names):
        return None
    weights = desc._damping_weights(lattice)  # (n_hist, n_damped)
    shell_coef = coef[:n_hist] + weights @ coef[n_hist:]
    nk = lattice.n_kinds
    count = np.zeros(nk + 1)
    count[1:] = shell_coef[:nk]
    pair = np.where(table >= 0, shell_coef[np.maximum(table, 0)], 0.0)
    shell_of, _ = desc._histogram_tables(lattice)
    return PairExpansion(const, count, pair, shell_of, bool(predictor.extensive))


@dataclass(frozen=True)
class GroundState:
    """The result of :func:`minimize_pair_expansion`."""

    state: NDArray[np.uint8]
    """(n_sites,) uint8 best placement found."""
    value: float
    """Its prediction (per defect when the expansion is extensive), eV."""
    bound: float
    """A proven bound on every placement of the composition (lower when minimising), eV."""
    proven_optimal: bool
    """Whether HiGHS proved ``value`` optimal (gap closed within its tolerance)."""
    seconds: float
    """Wall time of the solve."""
    n_variables: int
    """Binary site variables plus pair variables."""
    status: str
    """HiGHS's message."""


def _site_orbit_representatives(
    lattice: Lattice, subgroup: str, sites: NDArray[np.int64]
) -> NDArray[np.int64]:
    perms = lattice.symmetry(subgroup).permutations
    seen: set[int] = set()
    reps = []
    for s in sites.tolist():
        if s in seen:
            continue
        reps.append(s)
        seen.update(perms[:, s].tolist())
    return np.asarray(reps, dtype=np.int64)


def minimize_pair_expansion(
    expansion: PairExpansion,
    lattice: Lattice,
    counts: dict[str, int] | ArrayLike,
    *,
    maximize: bool = False,
    time_limit: float = 60.0,
    subgroup: str = "full",
    mip_rel_gap: float = 1e-9,
) -> GroundState:
    """The placement of one composition that minimises (or maximises) a pair expansion.

    The composition is fixed, so the defect count is too and the per-defect value is the total
    divided by it. ``time_limit`` (s) bounds HiGHS; past it the best placement found is returned
    with ``proven_optimal=False`` and HiGHS's bound.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    vec = counts_vector(counts, lattice) if isinstance(counts, dict) else np.asarray(counts, np.int64)
    if vec.shape != (lattice.n_kinds + 1,):
        raise ValueError(f"counts must have {lattice.n_kinds + 1} entries (code 0 unused), got {vec.shape}")
    n_def = int(vec[1:].sum())
    if n_def == 0:
        raise ValueError("the composition has no defect")
    kinds = [k for k in range(1, lattice.n_kinds + 1) if vec[k] > 0]
    host = lattice.kind_site_type
    for k in kinds:
        have = int((lattice.site_types == host[k - 1]).sum())
        if vec[k] > have:
            raise ValueError(f"{vec[k]} defects of {lattice.kinds[k - 1].label} do not fit on {have} sites")
    sign = -1.0 if maximize else 1.0
    t0 = time.perf_counter()

    # x variables: one per (site, kind) with matching host
    xs: list[tuple[int, int]] = []
    for k in kinds:
        for s in np.flatnonzero(lattice.site_types == host[k - 1]).tolist():
            xs.append((s, k))
    xidx = {sk: i for i, sk in enumerate(xs)}
    nx = len(xs)
    # y variables: one per unordered pair of x variables on different sites
    ya: list[int] = []
    yb: list[int] = []
    yw: list[float] = []
    for a in range(nx):
        sa, ka = xs[a]
        for b in range(a + 1, nx):
            sb, kb = xs[b]
            if sa == sb:
                continue
            ya.append(a)
            yb.append(b)
            yw.append(float(expansion.pair[ka, kb, expansion.shell_of[sa, sb]]))
    ny = len(ya)
    ya_arr, yb_arr = np.asarray(ya), np.asarray(yb)
    n_var = nx + ny
    c = np.zeros(n_var)
    c[:nx] = [expansion.count[k] for _, k in xs]
    c[nx:] = yw
    c *= sign

    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    vals: list[NDArray[np.float64]] = []
    lo: list[float] = []
    hi: list[float] = []
    r = 0

    def add(
        rr: NDArray[np.int64],
        cc: NDArray[np.int64],
        vv: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
    ) -> None:
        rows.append(rr)
        cols.append(cc)
        vals.append(vv)
        lo.extend(lower.tolist())
        hi.extend(upper.tolist())

    # composition: sum_s x_sk = c_k
    for k in kinds:
        members = np.asarray([xidx[(s, kk)] for s, kk in xs if kk == k])
        add(
            np.full(len(members), r),
            members,
            np.ones(len(members)),
            np.array([vec[k]], float),
            np.array([vec[k]], float),
        )
        r += 1
    # one defect per site
    sites = sorted({s for s, _ in xs})
    for s in sites:
        members = np.asarray([xidx[(s, k)] for k in kinds if (s, k) in xidx])
        if len(members) > 1:
            add(
                np.full(len(members), r), members, np.ones(len(members)), np.array([-np.inf]), np.array([1.0])
            )
            r += 1
    # linearisation: y <= x_a, y <= x_b, y >= x_a + x_b - 1
    yi = nx + np.arange(ny)
    for other in (ya_arr, yb_arr):
        rr = r + np.arange(ny)
        add(
            np.concatenate([rr, rr]),
            np.concatenate([yi, other]),
            np.concatenate([np.ones(ny), -np.ones(ny)]),
            np.full(ny, -np.inf),
            np.zeros(ny),
        )
        r += ny
    rr = r + np.arange(ny)
    add(
        np.concatenate([rr, rr, rr]),
        np.concatenate([yi, ya_arr, yb_arr]),
        np.concatenate([np.ones(ny), -np.ones(ny), -np.ones(ny)]),
        np.full(ny, -1.0),
        np.full(ny, np.inf),
    )
    r += ny
    # RLT: for each x_a and kind l, sum of y over partners of kind l = (c_l - [k_a == l]) x_a
    partner_kind = np.asarray([k for _, k in xs])
    pairs_of: dict[tuple[int, int], list[int]] = {}
    for y, (a, b) in enumerate(zip(ya, yb, strict=True)):
        pairs_of.setdefault((a, int(partner_kind[b])), []).append(y)
        pairs_of.setdefault((b, int(partner_kind[a])), []).append(y)
    for (a, ell), ys in pairs_of.items():
        need = float(vec[ell] - (1 if xs[a][1] == ell else 0))
        cc = np.concatenate([nx + np.asarray(ys), [a]])
        vv = np.concatenate([np.ones(len(ys)), [-need]])
        add(np.full(len(cc), r), cc, vv, np.zeros(1), np.zeros(1))
        r += 1
    # symmetry breaking: a defect of the rarest kind on one representative of each site orbit
    rare = min(kinds, key=lambda k: (vec[k], k))
    rare_sites = np.asarray([s for s, k in xs if k == rare], dtype=np.int64)
    reps = _site_orbit_representatives(lattice, subgroup, rare_sites)
    members = np.asarray([xidx[(int(s), rare)] for s in reps])
    add(np.full(len(members), r), members, np.ones(len(members)), np.array([1.0]), np.array([np.inf]))
    r += 1

    a_mat = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_var)
    ).tocsr()
    integrality = np.zeros(n_var)
    integrality[:nx] = 1
    res = milp(
        c,
        constraints=LinearConstraint(a_mat, np.asarray(lo), np.asarray(hi)),
        integrality=integrality,
        bounds=Bounds(np.zeros(n_var), np.ones(n_var)),
        options={"time_limit": float(time_limit), "mip_rel_gap": mip_rel_gap, "disp": False},
    )
    seconds = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"HiGHS found no placement within {time_limit} s: {res.message}")
    state = np.zeros(lattice.n_sites, dtype=np.uint8)
    for i in np.flatnonzero(res.x[:nx] > 0.5):
        s, k = xs[int(i)]
        state[s] = k
    scale = n_def if expansion.extensive else 1
    value = float(expansion.predict(state, lattice)[0])
    bound_total = getattr(res, "mip_dual_bound", None)
    if bound_total is None or not np.isfinite(bound_total):
        bound_total = res.fun
    bound = (sign * float(bound_total) + expansion.constant) / scale
    return GroundState(state, value, bound, bool(res.status == 0), seconds, n_var, str(res.message))
