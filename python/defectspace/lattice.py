"""Supercells of 2D crystals: sites, host species, allowed defects, presets and periodic distances
(their symmetry groups come from :mod:`defectspace.symmetry`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace.symmetry import (
    SUBGROUP_PREDICATES,
    SUBGROUPS,
    PointOperation,
    SymmetryGroup,
    basis_action,
    build_group,
    layer_symmetry,
)

if TYPE_CHECKING:
    import ase

VACANCY = "V"
"""Species name of a vacancy in defect kinds and 2DMD strings."""


@dataclass(frozen=True)
class DefectKind:
    """One kind of point defect: a host species replaced by another species or a vacancy."""

    code: int
    """Code of this kind in dense placement arrays (1..n_kinds; 0 is the host atom)."""
    host: str
    """Element of the site the defect sits on, e.g. ``"S"``."""
    species: str
    """Element that replaces the host, or ``"V"`` for a vacancy."""

    @property
    def is_vacancy(self) -> bool:
        """Whether the defect removes the host atom."""
        return self.species == VACANCY

    @property
    def label(self) -> str:
        """2DMD-style label, e.g. ``"S->V"``."""
        return f"{self.host}->{self.species}"


@dataclass(frozen=True)
class _Preset:
    """A preset unit cell: in-plane cell, fractional basis, and the defects it allows by default."""

    name: str
    """Canonical name (the lattice's :attr:`Lattice.name`)."""
    cell: tuple[tuple[float, float, float], ...]
    """(3, 3) cell vectors as rows, angstrom."""
    basis: tuple[tuple[float, float, float], ...]
    """(n_basis, 3) fractional basis coordinates, in the documented site order."""
    species: tuple[str, ...]
    """Element of each basis site."""
    substituents: Mapping[str, tuple[str, ...]]
    """Defects allowed by default, per host element (``"V"`` = vacancy)."""
    layer_group: int
    """spglib's layer-group number of the cell (checked by the tests)."""
    n_operations: int
    """Number of layer-group point operations spglib finds (checked by the tests)."""
    site_order: str
    """The basis sites in order, for the documentation."""


def _hexagonal(a: float, c: float) -> tuple[tuple[float, float, float], ...]:
    return ((a, 0.0, 0.0), (-a / 2, a * float(np.sqrt(3)) / 2, 0.0), (0.0, 0.0, c))


_CHALCOGEN_SWAP = {"S": "Se", "Se": "S", "Te": "Se"}
_METAL_SWAP = {"Mo": "W", "W": "Mo", "Ti": "Zr", "Zr": "Ti", "Hf": "Zr", "Sn": "Ti", "Pt": "Pd",
               "Pd": "Pt", "Nb": "Ta", "Ta": "Nb", "V": "Nb"}


def _h2(formula: str, metal: str, chalcogen: str, a: float, c: float, z_metal: float,
        z_bottom: float, z_top: float) -> _Preset:
    """A 2H (trigonal prismatic, D3h) dichalcogenide in 2DMD's site order: M, bottom X, top X."""
    return _Preset(formula, _hexagonal(a, c),
                   ((1 / 3, 2 / 3, z_metal), (2 / 3, 1 / 3, z_bottom), (2 / 3, 1 / 3, z_top)),
                   (metal, chalcogen, chalcogen),
                   {metal: ("V", _METAL_SWAP[metal]), chalcogen: ("V", _CHALCOGEN_SWAP[chalcogen])},
                   78, 12, f"L=0 {metal} (1/3, 2/3), L=1 bottom {chalcogen} (2/3, 1/3), "
                           f"L=2 top {chalcogen} (2/3, 1/3)")


def _t1(formula: str, metal: str, chalcogen: str, a: float, height: float, c: float = 20.0
        ) -> _Preset:
    """A 1T (octahedral, D3d) dichalcogenide: M at the origin, X below at (1/3, 2/3) and X above
    at (2/3, 1/3), ``height`` angstrom from the metal plane."""
    dz = height / c
    return _Preset(f"1T-{formula}", _hexagonal(a, c),
                   ((0.0, 0.0, 0.5), (1 / 3, 2 / 3, 0.5 - dz), (2 / 3, 1 / 3, 0.5 + dz)),
                   (metal, chalcogen, chalcogen),
                   {metal: ("V", _METAL_SWAP.get(metal, "Ti")),
                    chalcogen: ("V", _CHALCOGEN_SWAP[chalcogen])},
                   72, 12, f"L=0 {metal} (0, 0), L=1 bottom {chalcogen} (1/3, 2/3), "
                           f"L=2 top {chalcogen} (2/3, 1/3)")


def _iii_vi(formula: str, metal: str, chalcogen: str, a: float, metal_half: float,
            chalcogen_half: float, c: float = 25.0) -> _Preset:
    """A III-VI monolayer (GaSe, InSe: X-M-M-X, D3h): the M-M dimer at (1/3, 2/3), the chalcogens
    at (2/3, 1/3); heights in angstrom from the layer's centre."""
    return _Preset(formula, _hexagonal(a, c),
                   ((1 / 3, 2 / 3, 0.5 - metal_half / c), (1 / 3, 2 / 3, 0.5 + metal_half / c),
                    (2 / 3, 1 / 3, 0.5 - chalcogen_half / c), (2 / 3, 1 / 3, 0.5 + chalcogen_half / c)),
                   (metal, metal, chalcogen, chalcogen),
                   {metal: ("V",), chalcogen: ("V", _CHALCOGEN_SWAP[chalcogen])},
                   78, 12, f"L=0 bottom {metal}, L=1 top {metal} (1/3, 2/3), L=2 bottom {chalcogen}, "
                           f"L=3 top {chalcogen} (2/3, 1/3)")


# Black phosphorus (phosphorene): one layer of bulk Cmce BP (a = 3.3136, b = 10.478, c = 4.3763 A;
# P at 8f, y = 0.10168, z = 0.08056; Brown & Rundqvist 1965), b out of plane: x along the zigzag
# direction (3.3136 A), y along the armchair direction (4.3763 A), the puckered sheet 2.13 A thick.
_BP_A, _BP_B, _BP_Z, _BP_H, _BP_C = 3.3136, 4.3763, 0.08056, 0.10168 * 10.478, 20.0

_PRESET_LIST: tuple[_Preset, ...] = (
    # 2H dichalcogenides. MoS2 is 2DMD's cell exactly (README of the 2DMD data); the others use
    # experimental in-plane constants with the same vacuum and c-fractions scaled from their
    # layer thickness.
    _h2("MoS2", "Mo", "S", 3.1903157, 14.879004, 0.25, 0.144826, 0.355174),
    _h2("WSe2", "W", "Se", 3.3197, 15.5, 0.25, 0.14, 0.36),
    _h2("MoSe2", "Mo", "Se", 3.3209, 15.5, 0.25, 0.14, 0.36),
    _h2("WS2", "W", "S", 3.1824, 14.879004, 0.25, 0.144826, 0.355174),
    # 1T dichalcogenides: experimental a, chalcogen heights from the bulk structures
    _t1("TiS2", "Ti", "S", 3.407, 1.43),
    _t1("TiSe2", "Ti", "Se", 3.540, 1.55),
    _t1("ZrS2", "Zr", "S", 3.662, 1.45),
    _t1("HfS2", "Hf", "S", 3.631, 1.45),
    _t1("SnS2", "Sn", "S", 3.649, 1.47),
    _t1("PtSe2", "Pt", "Se", 3.728, 1.30),
    _t1("MoS2", "Mo", "S", 3.19, 1.59),
    # hexagonal boron nitride and graphene
    _Preset("hBN", _hexagonal(2.504, 20.0), ((1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.5)), ("B", "N"),
            {"B": ("V", "C"), "N": ("V", "C")}, 78, 12, "L=0 B (1/3, 2/3), L=1 N (2/3, 1/3)"),
    _Preset("graphene", _hexagonal(2.46, 20.0), ((1 / 3, 2 / 3, 0.5), (2 / 3, 1 / 3, 0.5)),
            ("C", "C"), {"C": ("V", "N", "B")}, 80, 24,
            "L=0 C (1/3, 2/3), L=1 C (2/3, 1/3); the hexagon centre (0, 0) has the full symmetry"),
    # 2DMD's other materials
    _iii_vi("GaSe", "Ga", "Se", 3.755, 1.225, 2.40),
    _iii_vi("InSe", "In", "Se", 4.005, 1.395, 2.66),
    _Preset("black-phosphorus",
            ((_BP_A, 0.0, 0.0), (0.0, _BP_B, 0.0), (0.0, 0.0, _BP_C)),
            ((0.0, _BP_Z, 0.5 + _BP_H / _BP_C), (0.0, -_BP_Z % 1.0, 0.5 - _BP_H / _BP_C),
             (0.5, 0.5 + _BP_Z, 0.5 - _BP_H / _BP_C), (0.5, 0.5 - _BP_Z, 0.5 + _BP_H / _BP_C)),
            ("P", "P", "P", "P"), {"P": ("V", "As")}, 42, 8,
            "L=0 upper P (0, z), L=1 lower P (0, -z), L=2 lower P (1/2, 1/2 + z), "
            "L=3 upper P (1/2, 1/2 - z), z = 0.08056; x zigzag, y armchair"),
)

_PRESETS: dict[str, _Preset] = {p.name: p for p in _PRESET_LIST}

_ALIASES: dict[str, str] = {
    **{f"2H-{p.name}": p.name for p in _PRESET_LIST if p.layer_group == 78 and len(p.basis) == 3},
    "h-BN": "hBN", "BN": "hBN", "phosphorene": "black-phosphorus", "BP": "black-phosphorus",
}

PRESETS = tuple(_PRESETS)
"""Names accepted by :meth:`Lattice.preset` (besides the aliases in :data:`PRESET_ALIASES`)."""

PRESET_ALIASES: Mapping[str, str] = _ALIASES
"""Other names of presets: ``2H-MoS2`` for ``MoS2``, ``phosphorene`` for ``black-phosphorus``."""


def preset_name(name: str) -> str | None:
    """The canonical preset name of ``name`` (case-insensitive, aliases resolved), or None."""
    table = {k.lower(): k for k in _PRESETS} | {k.lower(): v for k, v in _ALIASES.items()}
    return table.get(name.strip().lower())


def preset_site_order(name: str) -> str:
    """The documented site order of a preset's basis (``"L=0 B (1/3, 2/3), L=1 N (2/3, 1/3)"``)."""
    key = preset_name(name)
    if key is None:
        raise ValueError(f"unknown lattice preset {name!r}; known: {', '.join(PRESETS)}")
    return _PRESETS[key].site_order


def parse_defects(text: str) -> dict[str, tuple[str, ...]]:
    """``"B->V,B->C,N->V"`` as ``{"B": ("V", "C"), "N": ("V",)}`` (command-line form).

    Raises:
        ValueError: an item is not ``HOST->SPECIES``, names no element, or repeats.
    """
    from ase.data import chemical_symbols

    out: dict[str, list[str]] = {}
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"defects are listed like 'B->V,B->C' (substitutions and vacancies), got {text!r}")
    for item in items:
        host, sep, species = (t.strip() for t in item.partition("->"))
        if not sep or not host or not species:
            raise ValueError(f"defects look like 'B->C' (a substitution) or 'B->V' (a vacancy), "
                             f"got {item!r}")
        for what, el in (("host", host), ("species", species)):
            if el not in chemical_symbols[1:] and not (what == "species" and el == VACANCY):
                raise ValueError(f"{item}: {el!r} is no element symbol")
        if host == species:
            raise ValueError(f"{item}: a {host} site cannot be substituted by {host}")
        if species in out.setdefault(host, []):
            raise ValueError(f"{item} is listed twice")
        out[host].append(species)
    return {h: tuple(v) for h, v in out.items()}


