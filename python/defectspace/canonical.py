"""Exact canonical forms, keys, orbit sizes, dedupe, enumeration and training pairs.

Every heavy step runs in the C++ core on all cores with the GIL released.

Key format, version 1 (``KEY_FORMAT_VERSION``): the canonical placement written site by site in
the lattice's site order, ``b`` bits per site (``b`` = bits of the largest per-sublattice code),
site ``s`` in bits ``[s*b, s*b + b)`` of a little-endian bit string, padded with zero bits to
whole bytes. A site's code is 0 for the host atom and ``1, 2, ...`` for the defect kinds of its
host element in the lattice's kind order (MoS2: Mo sites ``1 = V, 2 = W``; S sites
``1 = V, 2 = Se``; ``b = 2``, 48 bytes for 8x8). The canonical placement is the smallest image,
in the order defined by the core (see ``cpp/src/canonical.cpp``), among the images that bring an
anchor defect (of the rarest kind, then the smallest code) to the smallest representative site,
narrowed by invariants only (environment signatures, a second anchor), so the result is exact.
As a string a key is ``"ds1:" + hex``. Keys compare only under the same lattice, supercell,
defect kinds and symmetry group.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from defectspace import _core
from defectspace.lattice import Lattice
from defectspace.placement import as_integers, as_states, counts_vector

KEY_FORMAT_VERSION: int = int(_core.KEY_FORMAT_VERSION)
"""Version of the key layout; a stored key keeps its meaning while this stays the same."""

KEY_PREFIX = f"ds{KEY_FORMAT_VERSION}:"

_INT32 = (int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max))
_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


@dataclass(frozen=True)
class CanonicalResult:
    """Canonical forms of a batch of placements."""

    canonical: NDArray[np.uint8]
    """(n, n_sites) uint8 canonical placements."""
    keys: NDArray[np.uint8]
    """(n, key_bytes) uint8 exact keys: equal rows iff equivalent placements."""
    orbit_size: NDArray[np.int64]
    """(n,) int64 number of distinct placements equivalent to each row (group order / stabilizer)."""
    operation: NDArray[np.int64]
    """(n,) int64 group element mapping each row onto its canonical form."""


@dataclass(frozen=True)
class DedupeResult:
    """Distinct classes of a batch, in first-seen order."""

    canonical: NDArray[np.uint8]
    """(n_classes, n_sites) uint8 canonical placement of each class."""
    keys: NDArray[np.uint8]
    """(n_classes, key_bytes) uint8 key of each class."""
    counts: NDArray[np.int64]
    """(n_classes,) int64 rows of the input in each class."""
    orbit_size: NDArray[np.int64]
    """(n_classes,) int64 orbit size of each class."""
    first_row: NDArray[np.int64]
    """(n_classes,) int64 first input row of each class."""
    inverse: NDArray[np.int64]
    """(n,) int64 class index of each input row."""


@dataclass(frozen=True)
class Enumeration:
    """All distinct placements of one defect multiset."""

    canonical: NDArray[np.uint8]
    """(n_classes, n_sites) uint8 canonical placements."""
    orbit_size: NDArray[np.int64]
    """(n_classes,) int64 placements in each class; they sum to the number of all placements."""


@dataclass(frozen=True)
class SparseCanonicalResult:
    """Keys of placements given as defect lists (:meth:`Canonicalizer.canonicalize_sparse`)."""

    keys: NDArray[np.uint8]
    """(n, key_bytes) uint8 exact keys."""
    orbit_size: NDArray[np.int64]
    """(n,) int64 orbit sizes."""
    operation: NDArray[np.int64]
    """(n,) int64 group element mapping each row onto its canonical form."""


@dataclass(frozen=True)
class KeysAndOrbits:
    """Keys and orbit sizes of a batch, without the canonical forms."""

    keys: NDArray[np.uint8]
    """(n, key_bytes) uint8 exact keys."""
    orbit_size: NDArray[np.int64]
    """(n,) int64 orbit sizes."""


@dataclass(frozen=True)
class RandomImages:
    """Each row moved by a uniformly random group element (:meth:`Canonicalizer.random_images`)."""

    images: NDArray[np.uint8]
    """(n, n_sites) uint8 images, equivalent to the input rows."""
    operation: NDArray[np.int64]
    """(n,) int64 group element applied to each row."""


@dataclass(frozen=True)
class Negatives:
    """A verified-inequivalent partner of each row (:meth:`Canonicalizer.negatives`)."""

    negatives: NDArray[np.uint8]
    """(n, n_sites) uint8 placements of the same composition, none equivalent to its row."""
    kind: NDArray[np.int8]
    """(n,) int8: 1 hard (one defect moved to a nearby site), 0 uniform random, -1 none exists
    (the composition has a single class; the row is copied)."""


def key_to_string(keys: NDArray[np.uint8]) -> list[str]:
    """Keys as ``"ds1:<hex>"`` strings."""
    return [KEY_PREFIX + bytes(row).hex() for row in np.asarray(keys, dtype=np.uint8)]


def key_from_string(strings: Sequence[str], key_bytes: int) -> NDArray[np.uint8]:
    """Inverse of :func:`key_to_string`; refuses other versions and widths."""
    out = np.zeros((len(strings), key_bytes), dtype=np.uint8)
    for r, text in enumerate(strings):
        if not text.startswith("ds") or ":" not in text:
            raise ValueError(f"key {r}: {text[:20]!r} is not a defectspace key (ds<version>:<hex>)")
        version, _, hexpart = text.partition(":")
        if version != KEY_PREFIX[:-1]:
            raise ValueError(f"key {r}: format {version!r}, this release reads {KEY_PREFIX[:-1]!r}")
        try:
            raw = bytes.fromhex(hexpart)
        except ValueError:
            raise ValueError(f"key {r}: {hexpart[:20]!r}... is not hexadecimal") from None
        if len(raw) != key_bytes:
            raise ValueError(f"key {r}: {len(raw)} bytes, expected {key_bytes} for this lattice")
        out[r] = np.frombuffer(raw, dtype=np.uint8)
    return out


class Canonicalizer:
    """Canonical forms of placements on a lattice under its symmetry group (or a subgroup).

    Args:
        lattice: the supercell.
        subgroup: ``"full"``, ``"translations"`` or ``"no_horizontal_mirror"``.
        n_threads: threads for batch calls; 0 uses every core.
    """

    def __init__(self, lattice: Lattice, subgroup: str = "full", n_threads: int = 0) -> None:
        if n_threads < 0:
            raise ValueError(f"n_threads must be >= 0, got {n_threads}")
        self.lattice = lattice
        self.subgroup = subgroup
        self.group = lattice.symmetry(subgroup)
        self._cpp_obj = _cpp_canonicalizer(lattice, subgroup)
        self.n_threads = int(n_threads)

    @property
    def key_bytes(self) -> int:
        """Bytes per key."""
        return int(self._cpp_obj.key_bytes)

    def canonicalize(self, states: ArrayLike) -> CanonicalResult:
        """Canonical form, key, orbit size and operation of every row."""
        x = as_states(states, self.lattice)
        canonical, keys, orbit, op = self._cpp_obj.canonicalize(x, self.n_threads)
        return CanonicalResult(canonical, keys, orbit, op)

    def canonicalize_sparse(self, sites: ArrayLike, codes: ArrayLike,
                            offsets: ArrayLike) -> SparseCanonicalResult:
        """Keys, orbit sizes and operations of placements given as defect lists.

        Row ``r`` holds the defects ``sites[offsets[r]:offsets[r+1]]`` with codes
        ``codes[offsets[r]:offsets[r+1]]`` (``offsets`` has n + 1 entries, starting at 0). The
        cost per placement depends on its defects only, not on the supercell's size.
        """
        # refused here: what the casts would corrupt; by the core, naming the row: sites out of
        # the lattice, codes a site cannot hold, bad offsets
        s = as_integers(sites, "sites", *_INT32, np.int32)
        c = as_integers(codes, "codes", 0, 255, np.uint8)
        off = as_integers(offsets, "offsets", *_INT64, np.int64)
        keys, orbit, op = self._cpp_obj.canonicalize_sparse(s, c, off, self.n_threads)
        return SparseCanonicalResult(keys, orbit, op)

    def keys(self, states: ArrayLike) -> NDArray[np.uint8]:
        """(n, key_bytes) uint8 exact keys."""
        keys: NDArray[np.uint8] = self._cpp_obj.keys(as_states(states, self.lattice), self.n_threads)
        return keys

    def key_strings(self, states: ArrayLike) -> list[str]:
        """Keys as ``"ds1:<hex>"`` strings."""
        return key_to_string(self.keys(states))

    def keys_and_orbits(self, states: ArrayLike) -> KeysAndOrbits:
        """Keys and orbit sizes of every row (no canonical forms: the cheapest full answer)."""
        keys, orbit = self._cpp_obj.keys_and_orbits(as_states(states, self.lattice), self.n_threads)
        return KeysAndOrbits(keys, orbit)

    def orbit_sizes(self, states: ArrayLike) -> NDArray[np.int64]:
        """(n,) int64 orbit sizes."""
        return self.keys_and_orbits(states).orbit_size

    def equivalent(self, a: ArrayLike, b: ArrayLike) -> NDArray[np.bool_]:
        """(n,) bool: whether row i of ``a`` is equivalent to row i of ``b``."""
        ka, kb = self.keys(a), self.keys(b)
        if ka.shape != kb.shape:
            raise ValueError(f"a has {ka.shape[0]} rows but b has {kb.shape[0]}")
        result: NDArray[np.bool_] = (ka == kb).all(axis=1)
        return result

    def from_keys(self, keys: ArrayLike) -> NDArray[np.uint8]:
        """Canonical placements encoded by keys."""
        k = as_integers(keys, "keys", 0, 255, np.uint8)
        if k.ndim == 1:
            k = k[None, :]
        out: NDArray[np.uint8] = self._cpp_obj.unpack_keys(k)
        return out

    def apply(self, states: ArrayLike, operations: ArrayLike) -> NDArray[np.uint8]:
        """Row i transformed by group element ``operations[i]`` (a scalar applies to every row)."""
        x = as_states(states, self.lattice)
        ops = as_integers(operations, "operations", *_INT64, np.int64)
        out: NDArray[np.uint8] = self._cpp_obj.apply(
            x, np.ascontiguousarray(np.broadcast_to(ops, (x.shape[0],))))
        return out

    def random_images(self, states: ArrayLike, seed: int) -> RandomImages:
        """Each row transformed by a uniformly random group element."""
        images, ops = _core.random_images(self._cpp_obj, as_states(states, self.lattice), _seed(seed),
                                          self.n_threads)
        return RandomImages(images, ops)

    def dedupe(self, states: ArrayLike) -> DedupeResult:
        """Distinct classes of a batch with their counts."""
        res = self.canonicalize(states)
        store = _core.KeySet(self.key_bytes)
        inverse, is_new = store.insert(res.keys)
        first = np.flatnonzero(is_new)
        return DedupeResult(res.canonical[first], res.keys[first], store.counts(),
                            res.orbit_size[first], first.astype(np.int64), inverse)

    def _counts(self, counts: Mapping[str, int] | ArrayLike) -> NDArray[np.int64]:
        vec = counts_vector(counts, self.lattice)
        for t, host in enumerate(self.lattice.host_types):
            need = int(sum(vec[k.code] for k in self.lattice.kinds if k.host == host))
            have = int((self.lattice.site_types == t).sum())
            if need > have:
                raise ValueError(f"{need} defects asked for on the {host} sites, but the "
                                 f"{self.lattice.supercell[0]}x{self.lattice.supercell[1]} supercell "
                                 f"has only {have}")
        return vec

    def enumerate(self, counts: Mapping[str, int] | ArrayLike) -> Enumeration:
        """Every distinct placement of a defect multiset, e.g. ``{"S->V": 3}``, with orbit sizes."""
        vec = self._counts(counts)
        check_enumeration_fits(self, vec[1:])
        states, orbit = _core.enumerate_distinct(self._cpp_obj, vec, self.n_threads)
        return Enumeration(states, orbit)

    def sample(self, counts: Mapping[str, int] | ArrayLike, n: int, seed: int) -> NDArray[np.uint8]:
        """``n`` placements drawn uniformly from all placements of a defect multiset."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        vec = self._counts(counts)
        out: NDArray[np.uint8] = _core.sample_uniform(self._cpp_obj, vec, int(n), _seed(seed), self.n_threads)
        return out

    def negatives(
        self,
        states: ArrayLike,
        seed: int,
        hard_fraction: float = 0.5,
        n_neighbors: int = 6,
        max_tries: int = 32,
    ) -> Negatives:
        """A verified-inequivalent placement of the same composition for every row: half of them
        (``hard_fraction``) hard, one defect moved to one of its ``n_neighbors`` nearest
        same-sublattice sites, the others uniform random (see :class:`Negatives`)."""
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        x = as_states(states, self.lattice)
        nb = self.lattice.neighbors(n_neighbors).copy()
        neg, kind = _core.negatives(self._cpp_obj, x, nb, float(hard_fraction), int(max_tries),
                                    _seed(seed), self.n_threads)
        return Negatives(neg, kind)


