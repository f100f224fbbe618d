"""Labels for defect configurations from physics engines (SevenNet-0, CHGNet, GFN1-xTB).

This module computes per-structure labels and appends them, row by row, to a CSV file:

* ``sevenn`` / ``chgnet``: single-point energy of the unrelaxed structure and from it the
  formation energy (total and per defect) with 2DMD's formula; chemical potentials and the
  pristine energy are computed with the same engine (see :func:`engine_references`).
* ``xtb``: GFN1-xTB (tblite) Gamma-point HOMO-LUMO gap of the unrelaxed structure, 2D periodic
  (``pbc = (True, True, False)``).

Runs are resumable: rows already present in the output are skipped, a half-written last line
(left by a kill) is dropped, and a failing calculation is recorded with ``status=failed`` and its
reason instead of stopping the run. Every row is flushed and fsync'ed as soon as it is computed.

Structures come from :func:`structures_for_ids` (the unrelaxed CIFs of 2DMD, extracted lazily from
the tar into a cache directory) or from a folder of CIF files.

The command line is ``defectspace label INPUT -o OUTPUT --engine sevenn`` (:mod:`defectspace.cli.engines`).
"""

from __future__ import annotations

import abc
import csv
import ctypes.util
import dataclasses
import datetime as _dt
import functools
import importlib.metadata
import io
import json
import math
import multiprocessing as mp
import os
import re
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

from defectspace.datasets import UNRELAXED, find_2dmd
from defectspace.io import write_text_atomic

__all__ = [
    "DMD_CHEMICAL_POTENTIALS",
    "DMD_E_PRISTINE",
    "ENERGY_COLUMNS",
    "GAP_COLUMNS",
    "CHGNetEngine",
    "Defect",
    "Engine",
    "References",
    "SevenNetEngine",
    "XTBEngine",
    "defects_from_atoms",
    "engine_references",
    "find_openblas",
    "format_defects",
    "formation_energy",
    "label_structures",
    "make_engine",
    "parse_defects",
    "pristine_mos2",
    "read_label_csv",
    "structures_for_ids",
]

# ---------------------------------------------------------------------------------------------
# 2DMD conventions (see shared/data/2dmd/README.md)
# ---------------------------------------------------------------------------------------------

#: VASP chemical potentials used by 2DMD (eV per atom).
DMD_CHEMICAL_POTENTIALS: dict[str, float] = {
    "Mo": -10.9332,
    "S": -4.127,
    "W": -13.0106,
    "Se": -3.489,
}
#: VASP energy of the pristine 8x8 MoS2 supercell used by 2DMD (eV).
DMD_E_PRISTINE: float = -1398.1131

#: In-plane lattice constant of one MoS2 unit cell in 2DMD's supercells (Angstrom).
DMD_A: float = 3.1903157
#: Cell height (with vacuum) of 2DMD's supercells (Angstrom).
DMD_C: float = 14.879004
#: Fractional z of Mo, bottom S and top S in 2DMD's supercells.
DMD_Z: tuple[float, float, float] = (0.25, 0.144826, 0.355174)
#: Supercell size of 2DMD's MoS2 configurations.
DMD_N: int = 8

_HOST = ("Mo", "S", "S")
_DEFECT_RE = re.compile(r"^(vac|sub):(\d+):([A-Z][a-z]?)->([A-Z][a-z]?|V)$")


@dataclasses.dataclass(frozen=True)
class Defect:
    """One point defect in 2DMD notation ``kind:site:from->to``.

    ``kind`` is ``"vac"`` (``to == "V"``) or ``"sub"``; ``site`` is the 2DMD site index
    ``3 * (8 * i + j) + L``; ``host`` and ``to`` are element symbols.
    """

    kind: str
    site: int
    host: str
    to: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.site}:{self.host}->{self.to}"


def parse_defects(text: str) -> list[Defect]:
    """Parse a 2DMD defect string such as ``"vac:17:S->V;sub:6:Mo->W"``.

    Raises ``ValueError`` naming the bad item when an item does not have the form
    ``vac|sub:SITE:FROM->TO`` or when kind and ``TO`` disagree (``vac`` needs ``TO == "V"``).
    """
    out: list[Defect] = []
    for item in (s.strip() for s in text.split(";")):
        if not item:
            continue
        m = _DEFECT_RE.match(item)
        if m is None:
            raise ValueError(f"defect item {item!r} is not of the form 'vac|sub:SITE:FROM->TO'")
        kind, site, host, to = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if (kind == "vac") != (to == "V"):
            raise ValueError(f"defect item {item!r}: 'vac' needs '->V' and 'sub' an element")
        out.append(Defect(kind, site, host, to))
    return out


