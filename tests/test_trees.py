"""The C++ tree walker against a plain numpy walk of the same exported trees."""

from __future__ import annotations

import numpy as np
import pytest
from defectspace import Canonicalizer, Lattice, _core

pytest.importorskip("sklearn")


def _numpy_walk(model, f: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The tree walk as the package did it in numpy before the C++ kernel (the reference)."""
    nodes = model.nodes_
    n = f.shape[0]
    out = np.full(n, model.baseline_)
    feat = nodes["feature_idx"].astype(np.int64)
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    leaf = nodes["is_leaf"].astype(bool)
    miss = nodes["missing_go_to_left"].astype(bool)
    rows = np.arange(n)
    for start in model.offsets_[:-1]:
        node = np.full(n, start, dtype=np.int64)
        active = ~leaf[node]
        while active.any():
            nd = node[active]
            x = f[rows[active], feat[nd]]
            go_left = np.where(np.isnan(x), miss[nd], x <= nodes["num_threshold"][nd])
            node[active] = start + np.where(go_left, left[nd], right[nd])
            active = ~leaf[node]
        out += nodes["value"][node]
    return out


def test_cpp_tree_walk_is_bit_identical_to_numpy_on_the_shipped_gap_model() -> None:
    """Every tree ensemble of the shipped gap model (boosted-tree members of an ensemble on the
    rich descriptor), walked in C++ on the full features, against numpy on the member's columns."""
    from defectspace.predict import GBMRegressor, load_predictors
    from defectspace.predict.regressors import _column_index

    lat = Lattice.preset("MoS2", (8, 8))
    gap = load_predictors(lattice=lat)["homo_lumo_gap"]
    c = Canonicalizer(lat)
    x = np.vstack(
        [c.sample({"S->V": 3}, 300, 1), c.sample({"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7}, 300, 2)]
    )
    f = gap.features(x, lat)
    f[::17, 5] = np.nan  # missing values take the stored direction
    members = getattr(gap.model, "members_", [gap.model])
    columns = getattr(gap.model, "columns_", [None] * len(members))
    walked = 0
    for model, cols in zip(members, columns, strict=True):
        if not isinstance(model, GBMRegressor):
            continue
        idx = np.arange(f.shape[1]) if cols is None else _column_index(cols)
        want = _numpy_walk(model, f[:, idx])
        assert np.array_equal(model.predict(np.ascontiguousarray(f[:, idx])), want)
        assert np.array_equal(model.predict_on_columns(f, idx), want)
        walked += 1
    assert walked >= 1


def test_tree_walker_refuses_out_of_range_nodes() -> None:
    x = np.zeros((2, 3))
    args = dict(
        feature=np.array([5, 0, 0], np.int32),
        threshold=np.zeros(3),
        missing_left=np.zeros(3, np.uint8),
        left=np.array([1, 0, 0], np.int32),
        right=np.array([2, 0, 0], np.int32),
        is_leaf=np.array([0, 1, 1], np.uint8),
        value=np.array([0.0, 1.0, 2.0]),
        offsets=np.array([0, 3], np.int64),
    )
    with pytest.raises(ValueError, match=r"feature 5 \(of 3\)"):
        _core.predict_tree_ensemble(x, *args.values(), 0.5)
    args["feature"] = np.array([1, 0, 0], np.int32)
    np.testing.assert_array_equal(_core.predict_tree_ensemble(x, *args.values(), 0.5), [1.5, 1.5])
    args["left"] = np.array([7, 0, 0], np.int32)
    with pytest.raises(ValueError, match="children 7, 2 out of range"):
        _core.predict_tree_ensemble(x, *args.values(), 0.5)
    with pytest.raises(ValueError, match="dtype"):
        _core.predict_tree_ensemble(x.astype(np.float32), *args.values(), 0.5)


def test_a_member_on_a_column_subset_walks_the_full_matrix_with_the_same_bits() -> None:
    """EnsembleRegressor copied each member's columns out of the features (4x the trees' own time
    on the shipped gap model); the trees now read the full matrix through remapped features."""
    from defectspace.predict import EnsembleRegressor, GBMRegressor
    from defectspace.predict.regressors import _column_index

    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 12))
    f[rng.random(f.shape) < 0.05] = np.nan
    y = np.nansum(f[:, 3:7], axis=1) + 0.1 * rng.normal(size=400)
    cols = [[2, 5], [8, 11]]
    ens = EnsembleRegressor(members=[{"kind": "gbm", "settings": {"grid": ({"max_leaf_nodes": 7},)},
                                      "columns": cols, "copies": 2}], random_state=0).fit(f, y)
    idx = _column_index(cols)
    for member in ens.members_:
        assert isinstance(member, GBMRegressor)
        on_copy = member.predict(np.ascontiguousarray(f[:, idx]))
        np.testing.assert_array_equal(member.predict_on_columns(f, idx), on_copy)
        np.testing.assert_array_equal(on_copy, _numpy_walk(member, f[:, idx]))
    expected = sum(w * m.predict(np.ascontiguousarray(f[:, idx])) for w, m in zip(ens.weights_, ens.members_, strict=True))
    np.testing.assert_allclose(ens.predict(f), expected, rtol=0, atol=1e-12)


def test_ensemble_walks_its_tree_members_together_with_each_members_bits() -> None:
    """predict_members walks every boosted-tree member in one pass over the rows; each member's
    row must keep the bits of that member walked alone (numpy reference), for any batch size,
    and a refit must not reuse the joined trees of the members it replaced."""
    from defectspace.predict import EnsembleRegressor
    from defectspace.predict.regressors import _column_index

    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 10))  # no NaN: the ridge member between the tree members takes none
    y = f[:, :4].sum(axis=1) + 0.1 * rng.normal(size=300)
    ens = EnsembleRegressor(
        members=[
            {"kind": "gbm", "settings": {"grid": ({"max_leaf_nodes": 7},)}, "columns": [[0, 6]], "copies": 2},
            {"kind": "ridge"},
            {"kind": "gbm", "settings": {"grid": ({"max_leaf_nodes": 5},)}, "copies": 1},
        ],
        random_state=0,
    ).fit(f, y)
    got = ens.predict_members(f)
    for i, (member, cols) in enumerate(zip(ens.members_, ens.columns_, strict=True)):
        if hasattr(member, "nodes_"):
            idx = np.arange(f.shape[1]) if cols is None else _column_index(cols)
            np.testing.assert_array_equal(got[i], _numpy_walk(member, f[:, idx]))
    for size in (1, 33, 65, 129):  # blocks of 32 rows, threads of at least 64
        np.testing.assert_array_equal(ens.predict_members(f[:size]), got[:, :size])
    before = ens.predict_members(f)
    ens.fit(f, -y)
    assert not np.allclose(ens.predict_members(f), before)


def test_joined_tree_walker_refuses_bad_member_bounds() -> None:
    x = np.zeros((2, 1))
    nodes = (np.zeros(1, np.int32), np.zeros(1), np.zeros(1, np.uint8), np.zeros(1, np.int32),
             np.zeros(1, np.int32), np.ones(1, np.uint8), np.array([2.0]), np.array([0, 1], np.int64))
    np.testing.assert_array_equal(
        _core.predict_tree_ensembles(x, *nodes, np.array([0, 1], np.int64), np.array([0.5])), [[2.5, 2.5]])
    with pytest.raises(ValueError, match="from 0 to the number of trees"):
        _core.predict_tree_ensembles(x, *nodes, np.array([0, 2], np.int64), np.array([0.5]))
    with pytest.raises(ValueError, match="member 0 has no tree"):
        _core.predict_tree_ensembles(x, *nodes, np.array([0, 0, 1], np.int64), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="baselines"):
        _core.predict_tree_ensembles(x, *nodes, np.array([0, 1], np.int64), np.array([0.5, 1.0]))
