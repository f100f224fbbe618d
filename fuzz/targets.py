"""Fuzz targets of the binding entry points, shared by the atheris fuzzers and the regression test.

Each target takes raw bytes and must either succeed (and then its result must obey the laws
checked here) or raise ``ValueError`` with a message; any other exception or a crash is a finding.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
from defectspace import Canonicalizer, Lattice, parse_2dmd
from defectspace.placement import PlacementError
from defectspace.symmetry import SUBGROUPS


class Provider:
    """A tiny FuzzedDataProvider that works without atheris (for replaying the corpus)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int_in(self, lo: int, hi: int) -> int:
        v = self.byte() | self.byte() << 8
        return lo + v % (hi - lo + 1)

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data))


@functools.lru_cache(maxsize=8)
def canonicalizer(n1: int, n2: int, subgroup: str) -> Canonicalizer:
    return Canonicalizer(Lattice.preset("MoS2", (n1, n2)), subgroup, n_threads=1)




def parse_target(data: bytes) -> None:
    """2DMD strings: parse, and if it parses, format and parse again to the same placement."""
    from defectspace.placement import format_2dmd

    lat = canonicalizer(8, 8, "full").lattice
    text = data.decode("utf-8", errors="replace")
    try:
        x = parse_2dmd([text], lat)
    except PlacementError:
        return
    again = parse_2dmd(format_2dmd(x, lat), lat)
    assert np.array_equal(x, again), text


def canonical_target(data: bytes) -> None:
    """Arbitrary arrays through every canonicalizer entry point."""
    p = Provider(data)
    c = canonicalizer(p.int_in(1, 4), p.int_in(1, 4), SUBGROUPS[p.int_in(0, 2)])
    n = c.lattice.n_sites
    rows = p.int_in(0, 6)
    raw = np.frombuffer(p.take(rows * n).ljust(rows * n, b"\0"), dtype=np.uint8).reshape(rows, n)
    states = raw % p.int_in(1, 255)
    mode = p.int_in(0, 6)
    try:
        if mode == 0:
            res = c.canonicalize(states)
            ops = np.array([p.int_in(0, c.group.order - 1) for _ in range(rows)], dtype=np.int64)
            images = c.apply(states, ops)
            assert np.array_equal(c.keys(images), res.keys)
            assert np.array_equal(c.canonicalize(res.canonical).canonical, res.canonical)
            assert (c.group.order % np.maximum(res.orbit_size, 1) == 0).all()
        elif mode == 1:
            ops = np.array([p.int_in(0, 2 * c.group.order) - 5 for _ in range(rows)], dtype=np.int64)
            c.apply(states, ops)
        elif mode == 2:
            keys = np.frombuffer(p.take(rows * c.key_bytes).ljust(rows * c.key_bytes, b"\0"),
                                 dtype=np.uint8).reshape(rows, c.key_bytes)
            back = c.from_keys(keys)
            assert np.array_equal(c._cpp_obj.unpack_keys(keys), back)
        elif mode == 3:
            count = p.int_in(0, 12)
            sites = np.array([p.int_in(0, n + 2) - 1 for _ in range(count)], dtype=np.int32)
            codes = np.array([p.int_in(0, 6) for _ in range(count)], dtype=np.uint8)
            cuts = sorted(p.int_in(0, count) for _ in range(p.int_in(0, 3)))
            offsets = np.array([0, *cuts, count], dtype=np.int64)
            c.canonicalize_sparse(sites, codes, offsets)
        elif mode == 4:
            counts = [p.int_in(0, 3) for _ in range(c.lattice.n_kinds)]
            if sum(counts) <= 4:
                e = c.enumerate(counts)
                assert len({k.tobytes() for k in c.keys(e.canonical)}) == len(e.orbit_size)
        elif mode == 5:
            neg = c.negatives(states, seed=p.int_in(0, 1000), hard_fraction=p.byte() / 255)
            ok = neg.kind >= 0
            assert not c.equivalent(states[ok], neg.negatives[ok]).any()
        else:
            wrong = np.frombuffer(p.rest(), dtype=np.uint8)
            c.keys(wrong.reshape(1, -1) if wrong.size else wrong.reshape(0, 0))
    except ValueError:
        return


def structure_target(data: bytes) -> None:
    """CIF bytes through the package's one CIF reader, then onto the MoS2 lattice and through the
    layer check of unit cells: a malformed file, partial occupancies, a structure that fits no
    placement and a bulk cell must each be a ValueError with a message, never anything else."""
    from defectspace.lattice import check_layer
    from defectspace.structure import map_structure, read_cif_bytes

    lat = canonicalizer(2, 2, "full").lattice
    try:
        atoms = read_cif_bytes(data, "fuzz.cif")
    except ValueError as exc:
        assert str(exc).startswith("cannot read CIF fuzz.cif"), exc
        return
    assert atoms.pbc.tolist() == [True, True, False]
    if len(atoms) <= 64:
        try:
            vacuum = check_layer(atoms.cell.array, atoms.get_scaled_positions(wrap=True), "fuzz.cif")
            assert vacuum >= 0
        except ValueError as exc:
            assert "not a 2D layer" in str(exc), exc
    try:
        result = map_structure(atoms, lat)
    except ValueError:
        return
    assert result.states.shape == (lat.n_sites,)


_LABEL_INPUT = Path(tempfile.gettempdir()) / f"defectspace-fuzz-label-{os.getpid()}.csv"


def label_target(data: bytes) -> None:
    """File bytes as the input of ``label`` (and as its --ids-from file): read by the labelling
    driver's reader, every row fingerprinted. Garbage, an empty file, a BOM, CRLF, a bad row or a
    repeated id must be a ValueError naming the file, never anything else."""
    from defectspace.engines.driver import read_input
    from defectspace.io import read_ids

    _LABEL_INPUT.write_bytes(data)
    name = str(_LABEL_INPUT)
    try:
        rows = read_input(_LABEL_INPUT)
    except ValueError as exc:
        assert name in str(exc), exc
    else:
        assert len(rows.ids) == len(set(rows.ids))
        for sid in rows.ids[:8]:
            assert len(rows.fingerprint(sid)) == 64
        if rows.placements is not None:
            assert rows.placements.shape == (len(rows.ids), rows.lattice.n_sites)
    try:
        ids = read_ids(_LABEL_INPUT)
    except ValueError as exc:
        assert name in str(exc), exc
    else:
        assert all(isinstance(i, str) for i in ids)


TARGETS = {"parse": parse_target, "canonical": canonical_target, "structure": structure_target,
           "label": label_target}
