"""The C++ tree walker against a plain numpy walk of the same exported trees."""

from __future__ import annotations

import numpy as np
import pytest
from defectspace import Canonicalizer, Lattice, _core
from defectspace.descriptors import defect_histogram

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
    from defectspace.predict import load_predictors

    lat = Lattice.preset("MoS2", (8, 8))
    gap = load_predictors(lattice=lat)["homo_lumo_gap"]
    model = gap.model
    if not hasattr(model, "nodes_"):
        pytest.skip("the shipped gap model is not a single exported tree ensemble")
    c = Canonicalizer(lat)
    x = np.vstack(
        [c.sample({"S->V": 3}, 300, 1), c.sample({"Mo->V": 2, "Mo->W": 3, "S->V": 7, "S->Se": 7}, 300, 2)]
    )
    f = defect_histogram(x, lat)
    f[::17, 5] = np.nan  # missing values take the stored direction
    want = _numpy_walk(model, f)
    got = model.predict(f)
    assert np.array_equal(got, want)


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