_CPP_CANONICALIZERS: weakref.WeakKeyDictionary[Lattice, dict[str, _core.Canonicalizer]] = (
    weakref.WeakKeyDictionary())


def _cpp_canonicalizer(lattice: Lattice, subgroup: str) -> _core.Canonicalizer:
    """The C++ canonicalizer of a lattice under a named subgroup, built once per lattice."""
    per_lattice = _CPP_CANONICALIZERS.setdefault(lattice, {})
    if subgroup not in per_lattice:
        group = lattice.symmetry(subgroup)
        per_lattice[subgroup] = _core.Canonicalizer(group._cpp_obj, lattice.kind_site_type.copy())
    return per_lattice[subgroup]


def n_placements(lattice: Lattice, counts: Mapping[str, int] | ArrayLike) -> int:
    """Number of placements (equivalent or not) of a defect multiset: on each host sublattice, the
    multinomial of its sites over the kinds it holds and the undefected rest."""
    vec = counts_vector(counts, lattice)
    total = 1
    for t, host in enumerate(lattice.host_types):
        free = int((lattice.site_types == t).sum())
        for k in lattice.kinds:
            n = int(vec[k.code]) if k.host == host else 0
            total *= math.comb(free, n) if 0 <= n <= free else 0
            free -= n
    return total