def format_defects(defects: Iterable[Defect]) -> str:
    """Format defects as a 2DMD string, sorted by site."""
    return ";".join(str(d) for d in sorted(defects, key=lambda d: d.site))


def formation_energy(
    e_defective: float,
    e_pristine: float,
    defects: Sequence[Defect],
    mu: Mapping[str, float],
) -> float:
    """Total formation energy with 2DMD's formula (eV).

    ``E_f = E_defective - E_pristine + sum_removed mu(host) - sum_added mu(dopant)``: a vacancy
    removes its host atom, a substitution removes the host and adds the dopant. 2DMD's
    ``formation_energy_per_site`` is this value divided by ``len(defects)``.
    Raises ``ValueError`` when a chemical potential is missing.
    """
    total = e_defective - e_pristine
    for d in defects:
        if d.host not in mu:
            raise ValueError(f"no chemical potential for {d.host!r} (have {sorted(mu)})")
        total += mu[d.host]
        if d.kind == "sub":
            if d.to not in mu:
                raise ValueError(f"no chemical potential for {d.to!r} (have {sorted(mu)})")
            total -= mu[d.to]
    return total


def _site_fractions(n: int) -> np.ndarray:
    """Fractional positions, shape (3 n^2, 3), of 2DMD's n x n MoS2 sites in site order."""
    if n < 1:
        raise ValueError(f"supercell size must be >= 1, got {n}")
    frac = np.empty((3 * n * n, 3))
    for i in range(n):
        for j in range(n):
            k = 3 * (n * i + j)
            frac[k] = ((1 / 3 + i) / n, (2 / 3 + j) / n, DMD_Z[0])
            frac[k + 1] = ((2 / 3 + i) / n, (1 / 3 + j) / n, DMD_Z[1])
            frac[k + 2] = ((2 / 3 + i) / n, (1 / 3 + j) / n, DMD_Z[2])
    return frac


def pristine_mos2(n: int = DMD_N, a: float = DMD_A, c: float = DMD_C) -> Atoms:
    """Pristine n x n MoS2 supercell in 2DMD's geometry and site order.

    Atom ``k`` is 2DMD site ``k = 3 * (n * i + j) + L`` (``L = 0`` Mo, 1 bottom S, 2 top S) at
    fractional position ``((1/3 + i)/n, (2/3 + j)/n, 0.25)`` for Mo and
    ``((2/3 + i)/n, (1/3 + j)/n, z)`` for S; ``pbc = (True, True, False)``.
    """
    symbols = [_HOST[k % 3] for k in range(3 * n * n)]
    frac = _site_fractions(n)
    big = a * n
    cell = [[big, 0.0, 0.0], [-big / 2, big * math.sqrt(3) / 2, 0.0], [0.0, 0.0, c]]
    atoms = Atoms(symbols=symbols, scaled_positions=frac, cell=cell, pbc=(True, True, False))
    return atoms


def defects_from_atoms(atoms: Atoms, n: int = DMD_N, tol: float = 0.5) -> list[Defect]:
    """Map a structure on 2DMD's n x n MoS2 site order and return its defects.

    The sites of :func:`pristine_mos2` are placed in ``atoms.cell`` (in-plane fractional
    coordinates; the metal plane at the middle of the structure's z range, the S layers at 2DMD's
    distance from it), each atom is assigned to the nearest site (periodic in-plane); empty sites
    become vacancies and atoms of another element substitutions. Raises ``ValueError`` when an
    atom is farther than ``tol`` Angstrom from every site or two atoms claim the same site.
    """
    if len(atoms) == 0:
        raise ValueError("empty structure")
    cell = np.asarray(atoms.cell)
    ref_frac = _site_fractions(n)
    ref_dz = (ref_frac[:, 2] - DMD_Z[0]) * DMD_C
    z = atoms.positions[:, 2]
    z0 = 0.5 * (z.min() + z.max())
    frac = atoms.cell.scaled_positions(atoms.positions)
    dxy = frac[:, None, :2] - ref_frac[None, :, :2]
    dxy -= np.round(dxy)
    d_inplane = dxy @ cell[:2, :2]
    d_z = (z - z0)[:, None] - ref_dz[None, :]
    dist = np.sqrt((d_inplane**2).sum(axis=-1) + d_z**2)
    nearest = dist.argmin(axis=1)
    best = dist[np.arange(len(atoms)), nearest]
    if best.max() > tol:
        k = int(best.argmax())
        raise ValueError(
            f"atom {k} ({atoms[k].symbol}) is {best[k]:.3f} A from the nearest site (tol {tol} A)"
        )
    if len(set(nearest.tolist())) != len(nearest):
        raise ValueError("two atoms map onto the same 2DMD site; not a 2DMD-like structure")
    occupied = {int(site): atoms[k].symbol for k, site in enumerate(nearest)}
    defects: list[Defect] = []
    for site in range(len(ref_frac)):
        host = _HOST[site % 3]
        sym = occupied.get(site)
        if sym is None:
            defects.append(Defect("vac", site, host, "V"))
        elif sym != host:
            defects.append(Defect("sub", site, host, sym))
    return defects


