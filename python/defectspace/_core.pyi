"""defectspace C++ core: symmetry groups of supercells and exact canonical forms of defect placements."""

import numpy as np
from numpy.typing import NDArray

KEY_FORMAT_VERSION: int

class SymmetryGroup:
    """A checked group of site permutations of a supercell."""

    @staticmethod
    def from_point_operations(
        rotations: NDArray[np.int32],
        basis_map: NDArray[np.int32],
        shifts: NDArray[np.int32],
        site_types: NDArray[np.int32],
        n1: int,
        n2: int,
    ) -> SymmetryGroup: ...
    @staticmethod
    def from_permutations(
        permutations: NDArray[np.int32], site_types: NDArray[np.int32]
    ) -> SymmetryGroup: ...
    @property
    def order(self) -> int: ...
    @property
    def n_sites(self) -> int: ...
    @property
    def identity(self) -> int: ...
    def permutations(self) -> NDArray[np.int32]: ...
    def element_operations(self) -> NDArray[np.int64]: ...
    def site_types(self) -> NDArray[np.int32]: ...
    def orbit_reps(self) -> NDArray[np.int32]: ...
    def inverse(self, arg0: int) -> int: ...
    def compose(self, a: int, b: int) -> int: ...
    def pair_class(self, s: int, t: int) -> int: ...

class Canonicalizer:
    """Exact canonical forms of dense placements (n, n_sites) uint8."""

    def __init__(self, group: SymmetryGroup, kind_site_type: NDArray[np.int32]) -> None: ...
    @property
    def n_sites(self) -> int: ...
    @property
    def n_kinds(self) -> int: ...
    @property
    def key_bytes(self) -> int: ...
    @property
    def bits_per_site(self) -> int: ...
    def canonicalize(
        self, states: NDArray[np.uint8], n_threads: int = 0
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]: ...
    def keys(self, states: NDArray[np.uint8], n_threads: int = 0) -> NDArray[np.uint8]: ...
    def keys_and_orbits(
        self, states: NDArray[np.uint8], n_threads: int = 0
    ) -> tuple[NDArray[np.uint8], NDArray[np.int64]]: ...
    def canonicalize_sparse(
        self,
        sites: NDArray[np.int32],
        codes: NDArray[np.uint8],
        offsets: NDArray[np.int64],
        n_threads: int = 0,
    ) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]: ...
    def apply(self, states: NDArray[np.uint8], operations: NDArray[np.int64]) -> NDArray[np.uint8]: ...
    def unpack_keys(self, keys: NDArray[np.uint8]) -> NDArray[np.uint8]: ...
    def validate(self, states: NDArray[np.uint8]) -> None: ...

class KeySet:
    """Exact set of fixed-width keys with counts, in first-seen order."""

    def __init__(self, key_bytes: int) -> None: ...
    def insert(self, keys: NDArray[np.uint8]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]: ...
    def lookup(self, keys: NDArray[np.uint8]) -> NDArray[np.int64]: ...
    def __len__(self) -> int: ...
    @property
    def key_bytes(self) -> int: ...
    def keys(self) -> NDArray[np.uint8]: ...
    def counts(self) -> NDArray[np.int64]: ...

def enumerate_distinct(
    canonicalizer: Canonicalizer, counts: NDArray[np.int64], n_threads: int = 0
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]: ...
def sample_uniform(
    canonicalizer: Canonicalizer, counts: NDArray[np.int64], n: int, seed: int, n_threads: int = 0
) -> NDArray[np.uint8]: ...
def random_images(
    canonicalizer: Canonicalizer, states: NDArray[np.uint8], seed: int, n_threads: int = 0
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]: ...
def negatives(
    canonicalizer: Canonicalizer,
    states: NDArray[np.uint8],
    neighbors: NDArray[np.int32],
    hard_fraction: float,
    max_tries: int,
    seed: int,
    n_threads: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.int8]]: ...
def predict_tree_ensemble(
    x: NDArray[np.float64],
    feature: NDArray[np.int32],
    threshold: NDArray[np.float64],
    missing_left: NDArray[np.uint8],
    left: NDArray[np.int32],
    right: NDArray[np.int32],
    is_leaf: NDArray[np.uint8],
    value: NDArray[np.float64],
    offsets: NDArray[np.int64],
    baseline: float,
    n_threads: int = 0,
) -> NDArray[np.float64]: ...
def predict_tree_ensembles(
    x: NDArray[np.float64],
    feature: NDArray[np.int32],
    threshold: NDArray[np.float64],
    missing_left: NDArray[np.uint8],
    left: NDArray[np.int32],
    right: NDArray[np.int32],
    is_leaf: NDArray[np.uint8],
    value: NDArray[np.float64],
    offsets: NDArray[np.int64],
    member_trees: NDArray[np.int64],
    baselines: NDArray[np.float64],
    n_threads: int = 0,
) -> NDArray[np.float64]: ...
def defect_pair_histogram(
    states: NDArray[np.uint8],
    shell: NDArray[np.int32],
    feature: NDArray[np.int32],
    damp: NDArray[np.float64],
    n_threads: int = 0,
) -> NDArray[np.float64]: ...