def available_memory() -> int:
    """Bytes of memory available to a new allocation: MemAvailable of /proc/meminfo, lowered by an
    address-space limit (RLIMIT_AS) when there is one; the physical memory where neither is known."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 1 << 50
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status", encoding="ascii") as fh:
                used = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
            available = min(available, max(limit - used, 0))
    except (ImportError, OSError, StopIteration, ValueError):
        pass
    return available


def check_enumeration_fits(c: Canonicalizer, counts: Mapping[str, int] | ArrayLike) -> None:
    """Raises MemoryError before an enumeration whose distinct placements cannot fit in the memory
    available (:meth:`Canonicalizer.enumerate` calls it): there are at least (placements / group
    order) of them, each a row of n_sites bytes, its key and its orbit size. (30 vacancies on 8x8
    MoS2, some 2e26 classes, ran for ever.)"""
    vec = counts_vector(counts, c.lattice)
    placements = n_placements(c.lattice, vec[1:])
    at_least = -(-placements // c.group.order)
    need = at_least * (c.lattice.n_sites + c.key_bytes + 8)
    available = available_memory()
    if need > available:
        n1, n2 = c.lattice.supercell
        raise MemoryError(
            f"not enough memory to enumerate the distinct placements with counts "
            f"{vec[1:].tolist()} on the {n1}x{n2} supercell: there are at least {_sci(at_least)} "
            f"({_sci(placements)} placements / {c.group.order} symmetry operations), "
            f"{_sci(need // 2**30)} GiB as rows, and {available / 2**30:.3g} GiB are available; "
            "ask for fewer defects or a smaller supercell, or draw random placements (sample)")


def _sci(n: int) -> str:
    """A count of any size in 3 significant digits (``1.4e+26``; past float, ``10^400``)."""
    return f"{n:.3g}" if n < 10**300 else f"10^{len(str(n)) - 1}"


def _seed(seed: int) -> int:
    s = int(seed)
    if not 0 <= s < 2**64:
        raise ValueError(f"seed must lie in [0, 2**64), got {seed}")
    return s


def burnside_count(lattice: Lattice, counts: Mapping[str, int] | ArrayLike,
                   subgroup: str = "full") -> int:
    """Number of distinct placements of a defect multiset by Burnside's lemma (pure numpy).

    Averages, over all group elements, the number of placements each one fixes: a fixed placement
    is constant on every cycle of the element, so it is counted with a generating function over
    the cycles. Independent of the C++ canonicalizer, hence a check on it.
    """
    vec = counts_vector(counts, lattice)
    target = tuple(int(c) for c in vec[1:])
    perms = lattice.symmetry(subgroup).permutations
    kinds_of_type = [[k.code for k in lattice.kinds if lattice.kind_site_type[k.code - 1] == t]
                     for t in range(len(lattice.host_types))]
    total = 0
    for perm in perms:
        seen = np.zeros(lattice.n_sites, dtype=bool)
        poly: dict[tuple[int, ...], int] = {tuple([0] * lattice.n_kinds): 1}
        for s in range(lattice.n_sites):
            if seen[s]:
                continue
            length = 0
            t = s
            while not seen[t]:
                seen[t] = True
                t = int(perm[t])
                length += 1
            new: dict[tuple[int, ...], int] = {}
            for mono, coef in poly.items():
                new[mono] = new.get(mono, 0) + coef  # cycle keeps host atoms
                for code in kinds_of_type[int(lattice.site_types[s])]:
                    m = list(mono)
                    m[code - 1] += length
                    if m[code - 1] <= target[code - 1]:
                        key = tuple(m)
                        new[key] = new.get(key, 0) + coef
            poly = new
        total += poly.get(target, 0)
    order = int(perms.shape[0])
    if total % order:
        raise ArithmeticError("Burnside sum not divisible by the group order")
    return total // order


def brute_force_keys(lattice: Lattice, states: ArrayLike, subgroup: str = "full") -> list[bytes]:
    """Lexicographically smallest image over the whole group, in plain numpy (slow reference).

    Two placements are equivalent iff their brute-force keys are equal; the C++ keys must induce
    the same partition.
    """
    x = as_states(states, lattice)
    perms = lattice.symmetry(subgroup).permutations
    inv = np.argsort(perms, axis=1)  # (g.x)[s] = x[g^-1(s)]
    out = []
    for row in x:
        images = row[inv]  # (order, n_sites)
        order = np.lexsort(images.T[::-1])
        out.append(images[order[0]].tobytes())
    return out
