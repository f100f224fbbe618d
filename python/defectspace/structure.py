"""Atomic structures of placements, and placements of atomic structures (CIF files).

:func:`placement_to_atoms` builds the unrelaxed ``ase.Atoms`` of a placement. :func:`map_structure`
goes the other way: it assigns every atom of a structure to a lattice site by an optimal assignment
(Hungarian algorithm on periodic distances, one problem per sublattice) and reads the placement
off the assignment. Relaxed structures map too; where the assignment is not clearly determined
(an atom far from its site, or about as close to another site) the mapping is flagged as
ambiguous with the reasons, never guessed silently. :func:`read_structures` reads CIF files, a
folder of them or a tar archive.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import weakref
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace.cif import read_cif_bytes as read_cif_bytes  # re-exported: part of the structure readers
from defectspace.lattice import Lattice, minimum_image, pymatgen_to_atoms, require_pymatgen
from defectspace.placement import PlacementError, as_states

if TYPE_CHECKING:
    import ase

DEFAULT_MAX_DISPLACEMENT = 0.75
"""Default largest atom-site distance (angstrom) accepted without flagging a mapping.

Measured on 2DMD's 6433 DFT-relaxed MoS2 8x8 structures: 99.9% of the atoms stay within 0.5 A of
their sites, and the largest displacement of the low-density structures (1-3 defects) forms a
continuum up to 0.76 A (S beside a Mo + S divacancy). The nearest other site of a sublattice is
3.13 A away (top and bottom S) or 3.19 A (in plane). In some high-density structures an atom
moved all the way into a neighbouring vacancy, which no per-atom test can see; those structures
are heavily distorted, and the least distorted of them has an atom 0.82 A off its site. 0.75 A
flags all of them while flagging only 7 of the 5933 low-density structures.
"""

DEFAULT_AMBIGUITY_RATIO = 0.3
"""Default ratio test: an atom is ambiguous when its distance to its assigned site exceeds this
fraction of its distance to the next-best site of its sublattice.

An atom moving straight towards a site 3.13 A away reaches the ratio 0.3 after 0.72 A, in step with
:data:`DEFAULT_MAX_DISPLACEMENT`; sideways moves that bring it closer to another site trip it
earlier. On 2DMD's relaxed MoS2 the least distorted wrongly mapped structure has ratio 0.34.
"""

DEFAULT_CELL_TOLERANCE = 0.02
"""Default relative tolerance on the in-plane cell lengths and angle of a structure."""

STRUCTURE_SUFFIXES = (".cif", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz")
"""File names :func:`read_structures` accepts (besides folders)."""

_ID_PREFIX = re.compile(r"^poscar_[A-Za-z0-9]+-")
_ID_SUFFIX = re.compile(r"_(?:un)?relaxed$")


@dataclass(frozen=True, eq=False)
class StructureMapping:
    """The placement read off one atomic structure, and how sure the reading is."""

    states: NDArray[np.uint8]
    """(n_sites,) uint8 placement (0 = host atom, k = defect kind code); read-only."""
    ambiguous: bool
    """Whether some atom's site is not clearly determined (see :attr:`reasons`)."""
    reasons: tuple[str, ...]
    """Human-readable reasons for the flag, one per finding (empty when not ambiguous)."""
    max_displacement: float
    """Largest distance in angstrom between an atom and its assigned site (0.0 with no atoms)."""
    assignment: NDArray[np.int64]
    """(n_atoms,) int64 site of each atom, in the structure's atom order; read-only."""


@dataclass(frozen=True)
class _Sublattice:
    """Sites that atoms of some elements compete for: one assignment problem."""

    sites: NDArray[np.int64]
    """(m,) int64 sites of this sublattice, ascending."""
    elements: tuple[str, ...]
    """Elements that may occupy these sites (hosts and substituents), sorted."""
    allowed: NDArray[np.bool_]
    """(n_elements, m) bool: whether each element may occupy each site."""
    codes: NDArray[np.uint8]
    """(n_elements, m) uint8 placement code of each element on each site (0: host or not allowed)."""
    vacancy_codes: NDArray[np.int64]
    """(m,) int64 vacancy code of each site, -1 where the host cannot be vacant."""


