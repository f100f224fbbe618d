"""Defect placements: dense arrays, (site, species) lists and 2DMD strings.

A batch of placements is a ``(n, n_sites)`` uint8 array: 0 is the host atom, ``k`` is the defect
kind with code ``k`` of the lattice (:attr:`Lattice.kinds`). The 2DMD form lists defects as
``kind:site:from->to`` joined by ``;``, e.g. ``vac:17:S->V;sub:6:Mo->W``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from defectspace.lattice import VACANCY, Lattice

_INTEGER = re.compile(r"-?[0-9]+")


class PlacementError(ValueError):
    """A placement that does not fit its lattice; the message names the row and the value."""


@dataclass(frozen=True)
class Defect:
    """One defect of a placement."""

    site: int
    """Site index in the lattice's numbering."""
    host: str
    """Host element of the site."""
    species: str
    """Replacing element, or ``"V"`` for a vacancy."""

    def to_2dmd(self) -> str:
        """This defect in 2DMD form, e.g. ``vac:17:S->V``."""
        tag = "vac" if self.species == VACANCY else "sub"
        return f"{tag}:{self.site}:{self.host}->{self.species}"


def as_states(states: ArrayLike, lattice: Lattice, name: str = "states") -> NDArray[np.uint8]:
    """Validates a batch of dense placements and returns it as C-contiguous uint8 (n, n_sites).

    A single placement of shape (n_sites,) becomes a batch of one. Integer arrays of any width are
    accepted if every value is a valid code; floats, negative or too-large values are refused.
    """
    arr = np.asarray(states)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise PlacementError(f"{name}: expected shape (n, {lattice.n_sites}), got {arr.shape}")
    if arr.shape[1] != lattice.n_sites:
        raise PlacementError(
            f"{name}: expected {lattice.n_sites} sites per row for {lattice!r}, got {arr.shape[1]}"
        )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 and arr.dtype == np.float64:
            arr = arr.astype(np.uint8)
        else:
            raise PlacementError(f"{name}: expected an integer dtype, got {arr.dtype}")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > lattice.n_kinds):
            bad = np.argwhere((arr < 0) | (arr > lattice.n_kinds))[0]
            raise PlacementError(
                f"{name}: row {bad[0]}, site {bad[1]} has code {arr[bad[0], bad[1]]}; "
                f"codes are 0..{lattice.n_kinds}"
            )
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def as_integers(values: ArrayLike, name: str, low: int, high: int, dtype: DTypeLike) -> NDArray[Any]:
    """``values`` as a C-contiguous array of ``dtype`` after checking that every value is a whole
    number in ``[low, high]``: nothing is truncated (17.9 -> 17) or wrapped (256 -> 0 in uint8).

    Raises:
        ValueError: naming the first bad value (and its index).
    """
    arr = np.asarray(values)
    if arr.size and (arr.dtype == np.bool_ or arr.dtype.kind not in "iuf"):
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.size:
        if arr.dtype.kind == "f":
            fractional = ~np.isfinite(arr) | (arr != np.round(arr))
            if fractional.any():
                value, where = _first(arr, fractional)
                raise ValueError(f"{name}: {value!r}{where} is not an integer")
        outside = (arr < low) | (arr > high)
        if outside.any():
            value, where = _first(arr, outside)
            raise ValueError(f"{name}: {int(value)}{where} is out of range {low}..{high}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _first(arr: NDArray[Any], mask: NDArray[np.bool_]) -> tuple[Any, str]:
    """The first value where ``mask`` holds, and `` at index i`` (or ``(i, j)``; nothing for a scalar)."""
    position = tuple(int(v) for v in np.argwhere(mask)[0])
    value = arr[position].item()
    if not position:
        return value, ""
    return value, f" at index {position[0] if len(position) == 1 else position}"


def from_defects(rows: Iterable[Iterable[tuple[int, str]]], lattice: Lattice) -> NDArray[np.uint8]:
    """Dense placements from lists of (site, species) pairs (species ``"V"`` = vacancy)."""
    rows = list(rows)
    out = np.zeros((len(rows), lattice.n_sites), dtype=np.uint8)
    species = lattice.site_species
    for r, row in enumerate(rows):
        for site, sp in row:
            _set(out, r, int(site), species, str(sp), lattice)
    return out


def _set(out: NDArray[np.uint8], r: int, site: int, host_of: Sequence[str], sp: str,
         lattice: Lattice, expect_host: str | None = None) -> None:
    if not 0 <= site < lattice.n_sites:
        raise PlacementError(f"row {r}: site {site} out of range 0..{lattice.n_sites - 1}")
    host = host_of[site]
    if expect_host is not None and expect_host != host:
        raise PlacementError(f"row {r}: site {site} holds {host}, not {expect_host}")
    if out[r, site]:
        raise PlacementError(f"row {r}: site {site} is listed twice")
    try:
        code = lattice.kind(host, sp).code
    except ValueError:
        allowed = [k.species for k in lattice.kinds if k.host == host]
        raise PlacementError(
            f"row {r}: site {site} ({host}) cannot hold {sp!r}; allowed: {allowed}"
        ) from None
    out[r, site] = code


def parse_2dmd(strings: Sequence[str] | str, lattice: Lattice) -> NDArray[np.uint8]:
    """Dense placements from 2DMD defect strings (one per row; ``""`` is the pristine crystal)."""
    if isinstance(strings, str):
        strings = [strings]
    out = np.zeros((len(strings), lattice.n_sites), dtype=np.uint8)
    lookup = _item_lookup(lattice)
    flat: list[int] = []  # row * n_sites + site of each defect written in 2DMD's own form
    codes: list[int] = []
    n_sites = lattice.n_sites
    dense = out.reshape(-1)

    def flush() -> None:  # in pieces: Python int lists of a whole large file would cost ~100 B a defect
        if flat:
            dense[np.asarray(flat, dtype=np.int64)] = np.asarray(codes, dtype=np.uint8)
            flat.clear()
            codes.clear()

    for r, text in enumerate(strings):
        # fast path: every item exactly as format_2dmd writes it, each site once
        if isinstance(text, str) and text:
            items = [lookup.get(item) for item in text.split(";")]
            if None not in items:
                sites = [hit[0] for hit in items if hit is not None]
                if len(set(sites)) == len(sites):
                    flat.extend(r * n_sites + site for site in sites)
                    codes.extend(hit[1] for hit in items if hit is not None)
                    if len(flat) >= 1 << 16:
                        flush()
                    continue
        _parse_row(out, r, text, lattice)
    flush()
    return out


def _item_lookup(lattice: Lattice) -> dict[str, tuple[int, int]]:
    """``{"vac:17:S->V": (17, code), ...}``: every defect of the lattice in 2DMD form (cached)."""
    cached = getattr(lattice, "_item_lookup_cache", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    table = _item_table(lattice)
    lookup = {str(table[site, code]): (site, code)
              for site in range(lattice.n_sites) for code in range(1, lattice.n_kinds + 1)
              if table[site, code] is not None}
    lattice._item_lookup_cache = lookup  # type: ignore[attr-defined]
    return lookup


def _parse_row(out: NDArray[np.uint8], r: int, text: object, lattice: Lattice) -> None:
    """Row ``r`` of :func:`parse_2dmd` in any accepted spelling (spaces, any order), or the
    PlacementError that names what is wrong with it."""
    if not isinstance(text, str):
        raise PlacementError(f"row {r}: expected a string, got {type(text).__name__}")
    host_of = lattice.site_species
    text = text.strip()
    if not text:
        return
    for item in text.split(";"):
        parts = item.strip().split(":")
        if len(parts) != 3 or "->" not in parts[2]:
            raise PlacementError(
                f"row {r}: malformed defect {item!r}; expected kind:site:from->to, "
                f"e.g. vac:17:S->V"
            )
        tag, site_text, change = parts
        if tag not in ("vac", "sub"):
            raise PlacementError(f"row {r}: defect type {tag!r} in {item!r} is not vac or sub")
        site_text = site_text.strip()
        if not _INTEGER.fullmatch(site_text):  # ASCII digits only: int() refuses others
            raise PlacementError(f"row {r}: site {site_text!r} in {item!r} is not an integer")
        host, _, sp = change.partition("->")
        host, sp = host.strip(), sp.strip()
        if tag == "vac" and sp != VACANCY:
            raise PlacementError(f"row {r}: vacancy {item!r} must end in ->V")
        if tag == "sub" and sp == VACANCY:
            raise PlacementError(f"row {r}: substitution {item!r} cannot end in ->V")
        _set(out, r, int(site_text), host_of, sp, lattice, expect_host=host)


def to_defects(states: ArrayLike, lattice: Lattice) -> list[list[Defect]]:
    """The defects of each row, in site order."""
    arr = as_states(states, lattice)
    rows: list[list[Defect]] = [[] for _ in range(arr.shape[0])]
    r_idx, s_idx = np.nonzero(arr)
    host_of = lattice.site_species
    for r, s in zip(r_idx.tolist(), s_idx.tolist(), strict=True):
        k = lattice.kinds[int(arr[r, s]) - 1]
        rows[r].append(Defect(s, host_of[s], k.species))
    return rows


def format_2dmd(states: ArrayLike, lattice: Lattice) -> list[str]:
    """2DMD strings of dense placements, defects in site order."""
    arr = as_states(states, lattice)
    table = _item_table(lattice)
    rows, sites = np.nonzero(arr)
    items = table[sites, arr[rows, sites]]
    bounds = np.searchsorted(rows, np.arange(1, arr.shape[0]))
    return [";".join(chunk) for chunk in np.split(items, bounds)] if arr.shape[0] else []


def _item_table(lattice: Lattice) -> NDArray[np.object_]:
    """``table[site, code]``: the 2DMD text of that defect (cached on the lattice)."""
    cached = getattr(lattice, "_item_table_cache", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    table = np.empty((lattice.n_sites, lattice.n_kinds + 1), dtype=object)
    host_of = lattice.site_species
    for site in range(lattice.n_sites):
        for k in lattice.kinds:
            if k.host == host_of[site]:
                table[site, k.code] = Defect(site, k.host, k.species).to_2dmd()
    lattice._item_table_cache = table  # type: ignore[attr-defined]
    return table


def composition(states: ArrayLike, lattice: Lattice) -> NDArray[np.int64]:
    """(n, n_kinds + 1) int64 counts of each code per row (column 0 counts host atoms)."""
    arr = as_states(states, lattice)
    out = np.zeros((arr.shape[0], lattice.n_kinds + 1), dtype=np.int64)
    for k in range(lattice.n_kinds + 1):
        out[:, k] = (arr == k).sum(axis=1)
    return out


def counts_vector(counts: Mapping[str, int] | ArrayLike, lattice: Lattice) -> NDArray[np.int64]:
    """A defect multiset as an (n_kinds + 1,) int64 vector (entry 0 unused).

    ``counts`` maps labels like ``"S->V"`` (or ``"vac:S"``, ``"sub:S->Se"``) to counts, or is a
    sequence of n_kinds counts in code order.
    """
    vec = np.zeros(lattice.n_kinds + 1, dtype=np.int64)
    if isinstance(counts, Mapping):
        labels = {k.label: k.code for k in lattice.kinds}
        for key, value in counts.items():
            label = key.removeprefix("sub:").removeprefix("vac:")
            if "->" not in label and key.startswith("vac:"):
                label = f"{label}->{VACANCY}"
            if label not in labels:
                raise ValueError(f"unknown defect kind {key!r}; known: {sorted(labels)}")
            if int(value) < 0:
                raise ValueError(f"count of {key!r} is negative: {value}")
            vec[labels[label]] += int(value)
        return vec
    arr = np.asarray(counts, dtype=np.int64).ravel()
    if arr.shape != (lattice.n_kinds,):
        raise ValueError(f"expected {lattice.n_kinds} counts in code order, got {arr.shape[0]}")
    if (arr < 0).any():
        raise ValueError(f"counts must be non-negative, got {arr.tolist()}")
    vec[1:] = arr
    return vec


def random_placements(lattice: Lattice, n: int, n_defects: tuple[int, int],
                      rng: np.random.Generator) -> NDArray[np.uint8]:
    """``n`` placements with a uniform number of defects in ``n_defects`` (inclusive), on uniform
    random distinct sites, each with a uniform random defect kind allowed on its site."""
    lo, hi = n_defects
    if not 0 <= lo <= hi <= lattice.n_sites:
        raise ValueError(f"defect counts {n_defects} do not fit {lattice!r}")
    k = rng.integers(lo, hi + 1, size=n)
    order = np.argsort(rng.random((n, lattice.n_sites)), axis=1)
    chosen = np.arange(lattice.n_sites)[None, :] < k[:, None]
    rows = np.repeat(np.arange(n), k)
    sites = order[chosen]
    allowed = [np.array(lattice.allowed_codes(s)[1:], dtype=np.uint8) for s in range(lattice.n_basis)]
    width = max(len(a) for a in allowed)
    table = np.zeros((lattice.n_basis, width), dtype=np.uint8)
    n_allowed = np.zeros(lattice.n_basis, dtype=np.int64)
    for b, a in enumerate(allowed):
        table[b, :len(a)] = a
        n_allowed[b] = len(a)
    basis = sites % lattice.n_basis
    if (n_allowed[basis] == 0).any():
        raise ValueError("a chosen site allows no defect")
    pick = (rng.random(sites.shape[0]) * n_allowed[basis]).astype(np.int64)
    out = np.zeros((n, lattice.n_sites), dtype=np.uint8)
    out[rows, sites] = table[basis, pick]
    return out