# ---------------------------------------------------------------------------------------------
# Structure source
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Cache directory: ``$DEFECTSPACE_CACHE`` or ``$XDG_CACHE_HOME/defectspace`` (``~/.cache``)."""
    env = os.environ.get("DEFECTSPACE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "defectspace"


def _extract_tar_once(tar_path: Path) -> Path:
    """Extract ``tar_path`` into the cache (once; atomic rename) and return the directory."""
    dest = cache_dir() / tar_path.name.split(".")[0]
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    with tarfile.open(tar_path) as tf:
        tf.extractall(tmp, filter="data")
    (tmp / ".complete").write_text(str(tar_path) + "\n")
    try:
        tmp.rename(dest)
    except OSError:  # another process won the race, or a stale incomplete dest exists
        if not (dest / ".complete").is_file():
            raise
    return dest


def id_from_cif_name(name: str) -> str:
    """2DMD id from a CIF file name.

    ``poscar_V5-<id>_unrelaxed.cif`` -> ``<id>`` (low density), ``<id>_unrelaxed.cif`` -> ``<id>``
    (high density); any other ``X.cif`` -> ``X``.
    """
    stem = name[:-4] if name.lower().endswith(".cif") else name
    for suffix in ("_unrelaxed", "_relaxed"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem.startswith("poscar_") and "-" in stem:
        stem = stem.split("-", 1)[1]
    return stem


@functools.lru_cache(maxsize=8)
def _cif_index(folder: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(".cif"):
                key = id_from_cif_name(f)
                if key in index:
                    raise ValueError(f"id {key!r} occurs twice under {folder}")
                index[key] = os.path.join(root, f)
    return index


def structures_for_ids(ids: Iterable[str], source: str | Path | None = None) -> dict[str, Atoms]:
    """Structures of the given 2DMD ids, keyed by id, in the order of ``ids``.

    ``source`` is a folder of CIF files (ids taken from the file names, see
    :func:`id_from_cif_name`) or ``None`` for the unrelaxed CIFs of 2DMD, extracted once from
    ``mos2_unrelaxed.tar.xz`` into :func:`cache_dir`. Each structure gets
    ``pbc = (True, True, False)``. Raises ``KeyError`` naming the ids that are not found.
    """
    folder = (
        Path(source) if source is not None else _extract_tar_once(find_2dmd(UNRELAXED))
    )
    if not folder.is_dir():
        raise ValueError(f"structure source {folder} is not a directory")
    index = _cif_index(str(folder.resolve()))
    ids = list(ids)
    missing = [i for i in ids if i not in index]
    if missing:
        raise KeyError(f"{len(missing)} ids have no CIF under {folder}: {missing[:5]}")
    out: dict[str, Atoms] = {}
    for i in ids:
        atoms = ase_read(index[i], format="cif")
        if not isinstance(atoms, Atoms):
            raise ValueError(f"{index[i]} holds more than one structure")
        atoms.pbc = (True, True, False)
        out[i] = atoms
    return out


def _structures_or_built(ids: Sequence[str], source: str | Path | None, rows: Any) -> dict[str, Atoms]:
    """2DMD's unrelaxed CIFs (or ``source``'s) where an id has one; otherwise, for a CSV row with
    defects, the unrelaxed structure built from its placement on the 8x8 MoS2 lattice."""
    if source is not None:
        return structures_for_ids(ids, source)
    try:
        index = _cif_index(str(_extract_tar_once(find_2dmd(UNRELAXED)).resolve()))
    except (FileNotFoundError, ValueError):
        index = {}
    known = [i for i in ids if i in index]
    out = structures_for_ids(known) if known else {}
    missing = [i for i in ids if i not in index]
    if missing:
        from defectspace.lattice import Lattice
        from defectspace.placement import parse_2dmd
        from defectspace.structure import placement_to_atoms

        lattice = Lattice.preset("MoS2", (DMD_N, DMD_N))
        for i in missing:
            defects = rows.defects.get(i)
            if defects is None:
                raise KeyError(f"id {i} has no CIF and no defects to build it from")
            atoms = placement_to_atoms(parse_2dmd([format_defects(defects)], lattice)[0], lattice)
            atoms.pbc = (True, True, False)
            out[i] = atoms
    return {i: out[i] for i in ids}


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------

#: Columns of an energy-engine output file.
ENERGY_COLUMNS: tuple[str, ...] = (
    "id",
    "status",
    "n_atoms",
    "energy",
    "formation_energy",
    "formation_energy_per_site",
    "seconds",
    "error",
)
#: Columns of a gap-engine (xTB) output file.
GAP_COLUMNS: tuple[str, ...] = (
    "id",
    "status",
    "n_atoms",
    "energy",
    "homo",
    "lumo",
    "homo_lumo_gap",
    "seconds",
    "error",
)


@dataclasses.dataclass(frozen=True)
class References:
    """Reference energies of one engine for 2DMD's formation-energy formula.

    ``mu`` maps element -> chemical potential (eV/atom); ``e_pristine`` is the energy (eV) of the
    pristine 8x8 MoS2 in 2DMD's unrelaxed geometry; ``details`` records how they were obtained
    (lattice constants in Angstrom, per-formula-unit energies in eV).
    """

    mu: dict[str, float]
    e_pristine: float
    details: dict[str, Any]


class Engine(Protocol):
    """What :func:`label_structures` needs from an engine.

    ``kind`` is ``"energy"`` (``compute`` returns ``{"energy": eV}``; formation energies are added
    from :meth:`references`) or ``"gap"`` (``compute`` returns ``energy``, ``homo``, ``lumo``,
    ``homo_lumo_gap`` in eV). ``setup`` loads models (called once per worker process, after
    ``torch.set_num_threads(1)``); instances must be picklable before ``setup``.
    """

    name: str
    kind: str

    def setup(self) -> None: ...

    def version(self) -> str: ...

    def settings(self) -> dict[str, Any]: ...

    def compute(self, atoms: Atoms) -> dict[str, float]: ...

    def references(self) -> References | None: ...


def _bcc(symbol: str, a: float) -> Atoms:
    return Atoms(symbol * 2, scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=[a, a, a], pbc=True)


def _mx2(metal: str, chalcogen: str, a: float, h: float, c: float = DMD_C) -> Atoms:
    """Monolayer 2H-MX2 unit cell with in-plane constant ``a`` and chalcogen height ``h``."""
    cell = [[a, 0.0, 0.0], [-a / 2, a * math.sqrt(3) / 2, 0.0], [0.0, 0.0, c]]
    zc = 0.25 * c
    frac = [(1 / 3, 2 / 3, zc / c), (2 / 3, 1 / 3, (zc - h) / c), (2 / 3, 1 / 3, (zc + h) / c)]
    return Atoms([metal, chalcogen, chalcogen], scaled_positions=frac, cell=cell, pbc=(True, True, False))


#: Experimental starting points: bcc lattice constants and MX2 (a, chalcogen height), Angstrom.
_EXP_BCC = {"Mo": 3.147, "W": 3.165}
_EXP_MX2 = {"S": (3.160, 1.586), "Se": (3.288, 1.669)}


def engine_references(energy: Callable[[Atoms], float]) -> References:
    """Chemical potentials and pristine energy with one engine's ``energy(atoms)`` (eV).

    * mu(Mo), mu(W): energy per atom of bcc metal, lattice constant relaxed with the engine
      (bounded 1D minimisation within +-8 % of experiment).
    * mu(S) = (E(MoS2 per f.u.) - mu(Mo)) / 2 and mu(Se) = (E(MoSe2 per f.u.) - mu(Mo)) / 2, with
      the monolayer 2H unit cells relaxed with the engine in ``a`` and the chalcogen height
      (Nelder-Mead from the experimental values).
    * E_pristine: the pristine 8x8 MoS2 in 2DMD's unrelaxed geometry (:func:`pristine_mos2`).
    """
    from scipy.optimize import minimize, minimize_scalar

    mu: dict[str, float] = {}
    details: dict[str, Any] = {}
    for metal, a0 in _EXP_BCC.items():
        res = minimize_scalar(
            lambda a, m=metal: energy(_bcc(m, float(a))) / 2,
            bounds=(0.92 * a0, 1.08 * a0),
            method="bounded",
            options={"xatol": 1e-4},
        )
        mu[metal] = float(res.fun)
        details[f"a_bcc_{metal}"] = float(res.x)
    for chalcogen, (a0, h0) in _EXP_MX2.items():
        res = minimize(
            lambda p, x=chalcogen: energy(_mx2("Mo", x, float(p[0]), float(p[1]))),
            x0=np.array([a0, h0]),
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400},
        )
        e_fu = float(res.fun)
        mu[chalcogen] = (e_fu - mu["Mo"]) / 2
        details[f"a_Mo{chalcogen}2"] = float(res.x[0])
        details[f"h_{chalcogen}"] = float(res.x[1])
        details[f"E_Mo{chalcogen}2_per_fu"] = e_fu
    e_pristine = float(energy(pristine_mos2()))
    details["E_pristine_per_fu"] = e_pristine / DMD_N**2
    details["method"] = (
        "bcc metals and monolayer MoX2 relaxed with the engine; mu_X = (E(MoX2)/f.u. - mu_Mo)/2; "
        "E_pristine from 2DMD's unrelaxed 8x8 geometry"
    )
    return References(mu=mu, e_pristine=e_pristine, details=details)


class _CalculatorEngine(abc.ABC):
    """Shared code of the ASE-calculator energy engines (model loaded lazily by ``setup``)."""

    name = "?"
    kind = "energy"

    def __init__(self) -> None:
        self._calc: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_calc"] = None  # never pickle a loaded model
        return state

    @abc.abstractmethod
    def _make_calculator(self) -> Any:
        """Load the model and return an ASE calculator."""

    def setup(self) -> None:
        if self._calc is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._calc = self._make_calculator()

    def energy(self, atoms: Atoms) -> float:
        """Single-point potential energy (eV) of ``atoms``."""
        self.setup()
        original: Any = atoms  # ASE's Atoms methods are untyped
        work: Any = original.copy()
        work.calc = self._calc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(work.get_potential_energy())

    def compute(self, atoms: Atoms) -> dict[str, float]:
        return {"energy": self.energy(atoms)}

    def references(self) -> References:
        return engine_references(self.energy)


class SevenNetEngine(_CalculatorEngine):
    """SevenNet-0 (``sevenn`` package, weights from its wheel), CPU, single point."""

    name = "sevenn"

    def __init__(self, model: str = "7net-0") -> None:
        super().__init__()
        self.model = model

    def _make_calculator(self) -> Any:
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(self.model, device="cpu")

    def version(self) -> str:
        return f"sevenn {importlib.metadata.version('sevenn')}"

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "device": "cpu", "calculation": "single point, unrelaxed"}


class CHGNetEngine(_CalculatorEngine):
    """CHGNet (``chgnet`` package, pretrained weights from its wheel), CPU, single point."""

    name = "chgnet"

    def __init__(self, model: str = "0.3.0") -> None:
        super().__init__()
        self.model = model

    def _make_calculator(self) -> Any:
        from chgnet.model.dynamics import CHGNetCalculator
        from chgnet.model.model import CHGNet

        return CHGNetCalculator(CHGNet.load(model_name=self.model, verbose=False), use_device="cpu")

    def version(self) -> str:
        return f"chgnet {importlib.metadata.version('chgnet')}"

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "device": "cpu", "calculation": "single point, unrelaxed"}


def find_openblas() -> str | None:
    """Path of an OpenBLAS shared library for ``LD_PRELOAD``, or ``None``.

    ``$DEFECTSPACE_OPENBLAS`` wins (``off``/``0``/empty disables); otherwise Debian's
    ``libopenblas0-serial``/``-pthread`` locations, then ``ctypes.util.find_library``.
    """
    env = os.environ.get("DEFECTSPACE_OPENBLAS")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "no", "none"):
            return None
        if not Path(env).is_file():
            raise ValueError(f"DEFECTSPACE_OPENBLAS={env!r} is not a file")
        return env
    for cand in (
        "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
    ):
        if Path(cand).is_file():
            return cand
    found = ctypes.util.find_library("openblas")
    return found


def loaded_blas() -> str:
    """Which BLAS the current process has mapped: the OpenBLAS path, or ``"reference"``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for line in maps.splitlines():
        if "libopenblas" in line and "scipy_openblas" not in line:
            return line.split()[-1]
    return "reference"