@dataclass(frozen=True)
class _Plan:
    """Everything :func:`map_structure` needs of a lattice, computed once per lattice."""

    sublattices: tuple[_Sublattice, ...]
    sublattice_of: NDArray[np.int64]
    """(119,) int64 sublattice of each atomic number, -1 where no site can hold the element."""
    element_of: NDArray[np.int64]
    """(119,) int64 index of each atomic number in its sublattice's ``elements`` (-1: none)."""
    frac_xy: NDArray[np.float64]
    """(n_sites, 2) in-plane fractional site coordinates."""
    z: NDArray[np.float64]
    """(n_sites,) cartesian site heights in angstrom."""
    cell: NDArray[np.float64]
    """(3, 3) supercell vectors as rows (:attr:`Lattice.supercell_cell`)."""


_PLANS: weakref.WeakKeyDictionary[Lattice, _Plan] = weakref.WeakKeyDictionary()


def _plan(lattice: Lattice) -> _Plan:
    """The mapping plan of a lattice (cached per lattice object)."""
    cached = _PLANS.get(lattice)
    if cached is not None:
        return cached
    hosts = lattice.host_types
    accepts = {h: {h} | {k.species for k in lattice.kinds if k.host == h and not k.is_vacancy}
               for h in hosts}
    # Host types linked by a shared element form one assignment problem (for the presets every
    # host type is its own problem: Mo/W on metal sites, S/Se on chalcogen sites).
    groups: list[set[str]] = []
    for h in hosts:
        merged = {h}
        rest = []
        for g in groups:
            if any(accepts[h] & accepts[o] for o in g):
                merged |= g
            else:
                rest.append(g)
        groups = [*rest, merged]
    groups.sort(key=lambda g: min(hosts.index(h) for h in g))
    from ase.data import atomic_numbers

    site_species = np.array(lattice.site_species)
    sublattices = []
    sublattice_of = np.full(119, -1, dtype=np.int64)
    element_of = np.full(119, -1, dtype=np.int64)
    for index, group in enumerate(groups):
        sites = np.flatnonzero(np.isin(site_species, sorted(group))).astype(np.int64)
        host_here = site_species[sites].tolist()
        elements = tuple(sorted({e for h in group for e in accepts[h]}))
        allowed = np.array([[el in accepts[h] for h in host_here] for el in elements],
                           dtype=np.bool_).reshape(len(elements), len(sites))
        codes = np.zeros((len(elements), len(sites)), dtype=np.uint8)
        for e, el in enumerate(elements):
            for col, h in enumerate(host_here):
                if el != h and el in accepts[h]:
                    codes[e, col] = lattice.kind(h, el).code
            z_number = atomic_numbers.get(el)
            if z_number is not None:  # a species that is no element can hold no atom
                sublattice_of[z_number] = index
                element_of[z_number] = e
        vac = {h: next((k.code for k in lattice.kinds if k.host == h and k.is_vacancy), -1)
               for h in group}
        vacancy_codes = np.array([vac[h] for h in host_here], dtype=np.int64)
        sublattices.append(_Sublattice(sites, elements, allowed, codes, vacancy_codes))
    plan = _Plan(tuple(sublattices), sublattice_of, element_of,
                 np.ascontiguousarray(lattice.fractional_positions[:, :2]),
                 np.ascontiguousarray(lattice.positions[:, 2]), lattice.supercell_cell)
    _PLANS[lattice] = plan
    return plan


# --------------------------------------------------------------------------- placement -> atoms
def placement_to_atoms(states_row: ArrayLike, lattice: Lattice) -> ase.Atoms:
    """The unrelaxed structure of one placement: atoms on their ideal sites, in site order.

    Vacancies are left out and substitutions change the element. The cell is
    :attr:`Lattice.supercell_cell` with ``pbc=(True, True, False)``.

    Raises:
        PlacementError: ``states_row`` is not one valid placement of ``lattice``.
    """
    arr = as_states(states_row, lattice, name="states_row")
    if arr.shape[0] != 1:
        raise PlacementError(f"states_row: expected one placement, got {arr.shape[0]}")
    return _atoms_of(arr[0], lattice)


def placement_to_structure(states_row: ArrayLike, lattice: Lattice) -> Any:
    """The unrelaxed structure of one placement as a ``pymatgen.core.Structure`` (sites in site
    order, vacancies left out; see :func:`placement_to_atoms`).

    Raises:
        ImportError: pymatgen is missing (``pip install 'defectspace[pymatgen]'``).
        PlacementError: ``states_row`` is not one valid placement of ``lattice``.
    """
    adaptor = require_pymatgen()
    atoms = placement_to_atoms(states_row, lattice)
    atoms.pbc = True  # pymatgen structures are periodic in 3D; the vacuum keeps layers apart
    return adaptor.get_structure(atoms)


