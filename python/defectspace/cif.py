"""Reading one crystal structure from CIF bytes, strictly: one data block, no parser warnings, no
partial occupancies. The lowest layer of the core (it imports nothing of defectspace), so that both the
lattice (unit-cell CIFs) and the structure mapper (defect structures) read CIFs the same way."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import ase


def read_cif_bytes(data: bytes, name: str) -> ase.Atoms:
    """The one structure of a CIF's contents; ``name`` (a file name) is used in error messages.

    Raises:
        ValueError: malformed CIF (including any ``UserWarning`` of ase's parser), no or several
            structures, or partial occupancies.
    """
    import ase
    from ase.io.cif import parse_cif

    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark (CRLF line ends ase reads)
        data = data[3:]
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _check_starts_with_data_block(data)
            blocks = [b for b in parse_cif(io.BytesIO(data)) if b.has_structure()]
            _raise_on_parser_warnings(caught)
            if len(blocks) != 1:
                raise ValueError(f"expected one structure, found {len(blocks)}")
            block = blocks[0]
            _refuse_partial_occupancy(block)
            _check_cell_parameters(block)
            if _is_p1(block):
                atoms = block.get_unsymmetrized_structure()
            else:
                atoms = block.get_atoms(fractional_occupancies=False)
            _raise_on_parser_warnings(caught)
            _check_cell(atoms)
    except Exception as exc:  # ase raises many exception types for malformed files
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__} {exc}".strip()
        raise ValueError(f"cannot read CIF {name}: {detail}") from exc
    finally:
        # warnings that say nothing about the file (e.g. deprecations inside ase) go on as usual
        for w in caught:
            if not issubclass(w.category, UserWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if not isinstance(atoms, ase.Atoms):
        raise ValueError(f"cannot read CIF {name}: no structure")
    atoms.pbc = (True, True, False)
    return atoms


def _check_cell_parameters(block: Any) -> None:
    """Raises ValueError for cell lengths that are not positive numbers or angles not strictly
    between 0 and 180 degrees, as written (ase folds 200 degrees to 160 and asserts on NaN)."""
    cellpar = block.get_cellpar()
    if cellpar is None:
        return  # ase reports a missing cell its own way
    names = ("_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_alpha",
             "_cell_angle_beta", "_cell_angle_gamma")
    for k, (tag, value) in enumerate(zip(names, cellpar, strict=True)):
        v = _cif_number(value)
        ok = v > 0 if k < 3 else 0 < v < 180
        if not (np.isfinite(v) and ok):
            want = "a positive length in A" if k < 3 else "an angle strictly between 0 and 180 degrees"
            raise ValueError(f"{tag} is {value!r}; expected {want}")


def _check_cell(atoms: ase.Atoms) -> None:
    """Raises ValueError for a cell that spans no volume (a zero length, an angle of 0 or 180
    degrees, three vectors in a plane) or numbers that are not finite: every later step (fractional
    coordinates, the layer check, the site mapping) inverts the cell."""
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not np.isfinite(cell).all() or not np.isfinite(atoms.positions).all():
        raise ValueError("the cell or an atom position is not a finite number")
    lengths = np.linalg.norm(cell, axis=1)
    volume = abs(float(np.linalg.det(cell)))
    if not (lengths > 1e-6).all() or volume <= 1e-6 * float(np.prod(lengths)):
        a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
        raise ValueError(f"the cell spans no volume (lengths {a:.6g}, {b:.6g}, {c:.6g} A, angles "
                         f"{alpha:.6g}, {beta:.6g}, {gamma:.6g} degrees): its three vectors lie in one "
                         "plane")


def _refuse_partial_occupancy(block: Any) -> None:
    """Raises ValueError naming the sites (label, element, occupancy) of a CIF block whose atom
    sites are not all fully occupied: a mixed Mo 0.5 / W 0.5 site or S at 0.9 is no placement,
    and ase would keep one of the atoms silently."""
    occupancy = block.get("_atom_site_occupancy")
    if occupancy is None:
        return
    values = [occupancy] if isinstance(occupancy, (str, int, float)) else list(occupancy)
    occ = np.array([_cif_number(v) for v in values], dtype=np.float64)
    partial = np.flatnonzero(~(np.abs(occ - 1.0) <= 1e-6))
    if not len(partial):
        return

    def column(*keys: str) -> list[str]:
        for key in keys:
            v = block.get(key)
            if v is not None:
                return [str(x) for x in ([v] if isinstance(v, (str, int, float)) else v)]
        return []

    labels = column("_atom_site_label")
    symbols = column("_atom_site_type_symbol")
    sites = []
    for i in partial[:5].tolist():
        label = labels[i] if i < len(labels) else f"#{i + 1}"
        symbol = f" ({symbols[i]})" if i < len(symbols) and symbols[i] != label else ""
        sites.append(f"{values[i]} at atom site {label}{symbol}")
    more = f" and {len(partial) - 5} more sites" if len(partial) > 5 else ""
    raise ValueError(f"partial occupancy {', '.join(sites)}{more}: a lattice or a "
                     f"placement needs every site fully occupied by one element (a mixed or "
                     f"partly vacant site is a set of placements, not one)")


def _cif_number(value: object) -> float:
    """An occupancy such as ``0.5`` or ``0.50(2)`` (the uncertainty dropped); ``.`` and ``?``
    (not given) are the default 1; NaN if it is no number."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text in (".", "?"):
        return 1.0
    cut = text.find("(")
    try:
        return float(text[:cut] if cut >= 0 else text)
    except ValueError:
        return float("nan")


def _check_starts_with_data_block(data: bytes) -> None:
    """Raises ValueError unless the first line that is no comment opens a CIF ``data_`` block."""
    for number, line in enumerate(data.decode("latin1").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.lower().startswith("data_"):
            raise ValueError(f"line {number} ({text[:40]!r}) should open a data_ block; not a CIF")
        return
    raise ValueError("no data_ block; the file is empty")


def _raise_on_parser_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Raises ValueError with the messages of ase's parser warnings (``UserWarning``).

    ase's CIF reader warns, and goes on guessing, on badly formed numbers, loops with a wrong
    number of tokens, duplicated tags or CIF 2.0 syntax: a structure read from such a file cannot
    be trusted, so it is refused. Other warning categories are not about the file.
    """
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if messages:
        raise ValueError("; ".join(messages))


def _is_p1(block: Any) -> bool:
    """Whether a CIF block's only symmetry operation is the identity (space group P1)."""
    get = block.get
    ops = None
    for key in ("_space_group_symop_operation_xyz", "_space_group_symop.operation_xyz",
                "_symmetry_equiv_pos_as_xyz"):
        ops = get(key)
        if ops is not None:
            break
    if ops is not None:
        ops_list = [ops] if isinstance(ops, str) else list(ops)
        return all(str(o).replace(" ", "").lower() in ("x,y,z", "+x,+y,+z") for o in ops_list)
    number = None
    for key in ("_space_group.it_number", "_space_group_it_number", "_symmetry_int_tables_number"):
        number = get(key)
        if number is not None:
            break
    if number is not None:
        return str(number).strip() == "1"
    name = None
    for key in ("_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m"):
        name = get(key)
        if name is not None:
            break
    # a CIF with no symmetry at all is read as P1 by ase too
    return name is None or str(name).replace(" ", "").upper() == "P1"