def format_defects(defects: Mapping[str, Sequence[str]]) -> str:
    """Inverse of :func:`parse_defects`: ``"B->V,B->C,N->V"``."""
    return ",".join(f"{h}->{s}" for h, species in defects.items() for s in species)


def parse_supercell(value: str | Sequence[int]) -> tuple[int, int]:
    """Parses ``"8x8"`` or ``(8, 8)`` into a pair of positive ints."""
    if isinstance(value, str):
        parts = value.lower().replace("*", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"supercell must look like '8x8', got {value!r}")
        n1, n2 = (int(p) for p in parts)
    else:
        seq = tuple(value)
        if len(seq) != 2:
            raise ValueError(f"supercell must have two sizes, got {value!r}")
        n1, n2 = (int(v) for v in seq)
    if n1 < 1 or n2 < 1:
        raise ValueError(f"supercell sizes must be positive, got {n1}x{n2}")
    return n1, n2


_IMAGE_SHIFTS = np.array([[0, 0, 0]] + [[a, b, 0] for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b],
                         dtype=np.float64)
"""Fractional in-plane shifts searched by :func:`minimum_image`, no shift first."""


def minimum_image(frac_delta: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """(..., 3) cartesian shortest periodic images (angstrom) of fractional displacements (..., 3).

    The cell (3, 3, vectors as rows, the first two in plane) is periodic along its first two
    vectors only. Rounding the fractional differences is not enough on an oblique cell (120
    degrees: on a 2x2 MoS2 supercell it turns three 3.19 A neighbour pairs into 5.53 A): the
    shortest image is searched among the 3 x 3 images around the rounded one.
    """
    d = np.array(frac_delta, dtype=np.float64)
    c = np.asarray(cell, dtype=np.float64)
    d[..., :2] -= np.round(d[..., :2])
    base = d @ c
    shifts = _IMAGE_SHIFTS @ c  # (9, 3), the rounded image first
    # |b + s|^2 - |b|^2 = 2 b.s + |s|^2 for each image s: the smallest is the shortest image
    best = np.zeros(base.shape[:-1], dtype=np.intp)
    best_excess = np.zeros(base.shape[:-1])
    for k in range(1, len(shifts)):
        excess = base @ (2.0 * shifts[k]) + shifts[k] @ shifts[k]
        shorter = excess < best_excess
        best[shorter] = k
        best_excess = np.minimum(excess, best_excess)
    out: NDArray[np.float64] = base + shifts[best]
    return out


MIN_VACUUM = 5.0
"""Least empty space (angstrom) along the third cell vector of a layer's unit cell.

The empty gap between periodic images of a 2D layer is its vacuum: 11.7 A for the presets, 2DMD's
cells and usual slabs have 10-20 A. A bulk crystal has no such gap (diamond Si: 1.36 A; even
layered bulk 2H-MoS2: 2.98 A between the sulfur planes of neighbouring layers), and its bonds
cross the cell's top face. 5 A is beyond every covalent bond and most van der Waals gaps.
"""


def check_layer(cell: ArrayLike, fractional: ArrayLike, name: str, min_vacuum: float = MIN_VACUUM
                ) -> float:
    """The vacuum of a layer's unit cell: the largest empty gap (angstrom) between atomic planes
    along the third cell vector, periodic images included.

    Raises:
        ValueError: the gap is smaller than ``min_vacuum`` (a bulk crystal, not a layer).
    """
    cell_arr = np.asarray(cell, dtype=np.float64)
    frac = np.asarray(fractional, dtype=np.float64).reshape(-1, 3)
    height = abs(float(cell_arr[2, 2]))  # the spacing of periodic images along the layer normal
    if len(frac) == 0:
        return height
    z = np.sort(np.mod(frac[:, 2], 1.0)) * height
    gaps = np.diff(np.concatenate([z, [z[0] + height]]))
    vacuum = float(gaps.max())
    if vacuum < min_vacuum:
        raise ValueError(
            f"{name} is not a 2D layer: the largest empty gap along the third cell vector is "
            f"{vacuum:.2f} A (cell height {height:.2f} A), so its atoms bond across the cell's top "
            f"face as in a bulk crystal; a layer needs at least {min_vacuum:g} A of vacuum along c "
            f"(give a slab cell)")
    return vacuum


class Lattice:
    """An n1 x n2 supercell of a 2D crystal, with the defects each site may hold.

    Sites are numbered ``site = n_basis * (i * n2 + j) + L`` for cell ``(i, j)`` and basis site
    ``L``: for the MoS2 preset this is exactly 2DMD's numbering (L = 0 Mo, 1 bottom S, 2 top S).

    Args:
        cell: (3, 3) unit-cell vectors as rows, in angstrom; the third is the out-of-plane axis.
        basis: (n_basis, 3) fractional coordinates of the basis sites in the unit cell.
        species: element of each basis site.
        supercell: (n1, n2) or ``"n1xn2"``.
        defects: for each host element, the species that may replace it (``"V"`` = vacancy).
        name: a label for messages and files.
        symprec: spglib's tolerance in angstrom.
    """

    def __init__(
        self,
        cell: ArrayLike,
        basis: ArrayLike,
        species: Sequence[str],
        supercell: str | Sequence[int] = (1, 1),
        defects: Mapping[str, Sequence[str]] | None = None,
        name: str = "custom",
        symprec: float = 1e-3,
    ) -> None:
        cell_arr = np.asarray(cell, dtype=np.float64)
        if cell_arr.shape != (3, 3):
            raise ValueError(f"cell must have shape (3, 3), got {cell_arr.shape}")
        if abs(np.linalg.det(cell_arr)) < 1e-8:
            raise ValueError("cell vectors are linearly dependent")
        if abs(cell_arr[0, 2]) > 1e-6 or abs(cell_arr[1, 2]) > 1e-6:
            raise ValueError("the first two cell vectors must lie in the xy plane (the layer)")
        basis_arr = np.asarray(basis, dtype=np.float64)
        if basis_arr.ndim != 2 or basis_arr.shape[1] != 3 or basis_arr.shape[0] == 0:
            raise ValueError(f"basis must have shape (n_basis, 3), got {basis_arr.shape}")
        species_t = tuple(str(s) for s in species)
        if len(species_t) != basis_arr.shape[0]:
            raise ValueError(
                f"species has {len(species_t)} entries but basis has {basis_arr.shape[0]} sites"
            )
        self.name = name
        self.cell = cell_arr
        self.basis = basis_arr
        self.basis_species = species_t
        self.supercell = parse_supercell(supercell)
        self.symprec = float(symprec)
        hosts = sorted(set(species_t), key=species_t.index)
        defects = dict(defects or {})
        for host in defects:
            if host not in hosts:
                raise ValueError(f"defect {host}->{'/'.join(defects[host]) or '?'} is on a host "
                                 f"absent from the cell: {name} has no {host} site, only "
                                 f"{', '.join(hosts)} (not in the basis)")
        kinds: list[DefectKind] = []
        for host in hosts:
            for sp in defects.get(host, ()):
                if sp == host:
                    raise ValueError(f"a {host} site cannot be 'substituted' by {host}")
                if any(k.host == host and k.species == sp for k in kinds):
                    raise ValueError(f"defect {host}->{sp} listed twice")
                kinds.append(DefectKind(len(kinds) + 1, host, sp))
        if len(kinds) > 255:
            raise ValueError(f"at most 255 defect kinds are supported, got {len(kinds)}")
        self.kinds: tuple[DefectKind, ...] = tuple(kinds)
        self.host_types: tuple[str, ...] = tuple(hosts)
        self._basis_types = np.array([hosts.index(s) for s in species_t], dtype=np.int32)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def preset(cls, name: str, supercell: str | Sequence[int] = (8, 8),
               defects: Mapping[str, Sequence[str]] | None = None) -> Lattice:
        """A preset 2D crystal (:data:`PRESETS`; aliases :data:`PRESET_ALIASES`).

        ``MoS2``, ``WSe2``, ``MoSe2``, ``WS2`` (also ``2H-MoS2``, ...): 2H dichalcogenides in
        2DMD's site order (metal, bottom chalcogen, top chalcogen), layer group 78 (p-6m2);
        ``1T-TiS2``, ``1T-TiSe2``, ``1T-ZrS2``, ``1T-HfS2``, ``1T-SnS2``, ``1T-PtSe2``, ``1T-MoS2``:
        1T dichalcogenides (metal at the origin, bottom, top chalcogen), layer group 72 (p-3m1);
        ``hBN`` (B, N; 78), ``graphene`` (two C; 80, p6/mmm), ``GaSe`` and ``InSe`` (bottom and
        top metal, bottom and top chalcogen; 78), ``black-phosphorus`` (phosphorene, four P of a
        rectangular cell; 42, pman). :func:`preset_site_order` gives each basis in words.

        Args:
            defects: the defects each host may hold, replacing the preset's defaults (e.g. 2H-MoS2:
                Mo->V, Mo->W, S->V, S->Se).

        Raises:
            ValueError: an unknown name, or ``defects`` for a host the crystal does not have.
        """
        key = preset_name(name)
        if key is None:
            raise ValueError(f"unknown lattice preset {name!r}; known: {', '.join(PRESETS)} "
                             f"(or a unit-cell .cif file)")
        p = _PRESETS[key]
        return cls(p.cell, p.basis, p.species, supercell,
                   defects=p.substituents if defects is None else defects, name=key)

    @classmethod
    def from_atoms(
        cls,
        atoms: ase.Atoms,
        supercell: str | Sequence[int] = (1, 1),
        defects: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
        symprec: float = 1e-3,
    ) -> Lattice:
        """A lattice whose unit cell is a pristine ``ase.Atoms`` (third cell vector out of plane).

        Raises:
            ValueError: the cell is no layer: less than :data:`MIN_VACUUM` of empty space along
                the third cell vector (a bulk crystal, whose bonds cross the cell's top face).
        """
        label = name or atoms.get_chemical_formula()
        frac = atoms.get_scaled_positions(wrap=True)
        check_layer(atoms.cell.array, frac, label)
        return cls(atoms.cell.array, frac, atoms.get_chemical_symbols(), supercell, defects, label,
                   symprec)

    @classmethod
    def from_pymatgen(
        cls,
        structure: Any,
        supercell: str | Sequence[int] = (1, 1),
        defects: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
        symprec: float = 1e-3,
    ) -> Lattice:
        """A lattice whose unit cell is a pristine ``pymatgen.core.Structure`` (third lattice
        vector out of plane), as :meth:`from_atoms`; with no ``defects``, every host may be vacant.

        Raises:
            ImportError: pymatgen is missing (``pip install 'defectspace[pymatgen]'``).
            ValueError: a disordered structure, or no layer (:meth:`from_atoms`).
        """
        atoms = pymatgen_to_atoms(structure)
        if defects is None:
            defects = {s: (VACANCY,) for s in dict.fromkeys(atoms.get_chemical_symbols())}
        return cls.from_atoms(atoms, supercell, defects,
                              name or structure.composition.reduced_formula, symprec)

    @classmethod
    def from_cif(
        cls,
        path: str | Path,
        supercell: str | Sequence[int] = (1, 1),
        defects: Mapping[str, Sequence[str]] | None = None,
        symprec: float = 1e-3,
    ) -> Lattice:
        """A lattice from a unit-cell CIF; with no ``defects`` given, every host may be vacant.

        The CIF is read by :func:`defectspace.cif.read_cif_bytes` (malformed files and
        partial occupancies are refused, naming the site) and must describe a layer
        (:meth:`from_atoms`).
        """
        from defectspace.cif import read_cif_bytes

        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read unit-cell CIF {p}: {exc.strerror or exc}") from None
        atoms = read_cif_bytes(data, str(p))
        if defects is None:
            defects = {s: (VACANCY,) for s in dict.fromkeys(atoms.get_chemical_symbols())}
        check_layer(atoms.cell.array, atoms.get_scaled_positions(wrap=True), f"unit-cell CIF {p}")
        return cls.from_atoms(atoms, supercell, defects, p.stem, symprec)

    def with_supercell(self, supercell: str | Sequence[int]) -> Lattice:
        """The same crystal and defects on another supercell."""
        return Lattice(self.cell, self.basis, self.basis_species, supercell,
                       {h: [k.species for k in self.kinds if k.host == h] for h in self.host_types},
                       self.name, self.symprec)

    # ----------------------------------------------------------------- sites
    @property
    def n_basis(self) -> int:
        """Sites per unit cell."""
        return int(self.basis.shape[0])

    @property
    def n_cells(self) -> int:
        """Unit cells in the supercell."""
        return self.supercell[0] * self.supercell[1]

    @property
    def n_sites(self) -> int:
        """Sites in the supercell."""
        return self.n_basis * self.n_cells

    @property
    def n_kinds(self) -> int:
        """Number of defect kinds (codes 1..n_kinds)."""
        return len(self.kinds)

    @functools.cached_property
    def site_types(self) -> NDArray[np.int32]:
        """(n_sites,) int32 index into :attr:`host_types` of each site's host element."""
        return np.tile(self._basis_types, self.n_cells)

    @functools.cached_property
    def site_species(self) -> tuple[str, ...]:
        """Host element of every site."""
        return tuple(self.host_types[t] for t in self.site_types)

    @functools.cached_property
    def site_cells(self) -> NDArray[np.int64]:
        """(n_sites, 3) int64: cell i, cell j and basis index L of every site."""
        n2 = self.supercell[1]
        s = np.arange(self.n_sites)
        cell = s // self.n_basis
        return np.stack([cell // n2, cell % n2, s % self.n_basis], axis=1)

    @functools.cached_property
    def supercell_cell(self) -> NDArray[np.float64]:
        """(3, 3) supercell vectors as rows, in angstrom."""
        n1, n2 = self.supercell
        return self.cell * np.array([[n1], [n2], [1]], dtype=np.float64)

    @functools.cached_property
    def fractional_positions(self) -> NDArray[np.float64]:
        """(n_sites, 3) fractional coordinates in the supercell."""
        n1, n2 = self.supercell
        ijl = self.site_cells
        frac = self.basis[ijl[:, 2]].copy()
        frac[:, 0] = (frac[:, 0] + ijl[:, 0]) / n1
        frac[:, 1] = (frac[:, 1] + ijl[:, 1]) / n2
        return frac

    @functools.cached_property
    def positions(self) -> NDArray[np.float64]:
        """(n_sites, 3) cartesian positions in angstrom."""
        pos: NDArray[np.float64] = self.fractional_positions @ self.supercell_cell
        return pos

    @functools.cached_property
    def kind_site_type(self) -> NDArray[np.int32]:
        """(n_kinds,) int32 host type of each defect kind."""
        return np.array([self.host_types.index(k.host) for k in self.kinds], dtype=np.int32)

    def kind(self, host: str, species: str) -> DefectKind:
        """The defect kind replacing ``host`` by ``species`` (``"V"`` for a vacancy)."""
        for k in self.kinds:
            if k.host == host and k.species == species:
                return k
        allowed = [k.label for k in self.kinds]
        raise ValueError(f"{self.name} has no defect {host}->{species}; allowed: {allowed}")

    def allowed_codes(self, site: int) -> tuple[int, ...]:
        """Codes (0 = host) that ``site`` may hold."""
        t = int(self.site_types[site])
        return (0, *(k.code for k in self.kinds if self.kind_site_type[k.code - 1] == t))

    def minimum_image_distances(self, sites: ArrayLike | None = None) -> NDArray[np.float64]:
        """(n, n_sites) periodic (minimum-image, in plane) distances in angstrom, z included
        (:func:`minimum_image`)."""
        idx = np.arange(self.n_sites) if sites is None else np.asarray(sites, dtype=np.int64)
        frac = self.fractional_positions
        out: NDArray[np.float64] = np.linalg.norm(
            minimum_image(frac[idx, None, :] - frac[None, :, :], self.supercell_cell), axis=-1)
        return out

    def neighbors(self, k: int = 6) -> NDArray[np.int32]:
        """(n_sites, k) int32: the k nearest sites of the same host type (periodic), nearest first."""
        return self._neighbors(int(k))

    @functools.lru_cache(maxsize=4)  # noqa: B019 - lattices are few and long-lived
    def _neighbors(self, k: int) -> NDArray[np.int32]:
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        d = self.minimum_image_distances()
        same = self.site_types[:, None] == self.site_types[None, :]
        d = np.where(same, d, np.inf)
        np.fill_diagonal(d, np.inf)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out = order.astype(np.int32)
        out[np.take_along_axis(d, order, axis=1) == np.inf] = -1
        out.setflags(write=False)
        return out

    # ----------------------------------------------------------------- symmetry
    @functools.cached_property
    def _layer_symmetry(self) -> tuple[int, tuple[PointOperation, ...]]:
        numbers = [self.host_types.index(s) + 1 for s in self.basis_species]
        return layer_symmetry(self.cell, self.basis, numbers, self.symprec, self.name)

    @property
    def point_operations(self) -> tuple[PointOperation, ...]:
        """The unit cell's layer-group operations found by spglib (identity first)."""
        return self._layer_symmetry[1]

    @property
    def layer_group(self) -> int:
        """Layer-group number from spglib (2H MoS2: 78, p-6m2)."""
        return self._layer_symmetry[0]

    @property
    def _tolerance(self) -> float:
        """Fractional tolerance of site matching under the point operations."""
        return self.symprec / max(float(np.linalg.norm(self.cell[0])), 1e-12) * 10

    def basis_action(self, op: PointOperation) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """The basis site each basis site goes to under ``op`` and the cell shift it lands in."""
        return basis_action(op, self.basis, self._basis_types, self._tolerance)

    def symmetry(
        self, subgroup: str | Callable[[PointOperation], bool] = "full"
    ) -> SymmetryGroup:
        """The supercell's symmetry group, or a subgroup of it.

        Args:
            subgroup: ``"full"``; ``"translations"`` (lattice translations only);
                ``"no_horizontal_mirror"`` (only operations that keep z, e.g. C3v for 2H MoS2);
                or a predicate choosing point operations (the C++ core checks closure).

        Point operations that do not map the supercell onto itself (e.g. 3-fold rotations on an
        8x4 supercell) are left out.
        """
        if isinstance(subgroup, str):
            return self._named_symmetry(subgroup)
        return self._build_symmetry(subgroup, "custom")

    @functools.lru_cache(maxsize=8)  # noqa: B019 - lattices are few and long-lived
    def _named_symmetry(self, subgroup: str) -> SymmetryGroup:
        if subgroup not in SUBGROUP_PREDICATES:
            raise ValueError(f"unknown subgroup {subgroup!r}; known: {', '.join(SUBGROUPS)}")
        return self._build_symmetry(SUBGROUP_PREDICATES[subgroup], subgroup)

    def _build_symmetry(self, keep: Callable[[PointOperation], bool], name: str) -> SymmetryGroup:
        return build_group(self.point_operations, keep, name, self.basis, self._basis_types,
                           self.supercell, self._tolerance)

    # ----------------------------------------------------------------- misc
    def describe(self) -> dict[str, Any]:
        """A JSON-able description, enough to rebuild the lattice with :meth:`from_description`."""
        return {
            "name": self.name,
            "cell": self.cell.tolist(),
            "basis": self.basis.tolist(),
            "species": list(self.basis_species),
            "supercell": list(self.supercell),
            "defects": {h: [k.species for k in self.kinds if k.host == h] for h in self.host_types},
            "symprec": self.symprec,
        }

    @classmethod
    def from_description(cls, d: Mapping[str, Any]) -> Lattice:
        """Inverse of :meth:`describe`."""
        try:
            return cls(d["cell"], d["basis"], d["species"], d["supercell"], d["defects"],
                       d.get("name", "custom"), d.get("symprec", 1e-3))
        except KeyError as exc:
            raise ValueError(f"lattice description lacks {exc}") from exc

    def same_as(self, other: Lattice, atol: float = 1e-6) -> bool:
        """Whether two lattices have the same cell, sites, defects and supercell."""
        return (
            self.supercell == other.supercell
            and self.basis_species == other.basis_species
            and self.kinds == other.kinds
            and np.allclose(self.cell, other.cell, atol=atol)
            and np.allclose(self.basis, other.basis, atol=atol)
        )

    def __repr__(self) -> str:
        n1, n2 = self.supercell
        kinds = ", ".join(k.label for k in self.kinds)
        return f"Lattice({self.name} {n1}x{n2}, {self.n_sites} sites, defects: {kinds})"


PYMATGEN_EXTRA = "pip install 'defectspace[pymatgen]'"
"""How to install the optional pymatgen support."""


def require_pymatgen() -> Any:
    """``pymatgen.io.ase.AseAtomsAdaptor``; an ImportError naming the extra when pymatgen is missing."""
    try:
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as exc:
        raise ImportError(f"pymatgen structures need pymatgen, which is not installed: "
                          f"{PYMATGEN_EXTRA}", name="pymatgen") from exc
    return AseAtomsAdaptor


def pymatgen_to_atoms(structure: Any) -> ase.Atoms:
    """The ``ase.Atoms`` of an ordered ``pymatgen.core.Structure`` (pbc in plane only).

    Raises:
        ImportError: pymatgen is missing.
        ValueError: the structure has partial occupancies.
    """
    adaptor = require_pymatgen()
    if not getattr(structure, "is_ordered", True):
        raise ValueError("the pymatgen structure has partial occupancies; give an ordered structure")
    atoms: ase.Atoms = adaptor.get_atoms(structure)
    atoms.pbc = (True, True, False)
    return atoms


def resolve_lattice(spec: str | Path | Lattice, supercell: str | Sequence[int] = (8, 8),
                    defects: str | Mapping[str, Sequence[str]] | None = None) -> Lattice:
    """A lattice from a preset name, a unit-cell CIF path, or a Lattice (resized to ``supercell``).

    Args:
        defects: the defects each host may hold (a mapping or :func:`parse_defects` text such as
            ``"B->V,B->C"``); None keeps the preset's defaults, the Lattice's own kinds, or for
            a CIF a vacancy on every host.
    """
    wanted = parse_defects(defects) if isinstance(defects, str) else defects
    if isinstance(spec, Lattice):
        lat = spec if spec.supercell == parse_supercell(supercell) else spec.with_supercell(supercell)
        if wanted is not None:
            lat = Lattice(lat.cell, lat.basis, lat.basis_species, lat.supercell, wanted, lat.name,
                          lat.symprec)
        return lat
    text = str(spec)
    if preset_name(text) is not None:
        return Lattice.preset(text, supercell, wanted)
    path = Path(text)
    if path.suffix.lower() == ".cif":
        if not path.exists():
            raise ValueError(f"unit-cell CIF {path} does not exist")
        return Lattice.from_cif(path, supercell, wanted)
    raise ValueError(f"a lattice is a preset ({', '.join(PRESETS)}) or a unit-cell .cif file, "
                     f"got {text!r}")