def as_atoms(structure: Any) -> ase.Atoms:
    """``structure`` as ``ase.Atoms``: an ``ase.Atoms`` as it is, a ``pymatgen.core.Structure``
    converted (:func:`defectspace.lattice.pymatgen_to_atoms`)."""
    import ase

    if isinstance(structure, ase.Atoms):
        return structure
    if type(structure).__module__.startswith("pymatgen"):
        return pymatgen_to_atoms(structure)
    raise TypeError(f"a structure is an ase.Atoms or a pymatgen Structure, got {type(structure).__name__}")


def placements_to_atoms(states: ArrayLike, lattice: Lattice) -> list[ase.Atoms]:
    """The unrelaxed structures of a batch of placements (see :func:`placement_to_atoms`)."""
    arr = as_states(states, lattice)
    return [_atoms_of(row, lattice) for row in arr]


def _atoms_of(row: NDArray[np.uint8], lattice: Lattice) -> ase.Atoms:
    import ase

    species_of = _species_table(lattice)
    symbols = species_of[row, np.arange(lattice.n_sites)]
    is_vacancy = np.array([False, *(k.is_vacancy for k in lattice.kinds)], dtype=np.bool_)
    keep = ~is_vacancy[row]
    return ase.Atoms(symbols=symbols[keep].tolist(), positions=lattice.positions[keep],
                     cell=lattice.supercell_cell, pbc=(True, True, False))


def _species_table(lattice: Lattice) -> NDArray[np.str_]:
    """``table[code, site]``: the element a site holds under each code (``"V"`` = vacancy)."""
    width = max(len(s) for s in (*lattice.host_types, *(k.species for k in lattice.kinds)))
    table = np.empty((lattice.n_kinds + 1, lattice.n_sites), dtype=f"<U{width}")
    table[0] = lattice.site_species
    for k in lattice.kinds:
        table[k.code] = k.species
    return table


# --------------------------------------------------------------------------- atoms -> placement
def _in_plane_geometry(cell: NDArray[np.float64]) -> tuple[float, float, float]:
    """Lengths of the two in-plane cell vectors (angstrom) and the angle between them (degrees)."""
    a = float(np.linalg.norm(cell[0]))
    b = float(np.linalg.norm(cell[1]))
    cos = float(cell[0] @ cell[1]) / max(a * b, 1e-300)
    return a, b, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _check_cell(cell: NDArray[np.float64], lattice: Lattice, tolerance: float) -> None:
    """Raises ValueError unless the in-plane cell vectors fit the lattice's supercell."""
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6:
        raise ValueError(
            f"the structure's first two cell vectors must lie in the xy plane (the layer); "
            f"their z components are {cell[0, 2]:.6g} and {cell[1, 2]:.6g} A"
        )
    a, b, gamma = _in_plane_geometry(cell)
    a0, b0, gamma0 = _in_plane_geometry(lattice.supercell_cell)
    if (abs(a - a0) > tolerance * a0 or abs(b - b0) > tolerance * b0
            or abs(gamma - gamma0) > tolerance * gamma0):
        raise ValueError(
            f"the structure's in-plane cell a = {a:.4f} A, b = {b:.4f} A, gamma = {gamma:.2f} deg "
            f"does not fit the {lattice.supercell[0]}x{lattice.supercell[1]} {lattice.name} "
            f"supercell a = {a0:.4f} A, b = {b0:.4f} A, gamma = {gamma0:.2f} deg "
            f"(relative tolerance {tolerance:g})"
        )