class XTBEngine:
    """GFN1-xTB (``tblite``) single point, Gamma point, 2D periodic; HOMO-LUMO gap.

    HOMO and LUMO are the orbital energies of index ``ceil(N_el/2) - 1`` and ``ceil(N_el/2)``
    (spin-restricted, aufbau order of the sorted eigenvalues), with ``N_el`` the electron count
    from the orbital occupations. A failed SCF raises (and the row is recorded as failed).
    """

    name = "xtb"
    kind = "gap"

    def __init__(
        self,
        method: str = "GFN1-xTB",
        periodic: tuple[bool, bool, bool] = (True, True, False),
        accuracy: float = 1.0,
        max_iter: int = 250,
        temperature: float = 300.0,
    ) -> None:
        self.method = method
        self.periodic = periodic
        self.accuracy = accuracy
        self.max_iter = max_iter
        self.temperature = temperature

    def setup(self) -> None:
        import tblite.interface  # noqa: F401  (fail early if tblite is missing)

    def version(self) -> str:
        return f"tblite {importlib.metadata.version('tblite')}"

    def settings(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "periodic": list(self.periodic),
            "k_points": "Gamma",
            "accuracy": self.accuracy,
            "max_iter": self.max_iter,
            "electronic_temperature_K": self.temperature,
            "geometry": "unrelaxed",
        }

    def compute(self, atoms: Atoms) -> dict[str, float]:
        from ase.units import Bohr, Hartree
        from tblite.interface import Calculator

        calc = Calculator(
            self.method,
            atoms.numbers,
            atoms.positions / Bohr,
            lattice=np.asarray(atoms.cell) / Bohr,
            periodic=np.array(self.periodic),
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", self.accuracy)
        calc.set("max-iter", self.max_iter)
        calc.set("temperature", self.temperature * 3.166808578545117e-06)  # K -> Hartree
        res = calc.singlepoint()
        eps = np.sort(np.asarray(res.get("orbital-energies")).ravel())
        n_el = round(float(np.sum(res.get("orbital-occupations"))))
        n_occ = (n_el + 1) // 2
        if not 0 < n_occ < len(eps):
            raise ValueError(f"cannot find HOMO/LUMO: {n_el} electrons, {len(eps)} orbitals")
        homo, lumo = float(eps[n_occ - 1]) * Hartree, float(eps[n_occ]) * Hartree
        return {
            "energy": float(res.get("energy")) * Hartree,
            "homo": homo,
            "lumo": lumo,
            "homo_lumo_gap": lumo - homo,
        }

    def references(self) -> None:
        return None


def make_engine(name: str) -> Engine:
    """Engine by name: ``sevenn``, ``chgnet`` or ``xtb``."""
    engines: dict[str, Callable[[], Engine]] = {
        "sevenn": SevenNetEngine,
        "chgnet": CHGNetEngine,
        "xtb": XTBEngine,
    }
    if name not in engines:
        raise ValueError(f"unknown engine {name!r}; expected one of {sorted(engines)}")
    return engines[name]()


# ---------------------------------------------------------------------------------------------
# Resumable output
# ---------------------------------------------------------------------------------------------


def _columns_for(engine: Engine) -> tuple[str, ...]:
    if engine.kind == "energy":
        return ENERGY_COLUMNS
    if engine.kind == "gap":
        return GAP_COLUMNS
    raise ValueError(f"engine kind must be 'energy' or 'gap', got {engine.kind!r}")


def _repair_output(path: Path, columns: Sequence[str]) -> set[str]:
    """Make ``path`` a clean label file and return the ids it already holds.

    Creates the file with a header when absent. Drops a half-written last line (no trailing
    newline), malformed rows and repeated ids (first kept); rewrites atomically if needed.
    Raises ``ValueError`` when the header differs from ``columns``.
    """
    header = ",".join(columns) + "\n"
    if not path.exists() or path.stat().st_size == 0:
        write_text_atomic(path, header)
        return set()
    raw = path.read_text(encoding="utf-8")
    changed = False
    if not raw.endswith("\n"):
        raw = raw[: raw.rfind("\n") + 1]  # drop the half-written last line
        changed = True
    lines = raw.splitlines(keepends=True)
    if not lines:
        lines, changed = [header], True
    if lines[0] != header:
        raise ValueError(
            f"{path} has columns {lines[0].strip()!r}, expected {header.strip()!r}; "
            "use another output file for this engine"
        )
    kept = [header]
    seen: set[str] = set()
    for line in lines[1:]:
        try:
            rows = list(csv.reader([line]))
        except csv.Error:
            changed = True
            continue
        if len(rows) != 1 or len(rows[0]) != len(columns) or rows[0][0] in seen:
            changed = True
            continue
        seen.add(rows[0][0])
        kept.append(line)
    if changed:
        write_text_atomic(path, "".join(kept))
    return seen


def read_label_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a label file as dicts (a half-written last line is ignored)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _format_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(round(v, 6))
    return str(v).replace("\n", " ").replace("\r", " ")


class _RowWriter:
    """Append-only CSV writer that flushes and fsyncs every row."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._fh = open(path, "a", encoding="utf-8", newline="")

    def write(self, row: Mapping[str, Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_format_value(row.get(c)) for c in self.columns])
        self._fh.write(buf.getvalue())  # one write per row
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def sidecar_path(output: str | Path) -> Path:
    """The JSON sidecar of a label file: same path with suffix ``.json``."""
    return Path(output).with_suffix(".json")


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------

_WORKER_ENGINE: Engine | None = None


def _one_thread() -> None:
    """Limit torch (if it is importable) to one thread in this process."""
    try:
        import torch
    except ImportError:  # xtb needs no torch
        return
    torch.set_num_threads(1)


def _die_with_parent() -> None:
    """Linux: end this worker when the labelling process dies, even by SIGKILL (no orphans that
    keep computing rows nobody writes)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _init_worker(engine: Engine) -> None:
    global _WORKER_ENGINE
    _die_with_parent()
    _one_thread()
    engine.setup()
    _WORKER_ENGINE = engine


def _compute_one(
    task: tuple[str, Atoms | str],
) -> tuple[str, int, dict[str, float] | None, float, str]:
    """Run the worker's engine on one structure; never raises (errors are returned).

    ``task`` is ``(id, atoms)``, or ``(id, message)`` for a structure that could not be loaded.
    """
    sid, atoms = task
    if isinstance(atoms, str):
        return sid, 0, None, 0.0, atoms
    if _WORKER_ENGINE is None:
        raise RuntimeError("worker not initialised")
    t0 = time.perf_counter()
    try:
        values = _WORKER_ENGINE.compute(atoms)
        for k, v in values.items():
            if not math.isfinite(v):
                raise ValueError(f"engine returned non-finite {k} = {v}")
        return sid, len(atoms), values, time.perf_counter() - t0, ""
    except Exception as exc:  # recorded per row, never fatal
        return sid, len(atoms), None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InputRows:
    """What to label: ids in order, their defects (``None`` if unknown) and structure source."""

    ids: list[str]
    defects: dict[str, list[Defect] | None]
    source: Path | None


def read_input(path: str | Path, structures: str | Path | None = None) -> InputRows:
    """Read INPUT: a CSV with columns ``id`` and ``defects`` (2DMD form), or a folder of CIFs.

    For a CSV the structures come from ``structures`` (a CIF folder) or, if ``None``, 2DMD's
    unrelaxed tar. For a folder, ids come from the file names and defects from mapping each
    structure onto 2DMD's site order (``None`` when that fails).
    """
    p = Path(path)
    if p.is_dir():
        index = _cif_index(str(p.resolve()))
        names = sorted(index)
        return InputRows(ids=names, defects=dict.fromkeys(names), source=p)
    if not p.is_file():
        raise ValueError(f"INPUT {p} is neither a CSV file nor a folder of CIF files")
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise ValueError(f"{p} needs an 'id' column, has {reader.fieldnames}")
        has_defects = "defects" in reader.fieldnames
        ids: list[str] = []
        defects: dict[str, list[Defect] | None] = {}
        for row in reader:
            sid = row["id"]
            if sid in defects:
                raise ValueError(f"id {sid!r} occurs twice in {p}")
            ids.append(sid)
            defects[sid] = parse_defects(row["defects"]) if has_defects else None
    return InputRows(ids=ids, defects=defects, source=Path(structures) if structures else None)


def _load_or_make_references(engine: Engine, sidecar: Path) -> References | None:
    if engine.kind != "energy":
        return None
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("engine") != engine.name:
            raise ValueError(f"{sidecar} belongs to engine {meta.get('engine')!r}, not {engine.name!r}")
        if "chemical_potentials" in meta and "E_pristine" in meta:
            return References(
                mu={k: float(v) for k, v in meta["chemical_potentials"].items()},
                e_pristine=float(meta["E_pristine"]),
                details=dict(meta.get("reference_details", {})),
            )
    refs = engine.references()
    if refs is None:
        raise ValueError(f"energy engine {engine.name!r} returned no references")
    return refs


def _write_sidecar(
    sidecar: Path, engine: Engine, refs: References | None, input_path: str, extra: dict[str, Any]
) -> None:
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta.update(
        {
            "engine": engine.name,
            "engine_version": engine.version(),
            "settings": engine.settings(),
            "input": Path(input_path).name,
            "date_updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "units": "eV; seconds are wall time of one single point with 1 thread",
        }
    )
    meta.setdefault("date", meta["date_updated"])
    meta.update(extra)
    if refs is not None:
        meta["chemical_potentials"] = refs.mu
        meta["E_pristine"] = refs.e_pristine
        meta["reference_details"] = refs.details
        meta["formula"] = (
            "E_f = E_def - E_pristine + sum_removed mu(host) - sum_added mu(dopant); "
            "formation_energy_per_site = E_f / n_defects"
        )
    write_text_atomic(sidecar, json.dumps(meta, indent=1, sort_keys=True) + "\n")


def _chunks(seq: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for k in range(0, len(seq), size):
        yield seq[k : k + size]


def label_structures(
    input_path: str | Path,
    output: str | Path,
    engine: str | Engine,
    workers: int | None = None,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    structures: str | Path | None = None,
    structure_loader: Callable[[Sequence[str], Path | None], Mapping[str, Atoms]] | None = None,
    progress: bool = True,
    use_openblas: bool = True,
) -> dict[str, int]:
    """Label the structures of ``input_path`` with ``engine`` and append rows to ``output``.

    ``engine`` is a name (``sevenn``, ``chgnet``, ``xtb``) or an :class:`Engine` instance.
    ``workers`` processes (default: number of cores) each run one thread; with one worker and an
    engine that needs no OpenBLAS preload the work runs in this process. ``limit`` caps the number
    of new rows computed in this call; ``ids`` restricts (and orders) the ids. Rows already in
    ``output`` are skipped. For ``xtb`` an OpenBLAS found by :func:`find_openblas` is put in the
    workers' ``LD_PRELOAD`` (``use_openblas=False`` or ``DEFECTSPACE_OPENBLAS=off`` disables).
    Torch in this process is set to one thread (references and in-process work use it).
    ``structure_loader(ids, source)`` replaces :func:`structures_for_ids` (e.g. atoms built from
    placements). Returns counts ``{"done_before", "computed", "ok", "failed"}``.
    """
    eng = make_engine(engine) if isinstance(engine, str) else engine
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    out = Path(output)
    columns = _columns_for(eng)
    rows = read_input(input_path, structures)
    wanted = list(rows.ids)
    if ids is not None:
        known = set(rows.defects)
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"{len(unknown)} ids are not in {input_path}: {unknown[:5]}")
        wanted = list(dict.fromkeys(ids))
    done = _repair_output(out, columns)
    todo = [i for i in wanted if i not in done]
    if limit is not None:
        todo = todo[:limit]
    counts = {"done_before": len(done & set(wanted)), "computed": 0, "ok": 0, "failed": 0}

    preload = find_openblas() if (use_openblas and eng.name == "xtb") else None
    in_process = workers == 1 and preload is None
    if in_process:
        _init_worker(eng)
    sidecar = sidecar_path(out)
    _one_thread()
    refs = _load_or_make_references(eng, sidecar)
    loader = structure_loader or (lambda chunk, src: _structures_or_built(chunk, src, rows))
    writer = _RowWriter(out, columns)
    pool: Any = None
    blas = ""
    finished = False
    try:
        if not todo:
            finished = True
            return counts
        if not in_process:
            # the spawned workers inherit this environment; restored once they have started
            saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
            try:
                if preload is not None:
                    prev = os.environ.get("LD_PRELOAD", "")
                    if preload not in prev.split(":"):
                        os.environ["LD_PRELOAD"] = ":".join(p for p in (preload, prev) if p)
                    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
                os.environ.setdefault("OMP_NUM_THREADS", "1")
                ctx = mp.get_context("spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=(eng,))
                if eng.name == "xtb":  # also waits until the workers are up
                    blas = pool.apply(loaded_blas)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        extra: dict[str, Any] = {
            "workers": workers,
            "structures": str(rows.source)
            if rows.source is not None
            else "2DMD unrelaxed CIFs (mos2_unrelaxed.tar.xz)",
        }
        if eng.name == "xtb":
            extra["blas"] = blas if pool is not None else loaded_blas()
        _write_sidecar(sidecar, eng, refs, str(input_path), extra)

        def tasks() -> Iterator[tuple[str, Atoms | str]]:
            for chunk in _chunks(todo, 64):
                loaded: dict[str, Atoms | str]
                try:
                    loaded = dict(loader(chunk, rows.source))
                except Exception:  # find the culprit(s); record them as failed rows
                    loaded = {}
                    for sid in chunk:
                        try:
                            loaded.update(loader([sid], rows.source))
                        except Exception as exc:
                            loaded[sid] = f"structure not loaded: {type(exc).__name__}: {exc}"
                for sid in chunk:
                    yield sid, loaded[sid]

        results: Iterable[tuple[str, int, dict[str, float] | None, float, str]]
        if pool is None:
            results = map(_compute_one, tasks())
        else:
            results = pool.imap_unordered(_compute_one, tasks(), chunksize=1)
        bar: Any = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"label[{eng.name}]", unit="struct", file=sys.stderr)
        for sid, n_atoms, values, seconds, error in results:
            row: dict[str, Any] = {"id": sid, "n_atoms": n_atoms, "seconds": round(seconds, 3)}
            if values is not None and refs is not None:
                defects = rows.defects.get(sid)
                if defects is None and rows.source is not None:
                    try:
                        defects = defects_from_atoms(loader([sid], rows.source)[sid])
                    except ValueError:
                        defects = None
                if defects:
                    try:
                        e_f = formation_energy(values["energy"], refs.e_pristine, defects, refs.mu)
                    except ValueError as exc:
                        values, error = None, f"ValueError: {exc}"
                    else:
                        values = {
                            **values,
                            "formation_energy": e_f,
                            "formation_energy_per_site": e_f / len(defects),
                        }
            if values is None:
                row.update(status="failed", error=error)
                counts["failed"] += 1
            else:
                row.update(status="ok", **values)
                counts["ok"] += 1
            writer.write(row)
            counts["computed"] += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        finished = True
    finally:
        writer.close()
        if pool is not None:
            if finished:
                pool.close()
            else:  # interrupted: do not wait for queued work
                pool.terminate()
            pool.join()
    return counts
