"""Symmetry of a 2D crystal: the unit cell's layer-group operations (found by spglib, in this module
only) and the supercell's group of site permutations (built and checked by the C++ core).

The functions take plain arrays; :class:`~defectspace.lattice.Lattice` calls them
(:attr:`~defectspace.lattice.Lattice.point_operations`,
:meth:`~defectspace.lattice.Lattice.symmetry`). Cells are lattice vectors as rows, as spglib's
Python API takes them (its C API takes columns).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace import _core

SUBGROUPS = ("full", "translations", "no_horizontal_mirror")
"""Named subgroups accepted by :meth:`Lattice.symmetry <defectspace.lattice.Lattice.symmetry>`."""


@dataclass(frozen=True)
class PointOperation:
    """A symmetry operation of the unit cell found by spglib (fractional coordinates)."""

    rotation: NDArray[np.int32]
    """(3, 3) int32 rotation acting on fractional column vectors."""
    translation: NDArray[np.float64]
    """(3,) fractional translation."""

    @property
    def flips_z(self) -> bool:
        """Whether the operation maps the top of the layer to the bottom (horizontal mirror class)."""
        return bool(self.rotation[2, 2] == -1)

    @property
    def is_identity(self) -> bool:
        """Whether the rotation is the identity (a pure translation)."""
        return bool(np.array_equal(self.rotation, np.eye(3, dtype=np.int32)))


@dataclass(frozen=True)
class SymmetryGroup:
    """The symmetry group of a supercell as site permutations, built and checked by the C++ core.

    Element ``g`` is point operation ``k`` followed by the lattice translation ``(a, b)`` (in unit
    cells), with ``(k, a, b) = element_operations[g]``; on supercells of at least 2x2 that is
    ``g = k * (n1 * n2) + a * n2 + b``. On tiny supercells operations that move the sites alike are
    one element.
    """

    point_operations: tuple[PointOperation, ...]
    """The unit-cell operations the group is built from."""
    supercell: tuple[int, int]
    """Supercell size (n1, n2)."""
    name: str
    """``"full"``, ``"translations"``, ``"no_horizontal_mirror"`` or ``"custom"``."""
    _cpp_obj: _core.SymmetryGroup = field(repr=False, compare=False)
    """The C++ group object (private: the core's canonicalizer is built from it)."""

    @property
    def order(self) -> int:
        """Number of elements (8x8 MoS2, full group: 12 * 64 = 768)."""
        return int(self._cpp_obj.order)

    @property
    def n_sites(self) -> int:
        """Number of sites the group permutes."""
        return int(self._cpp_obj.n_sites)

    @functools.cached_property
    def element_operations(self) -> NDArray[np.int64]:
        """(order, 3) int64: point-operation index and translation (a, b) of every element."""
        ops: NDArray[np.int64] = self._cpp_obj.element_operations()
        ops.setflags(write=False)
        return ops

    @functools.cached_property
    def permutations(self) -> NDArray[np.int32]:
        """(order, n_sites) int32: ``permutations[g, s]`` is the image of site ``s`` under ``g``."""
        perms: NDArray[np.int32] = self._cpp_obj.permutations()
        perms.setflags(write=False)
        return perms

    def compose(self, a: int, b: int) -> int:
        """The element ``a`` after ``b`` (its permutation is ``permutations[a][permutations[b]]``)."""
        return int(self._cpp_obj.compose(int(a), int(b)))

    def inverse(self, g: int) -> int:
        """The element undoing ``g``."""
        return int(self._cpp_obj.inverse(int(g)))


def _spglib() -> Any:
    """spglib with exceptions on errors (its old None-returning mode is deprecated)."""
    import spglib
    import spglib.error

    if hasattr(spglib.error, "OLD_ERROR_HANDLING"):
        spglib.error.OLD_ERROR_HANDLING = False
    return spglib


def layer_symmetry(cell: NDArray[np.float64], basis: NDArray[np.float64], numbers: Sequence[int],
                   symprec: float, name: str) -> tuple[int, tuple[PointOperation, ...]]:
    """spglib's layer-group number of a unit cell (third vector out of plane, aperiodic) and its
    point operations, identity first.

    Raises:
        ValueError: spglib finds no layer symmetry (the message names the crystal ``name``).
    """
    spglib = _spglib()
    try:
        ds = spglib.get_symmetry_layerdataset((cell, basis, list(numbers)), aperiodic_dir=2,
                                              symprec=symprec)
    except Exception as exc:  # spglib.error.SpglibError
        raise ValueError(f"spglib found no layer symmetry for {name}: {exc}") from exc
    ops = [PointOperation(np.asarray(r, dtype=np.int32), np.asarray(t, dtype=np.float64))
           for r, t in zip(ds.rotations, ds.translations, strict=True)]
    ops.sort(key=lambda o: not o.is_identity)
    return int(ds.number), tuple(ops)


def basis_action(op: PointOperation, basis: NDArray[np.float64], basis_types: NDArray[np.int32],
                 tol: float) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """The basis site each basis site goes to under ``op`` and the integer cell shift it lands in.

    Raises:
        ValueError: ``op`` maps a basis site onto no basis site of its type (within ``tol``,
            fractional).
    """
    nb = basis.shape[0]
    bmap = np.empty(nb, dtype=np.int32)
    shifts = np.empty((nb, 2), dtype=np.int32)
    for L in range(nb):
        img = op.rotation @ basis[L] + op.translation
        for Lp in range(nb):
            if basis_types[Lp] != basis_types[L]:
                continue
            delta = img - basis[Lp]
            frac_inplane = delta[:2] - np.round(delta[:2])
            dz = delta[2] - np.round(delta[2])
            if np.all(np.abs(frac_inplane) < tol) and abs(dz) < tol:
                bmap[L] = Lp
                shifts[L] = np.round(delta[:2]).astype(np.int32)
                break
        else:
            raise ValueError(f"operation {op.rotation.tolist()} maps basis site {L} to no site")
    return bmap, shifts


def build_group(operations: Sequence[PointOperation], keep: Callable[[PointOperation], bool],
                name: str, basis: NDArray[np.float64], basis_types: NDArray[np.int32],
                supercell: tuple[int, int], tol: float) -> SymmetryGroup:
    """The group of the kept ``operations`` on an ``n1 x n2`` supercell, times its translations.

    Operations that do not map the supercell onto itself (3-fold rotations on 8x4) are left out;
    the C++ core checks that the rest form a group.

    Raises:
        ValueError: the kept operations lack the identity or do not form a group.
    """
    n1, n2 = supercell
    chosen = []
    for op in operations:
        if not keep(op):
            continue
        r = op.rotation[:2, :2]
        if (r[1, 0] * n1) % n2 or (r[0, 1] * n2) % n1:
            continue  # does not map this supercell onto itself
        chosen.append(op)
    if not any(op.is_identity for op in chosen):
        raise ValueError("the chosen operations must include the identity")
    rotations = np.array([op.rotation[:2, :2] for op in chosen], dtype=np.int32)
    actions = [basis_action(op, basis, basis_types, tol) for op in chosen]
    bmaps = np.array([a[0] for a in actions], dtype=np.int32)
    shifts = np.array([a[1] for a in actions], dtype=np.int32)
    cpp = _core.SymmetryGroup.from_point_operations(rotations, bmaps, shifts, basis_types.copy(),
                                                    n1, n2)
    return SymmetryGroup(tuple(chosen), supercell, name, cpp)


SUBGROUP_PREDICATES: dict[str, Callable[[PointOperation], bool]] = {
    "full": lambda op: True,
    "translations": lambda op: op.is_identity,
    "no_horizontal_mirror": lambda op: not op.flips_z,
}
"""Which point operations each named subgroup keeps."""