def _fractional_xy(atoms: ase.Atoms) -> NDArray[np.float64]:
    """(n_atoms, 2) in-plane fractional coordinates of the atoms in their own cell."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if abs(np.linalg.det(cell)) > 1e-9:
        return np.asarray(np.linalg.solve(cell.T, pos.T).T[:, :2], dtype=np.float64)
    # no (or a degenerate) third vector: the in-plane vectors alone define the coordinates
    return np.asarray(np.linalg.solve(cell[:2, :2].T, pos[:, :2].T).T, dtype=np.float64)


def _site_distances(frac_xy: NDArray[np.float64], z: NDArray[np.float64], plan: _Plan,
                    sites: NDArray[np.int64] | slice) -> NDArray[np.float64]:
    """(n_atoms, n_sites) minimum-image distances of atoms (in-plane fractions, cartesian z) to
    the given sites: periodic in plane, not in z."""
    delta = np.empty((frac_xy.shape[0], plan.z[sites].shape[0], 3))
    delta[..., :2] = frac_xy[:, None, :] - plan.frac_xy[None, sites, :]
    delta[..., 2] = (z[:, None] - plan.z[None, sites]) / plan.cell[2, 2]
    out: NDArray[np.float64] = np.linalg.norm(minimum_image(delta, plan.cell), axis=-1)
    return out


def atom_site_distances(atoms: ase.Atoms, lattice: Lattice, *,
                        cell_tolerance: float = DEFAULT_CELL_TOLERANCE) -> NDArray[np.float64]:
    """(n_atoms, n_sites) distances in angstrom from every atom to every site, as
    :func:`map_structure` measures them: in-plane positions as fractions of the structure's own
    cell, periodic in plane (the shortest image, :func:`~defectspace.lattice.minimum_image`),
    heights as cartesian z.

    Raises:
        ValueError: the structure's in-plane cell does not fit the lattice's supercell.
    """
    _check_cell(np.asarray(atoms.cell.array, dtype=np.float64), lattice, cell_tolerance)
    z = np.asarray(atoms.positions, dtype=np.float64)[:, 2]
    return _site_distances(_fractional_xy(atoms), z, _plan(lattice), slice(None))


def defects_found(atoms: ase.Atoms | Any, lattice: Lattice, *,
                  cell_tolerance: float = DEFAULT_CELL_TOLERANCE) -> dict[str, set[str]]:
    """The defects a structure shows on ``lattice``, whatever defects the lattice allows:
    ``{host: {species, ...}}`` with ``"V"`` where a sublattice has fewer atoms than sites.

    Every atom is put on the host of its nearest site (periodic in plane); an atom whose element
    differs from that host is a substitution ``host->element``. This is what ``--defects`` is
    inferred from (and checked against) when the input is structures; the placement itself is
    then read by :func:`map_structure`.

    Raises:
        ValueError: the structure's in-plane cell does not fit the lattice's supercell.
    """
    atoms = as_atoms(atoms)
    d = atom_site_distances(atoms, lattice, cell_tolerance=cell_tolerance)
    found: dict[str, set[str]] = {}
    if len(atoms) == 0:
        return {h: {"V"} for h in lattice.host_types}
    nearest = np.argmin(d, axis=1)
    host_of_atom = lattice.site_types[nearest]
    symbols = atoms.get_chemical_symbols()
    for t, host in enumerate(lattice.host_types):
        mine = np.flatnonzero(host_of_atom == t)
        for a in mine.tolist():
            if symbols[a] != host:
                found.setdefault(host, set()).add(symbols[a])
        if len(mine) < int((lattice.site_types == t).sum()):
            found.setdefault(host, set()).add("V")
    return found


def map_structure(
    atoms: ase.Atoms | Any,
    lattice: Lattice,
    *,
    max_displacement: float = DEFAULT_MAX_DISPLACEMENT,
    ambiguity_ratio: float = DEFAULT_AMBIGUITY_RATIO,
    cell_tolerance: float = DEFAULT_CELL_TOLERANCE,
) -> StructureMapping:
    """The placement of an atomic structure (``ase.Atoms`` or ``pymatgen.core.Structure``) on
    ``lattice``, by optimal assignment of atoms to sites.

    The structure's in-plane cell must fit the lattice's supercell (lengths and angle within
    ``cell_tolerance``, relative); its out-of-plane length may differ (vacuum). In-plane
    positions are taken as fractions of the structure's own cell; heights are compared as
    cartesian z in angstrom, so the layer must sit at the lattice's height (as in 2DMD's CIFs).

    Sites are grouped by host element (elements shared through substitutions join groups). An
    atom may go to a site whose host is its element or which allows it as a substituent. For each
    group the atoms are assigned to its sites by ``scipy.optimize.linear_sum_assignment`` with the
    minimum-image distance (periodic in plane, not in z) as cost; sites left empty are vacancies
    and an atom on a site of another host is a substitution.

    The mapping is flagged :attr:`~StructureMapping.ambiguous`, with one reason per finding,
    when an atom is farther than ``max_displacement`` from its site, or when its distance to its
    site exceeds ``ambiguity_ratio`` times its distance to the nearest other site it may occupy
    (e.g. a chalcogen relaxed half-way between its top and bottom sites beside a vacancy).
    An atom that relaxed all the way onto an empty neighbouring site sits cleanly there and maps
    there; only the displacements of the atoms around it can betray it. The defaults were measured
    on 2DMD's relaxed MoS2 so that every such structure there is flagged (see
    :data:`DEFAULT_MAX_DISPLACEMENT`).

    Raises:
        ValueError: the cell does not fit; an atom's element fits no site of the lattice; a
            group has more atoms than sites; or the atoms leave empty a site whose host cannot
            be vacant.
    """
    if not max_displacement > 0:
        raise ValueError(f"max_displacement must be positive, got {max_displacement}")
    if not 0 < ambiguity_ratio <= 1:
        raise ValueError(f"ambiguity_ratio must be in (0, 1], got {ambiguity_ratio}")
    if not 0 <= cell_tolerance < 1:
        raise ValueError(f"cell_tolerance must be in [0, 1), got {cell_tolerance}")
    from ase.data import chemical_symbols
    from scipy.optimize import linear_sum_assignment

    atoms = as_atoms(atoms)
    plan = _plan(lattice)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    _check_cell(cell, lattice, cell_tolerance)
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    atom_group = plan.sublattice_of[numbers]
    atom_element = plan.element_of[numbers]
    if (atom_group < 0).any():
        bad = np.flatnonzero(atom_group < 0)
        unknown = sorted({chemical_symbols[n] for n in numbers[bad].tolist()})
        holdable = sorted(el for sub in plan.sublattices for el in sub.elements)
        raise ValueError(
            f"atom {int(bad[0])} is {chemical_symbols[numbers[bad[0]]]}, an element no site of "
            f"{lattice.name} can hold (elements it can hold: {holdable}); unknown: {unknown}"
        )
    frac_xy = _fractional_xy(atoms)
    z = np.asarray(atoms.positions, dtype=np.float64)[:, 2]
    states = np.zeros(lattice.n_sites, dtype=np.uint8)
    assignment = np.full(len(atoms), -1, dtype=np.int64)
    distance_of = np.zeros(len(atoms), dtype=np.float64)
    reasons: list[str] = []
    for g, sub in enumerate(plan.sublattices):
        idx = np.flatnonzero(atom_group == g)
        m = len(sub.sites)
        names = "/".join(sub.elements)
        if len(idx) > m:
            raise ValueError(
                f"the structure has {len(idx)} {names} atoms but the {names} sublattice of "
                f"{lattice.name} {lattice.supercell[0]}x{lattice.supercell[1]} has only {m} sites"
            )
        # periodic (minimum-image) distances, atoms x sites of this sublattice
        dist = _site_distances(frac_xy[idx], z[idx], plan, sub.sites)
        cost = np.where(sub.allowed[atom_element[idx]], dist, np.inf)
        # rows for the empty sites: free where the host may be vacant, forbidden elsewhere
        n_empty = m - len(idx)
        empty_cost = np.where(sub.vacancy_codes >= 0, 0.0, np.inf)
        full = np.vstack([cost, np.broadcast_to(empty_cost, (n_empty, m))])
        try:
            rows, cols = linear_sum_assignment(full)
        except ValueError:
            raise ValueError(
                f"the {len(idx)} {names} atoms cannot fill the {names} sites of {lattice.name} "
                f"that cannot be vacant"
            ) from None
        col_of_row = np.empty(m, dtype=np.int64)
        col_of_row[rows] = cols
        atom_cols = col_of_row[: len(idx)]
        empty_cols = col_of_row[len(idx):]
        states[sub.sites[empty_cols]] = sub.vacancy_codes[empty_cols].astype(np.uint8)
        states[sub.sites[atom_cols]] = sub.codes[atom_element[idx], atom_cols]
        assignment[idx] = sub.sites[atom_cols]
        mine = dist[np.arange(len(idx)), atom_cols]
        distance_of[idx] = mine
        # next-best site of each atom: the nearest other site its element may occupy (inf if none)
        other = cost.copy()
        other[np.arange(len(idx)), atom_cols] = np.inf
        next_col = np.argmin(other, axis=1)
        next_d = other[np.arange(len(idx)), next_col]
        for r in np.flatnonzero(mine > max_displacement).tolist():
            a = int(idx[r])
            reasons.append(
                f"atom {a} ({chemical_symbols[numbers[a]]}) is {mine[r]:.3f} A from its site "
                f"{int(sub.sites[atom_cols[r]])}, beyond max_displacement {max_displacement:g} A"
            )
        for r in np.flatnonzero(mine > ambiguity_ratio * next_d).tolist():
            a = int(idx[r])
            reasons.append(
                f"atom {a} ({chemical_symbols[numbers[a]]}) is {mine[r]:.3f} A from its site "
                f"{int(sub.sites[atom_cols[r]])} but {next_d[r]:.3f} A from site "
                f"{int(sub.sites[next_col[r]])} (ratio {mine[r] / next_d[r]:.3f} > "
                f"ambiguity_ratio {ambiguity_ratio:g})"
            )
    states.setflags(write=False)
    assignment.setflags(write=False)
    return StructureMapping(states, bool(reasons), tuple(reasons),
                            float(distance_of.max()) if len(atoms) else 0.0, assignment)


def map_structures(
    structures: Sequence[ase.Atoms],
    lattice: Lattice,
    *,
    max_displacement: float = DEFAULT_MAX_DISPLACEMENT,
    ambiguity_ratio: float = DEFAULT_AMBIGUITY_RATIO,
    cell_tolerance: float = DEFAULT_CELL_TOLERANCE,
) -> list[StructureMapping]:
    """:func:`map_structure` of each structure, in order (the first bad one raises)."""
    return [map_structure(a, lattice, max_displacement=max_displacement,
                          ambiguity_ratio=ambiguity_ratio, cell_tolerance=cell_tolerance)
            for a in structures]


# --------------------------------------------------------------------------- reading CIFs
def structure_id(name: str) -> str:
    """The id of a structure file: its stem without 2DMD's ``poscar_<TYPE>-`` and ``_relaxed``.

    ``poscar_V5-6141de81ee0a3fd43fb47c7f_unrelaxed.cif`` -> ``6141de81ee0a3fd43fb47c7f`` and
    ``MoS2_Mo56W4Se1S122_dc05..._relaxed.cif`` -> ``MoS2_Mo56W4Se1S122_dc05...``, the ``id``
    column of 2DMD's table.
    """
    stem = Path(name).name
    if stem.lower().endswith(".cif"):
        stem = stem[:-4]
    return _ID_PREFIX.sub("", _ID_SUFFIX.sub("", stem))


def read_structures(path: str | Path) -> Iterator[tuple[str, ase.Atoms]]:
    """(id, atoms) of every CIF in a file, a folder or a tar archive.

    Folders are searched recursively, files in sorted order of their relative paths; tar
    archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.xz``, ``.txz``) are read in archive order,
    skipping members that are not ``.cif`` files. The id is :func:`structure_id` of the file name.
    Each CIF must hold one structure with full occupancies; P1 files are read as listed, others
    are expanded by their symmetry operations. Atoms get ``pbc=(True, True, False)``.

    Raises:
        FileNotFoundError: ``path`` does not exist (raised at the call).
        ValueError: ``path`` is no CIF, folder or tar (at the call); a CIF is malformed, holds
            no or several structures or partial occupancies, or the archive is corrupt (while
            iterating; the message names the file). Warnings of ase's CIF parser (badly formed
            numbers, wrong token counts, duplicated tags, ...) count as malformed.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"structure input {p} does not exist")
    name = p.name.lower()
    if p.is_dir():
        return _iter_folder(p)
    if name.endswith(".cif"):
        return _iter_file(p)
    if any(name.endswith(s) for s in STRUCTURE_SUFFIXES):
        return _iter_tar(p)
    raise ValueError(
        f"structure input {p} is not a .cif file, a folder or a tar archive "
        f"({', '.join(STRUCTURE_SUFFIXES)})"
    )


def _iter_file(path: Path) -> Iterator[tuple[str, ase.Atoms]]:
    yield structure_id(path.name), read_cif_bytes(path.read_bytes(), str(path))


def _iter_folder(folder: Path) -> Iterator[tuple[str, ase.Atoms]]:
    files = sorted((f for f in folder.rglob("*") if f.suffix.lower() == ".cif" and f.is_file()),
                   key=lambda f: f.relative_to(folder).as_posix())
    for f in files:
        yield structure_id(f.name), read_cif_bytes(f.read_bytes(), str(f))


def _iter_tar(path: Path) -> Iterator[tuple[str, ase.Atoms]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.lower().endswith(".cif"):
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                data = fh.read()
                yield structure_id(member.name), read_cif_bytes(data, f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise ValueError(f"cannot read tar archive {path}: {exc}") from exc
