"""High-throughput screening: generate, canonicalize, dedupe, predict, filter, (embed,) write Parquet.

The run has two resumable phases, each a set of independent tasks that run on the threads of this
process or on a Dask cluster:

1. *chunks*: each chunk of placements (drawn, enumerated or read) is canonicalized and its keys
   are written to one Arrow file, ``WORK/keys/c<chunk>.arrow``, as one record batch per key
   partition (a hash of the key);
2. *partitions*: each partition gathers its batch from every chunk file, keeps the first occurrence
   of every class in (chunk, row) order with its count, decodes the canonical placements from the
   keys and predicts, in batches that stay in cache, only the properties that the ``ranges``
   filter on; the other properties, and the embeddings when the output asks for them
   (``embed=True``), are computed for the kept classes only. The partition's kept classes go to
   ``WORK/out/p<part>.arrow``.

Dedupe is exact across chunks and workers because equal keys always land in the same partition.
Every file is written whole or not at all, so a killed run restarted with the same arguments skips
what is done and produces byte-identical results. The partitions are then concatenated into the
output. The work folder and the output may be local paths or fsspec URLs (``file://``,
``memory://``, an object store), so workers that share no disk can run a screen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import resource
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from defectspace.canonical import Canonicalizer, key_to_string
from defectspace.descriptors import blas_threads
from defectspace.io import OnError, PlacementTable, atomic_path
from defectspace.lattice import Lattice
from defectspace.placement import format_2dmd
from defectspace.predict.domain import FlagCounts, TrainingDomain, flag_counts

if TYPE_CHECKING:
    from defectspace.predict import PropertyPredictor

WORK_FORMAT = 3
"""Version of the work-folder layout; a mismatch refuses to resume (2: one Arrow key file per chunk,
Arrow partition outputs; 3: partitions hold the ``<property>_out_of_domain`` columns and counts)."""

CHECKSUM_SUFFIX = ".sha256"
"""Every work file ``NAME`` has ``NAME.sha256`` beside it (sha256 and size), written after it: a
flipped byte, a truncated or a deleted file is found on resume and that file computed again."""

SCORE_BATCH = 2048
"""Classes decoded and scored at once: the histogram descriptor of a batch (2048 x 174 float64,
2.8 MB) and the placements stay in cache between the descriptor, the trees and the filter."""

TASK_CPU = "CPU of the tasks"
"""The stage-time entry holding the tasks' own CPU seconds (their thread's, the core and torch
included): what the stages cost without the waits that other jobs on the machine impose."""

PARTITION_ROWS = 65536
"""Placements per key partition chosen by the command line: the memory bound of phase 2."""


class Scorer(Protocol):
    """What phase 2 asks of the models: named property columns, embeddings on demand."""

    @property
    def names(self) -> tuple[str, ...]:
        """The property columns it predicts, in output order."""
        ...

    def predict(self, states: NDArray[np.uint8], names: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        """The columns ``names`` ((n,) float64 each) of canonical placements ``(n, n_sites)``."""
        ...

    def embed(self, states: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(n, dim) embeddings of canonical placements."""
        ...


@dataclass(frozen=True)
class ScreenConfig:
    """Everything that determines a screening run's output (the resume check compares it)."""

    lattice: dict[str, Any]
    """Lattice description (:meth:`Lattice.describe`)."""
    source: str
    """``"random"``, ``"exhaustive"`` or ``"file"``."""
    compositions: tuple[tuple[int, ...], ...] = ()
    """Defect multisets as count vectors in code order (random and exhaustive sources)."""
    n: int = 0
    """Placements to draw (random source)."""
    input_path: str | None = None
    """CSV or Parquet with id,defects (file source)."""
    seed: int = 0
    chunk_size: int = 65536
    n_partitions: int = 8
    subgroup: str = "full"
    ranges: tuple[tuple[str, float, float], ...] = ()
    """(column, low, high): rows outside any range are dropped."""
    model: str | None = None
    """Embedder checkpoint (None: the shipped default)."""
    predictors: str | None = None
    """Predictor folder (None: the shipped defaults)."""
    on_error: str = "fail"
    embed: bool = False
    """Whether the output holds the kept classes' embeddings (columns ``emb_0`` ...); the other
    columns are the same either way."""

    def fingerprint(self) -> str:
        """A hash of the configuration (and of the input file's bytes, for a file source)."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        h = hashlib.sha256(blob)
        if self.input_path is not None:
            with open(self.input_path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over tasks (so over threads and workers too)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, other: Mapping[str, float]) -> None:
        for k, v in other.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v


@dataclass(frozen=True)
class ScreenSummary:
    """What a screening run did."""

    generated: int
    """Placements that entered (drawn, enumerated or read)."""
    skipped: int
    """Input rows refused with ``on_error="skip"`` (each reported with its line)."""
    distinct: int
    """Symmetry-distinct classes among them."""
    kept: int
    """Classes inside every property range, written to the output."""
    wall_seconds: float
    stage_seconds: dict[str, float]
    """Seconds per stage summed over tasks (with several workers, more than the wall time)."""
    peak_rss_mib: float
    """Peak resident memory of this process."""
    output: str
    worker_peak_rss_mib: float = 0.0
    """Largest peak resident memory of a Dask worker (0 without Dask)."""
    threads_per_task: int = 1
    """Threads each task gave the core and torch (the workers run one task per thread)."""
    workers: int = 1
    """Tasks run at once: threads of this process, or Dask worker threads."""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each phase: ``chunks``, ``partitions``, ``merge``."""
    redone: tuple[str, ...] = ()
    """Work files of an earlier run found damaged (``"PATH: why"``) and computed again."""
    worker_cpu_seconds: tuple[float, ...] = ()
    """CPU seconds (user + system) of each Dask worker process over its life, largest first
    (empty without Dask): the busiest one bounds the wall time on idle cores."""
    domain_warnings: tuple[str, ...] = ()
    """One sentence per predictor that finds kept classes outside its training domain (their
    ``<property>_out_of_domain`` column is true): the command line prints them as warnings."""


# ----------------------------------------------------------------------------- folders and URLs
class Folder:
    """A folder given as a local path or an fsspec URL, with whole-file writes.

    A local folder (a path or ``file://``) writes through :func:`defectspace.io.atomic_path`
    (fsynced, renamed into place); any other filesystem writes a hidden temporary object and moves
    it into place, so a reader sees a file whole or not at all.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs: Any = None
        self.root = url
        if "://" in url:
            import fsspec  # type: ignore[import-untyped]
            from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

            fs, root = fsspec.core.url_to_fs(url)
            self.root = str(root)
            if not isinstance(fs, LocalFileSystem):
                self.fs = fs
        self.protocol = "file" if self.fs is None else str(np.atleast_1d(self.fs.protocol)[0])

    def path(self, name: str) -> str:
        """The full path (without protocol) of ``name`` inside this folder."""
        return posixpath.join(self.root, name) if self.fs is not None else os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        if self.fs is None:
            return os.path.exists(self.path(name))
        return bool(self.fs.exists(self.path(name)))

    @contextmanager
    def write(self, name: str, checksum: bool = True) -> Iterator[IO[bytes]]:
        """A binary file to write ``name`` through; it appears only if the block finishes, and
        then (``checksum``) ``NAME.sha256`` records its sha256 and size: a work file is done when
        :meth:`ready` finds the two agree."""
        target = self.path(name)
        if self.fs is None:
            with atomic_path(target) as local_tmp:
                with open(local_tmp, "wb") as fh:
                    yield fh
                data = Path(local_tmp).read_bytes() if checksum else b""
        else:
            parent = posixpath.dirname(target)
            tmp = posixpath.join(parent, f".{posixpath.basename(target)}.{os.getpid()}."
                                         f"{secrets.token_hex(4)}.tmp")
            self.fs.makedirs(parent, exist_ok=True)
            try:
                with self.fs.open(tmp, "wb") as remote:
                    yield remote
                data = bytes(self.fs.cat_file(tmp)) if checksum else b""
                self.fs.mv(tmp, target)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
        if checksum:
            with self.write(name + CHECKSUM_SUFFIX, checksum=False) as fh:
                fh.write(f"{hashlib.sha256(data).hexdigest()} {len(data)}\n".encode())

    def _remove_file(self, name: str) -> None:
        if self.fs is None:
            if os.path.lexists(self.path(name)):
                os.unlink(self.path(name))
        elif self.fs.exists(self.path(name)):
            self.fs.rm(self.path(name))

    def problem(self, name: str) -> str | None:
        """Why work file ``name`` cannot be used (None when it can): missing, unfinished (no
        checksum: written by a run that was killed, or by an older release), deleted, truncated or
        corrupt (size or sha256 differ from its checksum file)."""
        have_sum = self.exists(name + CHECKSUM_SUFFIX)
        if not self.exists(name):
            return "deleted" if have_sum else "missing"
        if not have_sum:
            return "unfinished (no checksum)"
        try:
            digest, size = self.read_bytes(name + CHECKSUM_SUFFIX).decode("ascii").split()
            data = self.read_bytes(name)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return f"unreadable ({type(exc).__name__}: {exc})"
        if len(data) != int(size):
            return f"truncated or grown ({len(data)} bytes, {size} written)"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"corrupt (sha256 {hashlib.sha256(data).hexdigest()[:12]}..., {digest[:12]}... written)"
        return None

    def ready(self, name: str, redone: list[str] | None = None) -> bool:
        """Whether work file ``name`` is done and whole; a damaged one is removed (to be computed
        again) and ``"PATH: why"`` appended to ``redone``."""
        why = self.problem(name)
        if why is None:
            return True
        if why != "missing":
            self._remove_file(name)
            self._remove_file(name + CHECKSUM_SUFFIX)
            if redone is not None:
                redone.append(f"{self.path(name)}: {why}")
        return False

    def read_bytes(self, name: str) -> bytes:
        if self.fs is None:
            return Path(self.path(name)).read_bytes()
        return bytes(self.fs.cat_file(self.path(name)))

    def open_arrow(self, name: str) -> Any:
        """A pyarrow input file for ``name`` (memory-mapped when local)."""
        import pyarrow as pa

        if self.fs is None:
            return pa.memory_map(self.path(name))
        return pa.PythonFile(self.fs.open(self.path(name), "rb"), mode="r")

    def remove(self) -> None:
        """Removes the folder and everything in it."""
        if self.fs is None:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)
        elif self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)


_FOLDERS: dict[str, Folder] = {}


def _parent_and_name(url: str) -> tuple[Folder, str]:
    """The folder holding a file given by path or URL, and the file's name."""
    if "://" in url:
        protocol, rest = url.split("://", 1)
        return Folder(f"{protocol}://{posixpath.dirname(rest)}"), posixpath.basename(rest)
    p = Path(url)
    return Folder(str(p.parent)), p.name


def _folder(url: str) -> Folder:
    if url not in _FOLDERS:
        _FOLDERS[url] = Folder(url)
    return _FOLDERS[url]


# ----------------------------------------------------------------------------- models
class ModelScorer:
    """The property predictors of a run, and its embedder loaded (with torch) only when asked.

    The predictors that read the histogram descriptor (``hist``, ``rich``: the shipped gap and
    formation-energy models and the latter's engine prior) share one histogram per batch.
    ``n_threads``: threads of the core and of torch (0: all cores).
    """

    def __init__(self, predictors: Mapping[str, PropertyPredictor], lattice: Lattice,
                 model: str | None = None, n_threads: int = 0) -> None:
        self.models = dict(predictors)
        self.lattice = lattice
        self.model = model
        self.n_threads = n_threads
        self._embedder: Any = None
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def predict(self, states: NDArray[np.uint8], names: Sequence[str],
                hist: NDArray[np.float64] | None = None) -> dict[str, NDArray[np.float64]]:
        """The columns ``names`` of ``states``; ``hist``: their histogram descriptor, if known."""
        from defectspace.descriptors import defect_histogram
        from defectspace.predict import PropertyPredictor

        out: dict[str, NDArray[np.float64]] = {}
        for name in names:
            m = self.models[name]
            if type(m) is PropertyPredictor and m.reads_histogram:
                if hist is None:
                    hist = defect_histogram(states, self.lattice, self.n_threads)
                out[name] = m.predict(states, self.lattice, n_threads=self.n_threads, hist=hist)
            else:
                out[name] = m.predict(states, n_threads=self.n_threads)
        return out

    def select(self, states: NDArray[np.uint8], ranges: Sequence[tuple[str, float, float]]
               ) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.float64]]]:
        """Which placements lie inside every range, and the ranged columns of those.

        A tree-ensemble model first walks only the first tenth, quarter, half of each member's
        trees and drops the rows whose prediction is outside a range whatever the remaining trees
        add (each tree adds one of its leaf values, between their minimum and maximum); it stops
        early where a stage drops under a fifth of the rows. The rows left are predicted whole by
        :meth:`predict`: the same bits as predicting everything (a row's bits do not depend on its
        batch). On the README's screen (dense rows, gap 0.8-1.2 eV) a tenth of the trees decides.
        """
        from defectspace.descriptors import defect_histogram

        names = list(dict.fromkeys(name for name, _, _ in ranges))
        rows = np.arange(len(states))
        hist: NDArray[np.float64] | None = None
        for name, lo, hi in ranges:
            bound = _tree_bound(self.models[name])
            if bound is None or len(rows) == 0:
                continue
            if hist is None:
                hist = defect_histogram(states, self.lattice, self.n_threads)
            rows = rows[bound.maybe_within(states[rows], hist[rows], self.lattice, lo, hi, self.n_threads)]
        values = self.predict(states[rows], names, None if hist is None else hist[rows])
        ok = np.ones(len(rows), dtype=bool)
        for name, lo, hi in ranges:
            v = values[name]
            ok &= (v >= lo) & (v <= hi)
        keep = np.zeros(len(states), dtype=bool)
        keep[rows[ok]] = True
        return keep, {name: np.asarray(values[name])[ok] for name in names}

    @property
    def domains(self) -> dict[str, TrainingDomain]:
        """The training domain of each predictor that records one."""
        out: dict[str, TrainingDomain] = {}
        for name, m in self.models.items():
            domain = getattr(m, "domain", None)
            if domain is not None:
                out[name] = domain
        return out

    def domain_flags(self, states: NDArray[np.uint8]) -> dict[str, NDArray[np.uint8]]:
        """Per predictor with a training domain, why each placement lies outside it (bits of
        :mod:`defectspace.predict.domain`; 0 inside). One histogram serves them all."""
        from defectspace.descriptors import defect_histogram

        domains = self.domains
        if not domains:
            return {}
        hist = defect_histogram(states, self.lattice, self.n_threads)
        return {name: d.flags(hist) for name, d in domains.items()}

    def embed(self, states: NDArray[np.uint8]) -> NDArray[np.float32]:
        from defectspace.ml.embedder import Embedder
        from defectspace.ml.encoder import torch_threads

        with self._lock:  # tasks on several threads share the scorer
            if self._embedder is None:
                self._embedder = Embedder.load(self.model, lattice=self.lattice)
        with torch_threads(self.n_threads):
            out: NDArray[np.float32] = self._embedder.embed(states)
        return out


class _TreeBound:
    """Bounds on a tree-ensemble predictor's value from a prefix of its trees (see
    :meth:`ModelScorer.select`): a weighted average of gradient-boosted members, each a baseline
    plus the sum of its trees' leaf values."""

    STAGES = (0.1, 0.25, 0.5)
    """Fractions of each member's trees after which rows are dropped."""

    def __init__(self, predictor: Any, members: list[Any], columns: list[Any], weights: NDArray[np.float64]
                 ) -> None:
        from defectspace.predict.regressors import _column_index

        self.predictor = predictor
        self.weights = weights
        self.baselines = [float(m.baseline_) for m in members]
        self.nodes: list[tuple[NDArray[Any], ...]] = []
        self.offsets: list[NDArray[np.int64]] = []
        self.rest_min: list[NDArray[np.float64]] = []
        """Per member, the smallest sum the trees from t on can add (entry t; last entry 0)."""
        self.rest_max: list[NDArray[np.float64]] = []
        for m, cols in zip(members, columns, strict=True):
            nd, off = m.nodes_, np.asarray(m.offsets_, dtype=np.int64)
            leaf = nd["is_leaf"] > 0
            feature = np.where(leaf, 0, nd["feature_idx"]).astype(np.int64)
            if cols is not None:  # a member that sees some columns reads them from the whole row
                feature = np.where(leaf, 0, _column_index(cols)[feature])
            self.nodes.append((feature.astype(np.int32), np.ascontiguousarray(nd["num_threshold"]),
                               nd["missing_go_to_left"].astype(np.uint8), nd["left"].astype(np.int32),
                               nd["right"].astype(np.int32), nd["is_leaf"].astype(np.uint8),
                               np.ascontiguousarray(nd["value"], dtype=np.float64)))
            self.offsets.append(off)
            tree = np.repeat(np.arange(len(off) - 1), np.diff(off))
            lo = np.full(len(off) - 1, np.inf)
            hi = np.full(len(off) - 1, -np.inf)
            np.minimum.at(lo, tree[leaf], nd["value"][leaf])
            np.maximum.at(hi, tree[leaf], nd["value"][leaf])
            self.rest_min.append(np.append(np.cumsum(lo[::-1])[::-1], 0.0))
            self.rest_max.append(np.append(np.cumsum(hi[::-1])[::-1], 0.0))

    def _walk(self, i: int, a: int, b: int, f: NDArray[np.float64], n_threads: int) -> NDArray[np.float64]:
        """The sum of member ``i``'s trees ``a`` to ``b - 1`` for feature rows ``f``."""
        from defectspace import _core

        off = self.offsets[i]
        n0, n1 = int(off[a]), int(off[b])
        fe, th, ml, le, ri, lf, va = (np.ascontiguousarray(x[n0:n1]) for x in self.nodes[i])
        out: NDArray[np.float64] = _core.predict_tree_ensemble(
            f, fe, th, ml, le, ri, lf, va, off[a:b + 1] - n0, 0.0, n_threads=n_threads)
        return out

    def maybe_within(self, states: NDArray[np.uint8], hist: NDArray[np.float64], lattice: Lattice,
                     lo: float, hi: float, n_threads: int) -> NDArray[np.int64]:
        """Indices of the rows whose prediction may lie in ``[lo, hi]`` (a superset of those that do)."""
        p = self.predictor
        feats = p.features(states, lattice, n_threads, hist=hist)
        rows = np.arange(len(states))
        f = np.ascontiguousarray(feats, dtype=np.float64)
        partial = np.array([np.full(len(states), b) for b in self.baselines]).reshape(len(self.nodes), -1)
        done = [0] * len(self.nodes)
        # partial sums in another order than predict's, so a margin far above their rounding
        tol = 1e-9 * (1.0 + abs(lo) + abs(hi))
        for frac in self.STAGES:
            for i in range(len(self.nodes)):
                end = max(done[i], int(frac * (len(self.offsets[i]) - 1)))
                if end > done[i]:
                    partial[i] += self._walk(i, done[i], end, f, n_threads)
                    done[i] = end
            low = sum(w * (partial[i] + self.rest_min[i][done[i]]) for i, w in enumerate(self.weights))
            high = sum(w * (partial[i] + self.rest_max[i][done[i]]) for i, w in enumerate(self.weights))
            ok = (high >= lo - tol) & (low <= hi + tol)
            if ok.mean() > 0.8:  # the range holds most rows: walking on costs more than it saves
                break
            rows, partial, f = rows[ok], partial[:, ok], f[ok]
            if len(rows) == 0:
                break
        return rows


_BOUNDS: dict[int, tuple[Any, _TreeBound | None]] = {}


def _tree_bound(predictor: Any) -> _TreeBound | None:
    """The bound of a predictor whose model is a gradient-boosted tree ensemble, or a
    non-negatively weighted ensemble of them, without a prior, of an intensive property (None for
    any other)."""
    from defectspace.predict import PropertyPredictor
    from defectspace.predict.regressors import EnsembleRegressor, GBMRegressor

    cached = _BOUNDS.get(id(predictor))
    if cached is not None and cached[0] is predictor:
        return cached[1]
    bound: _TreeBound | None = None
    model = getattr(predictor, "model", None)
    if type(predictor) is PropertyPredictor and predictor.prior is None and not predictor.extensive:
        if type(model) is GBMRegressor:
            bound = _TreeBound(predictor, [model], [None], np.ones(1))
        elif (type(model) is EnsembleRegressor and model.members_
              and all(type(m) is GBMRegressor for m in model.members_)
              and np.all(np.asarray(model.weights_) >= 0)):
            bound = _TreeBound(predictor, list(model.members_), list(model.columns_),
                               np.asarray(model.weights_, dtype=np.float64))
    _BOUNDS[id(predictor)] = (predictor, bound)
    return bound


_SCORERS: dict[tuple[Any, ...], ModelScorer] = {}


def default_scorer(model: str | None, predictors: str | None, lattice: Lattice,
                   n_threads: int = 0) -> ModelScorer:
    """The (shipped) property predictors and, for ``embed``, the (shipped) embedder, with
    ``n_threads`` threads of the core and of torch (cached per process: a worker loads them once)."""
    from defectspace.predict import load_predictors

    key = (model, predictors, json.dumps(lattice.describe(), sort_keys=True), n_threads)
    if key not in _SCORERS:
        _SCORERS[key] = ModelScorer(load_predictors(predictors, lattice), lattice, model, n_threads)
    return _SCORERS[key]


def check_ranges(cfg: ScreenConfig, names: Sequence[str]) -> None:
    """ValueError for a range on a column that the predictors do not give."""
    for name, _, _ in cfg.ranges:
        if name not in names:
            raise ValueError(f"range on {name!r}, but the predictors give {sorted(names)}")


# ----------------------------------------------------------------------------- tasks
def _lattice(desc: Mapping[str, Any]) -> Lattice:
    return _cached_lattice(json.dumps(desc, sort_keys=True))


_LATTICES: dict[str, Lattice] = {}


def _cached_lattice(key: str) -> Lattice:
    if key not in _LATTICES:
        _LATTICES[key] = Lattice.from_description(json.loads(key))
    return _LATTICES[key]


def _chunk_seed(seed: int, chunk: int, part: int) -> int:
    state = np.random.SeedSequence(entropy=seed, spawn_key=(chunk, part)).generate_state(1, dtype=np.uint64)
    return int(state[0])


def _keys_array(keys: NDArray[np.uint8]) -> Any:
    import pyarrow as pa

    n, width = keys.shape
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n,
                                                [None, pa.py_buffer(np.ascontiguousarray(keys).tobytes())])


def _keys_from_column(column: Any, width: int) -> NDArray[np.uint8]:
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if len(arr) == 0:
        return np.zeros((0, width), np.uint8)
    data = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    start = arr.offset * width
    return data[start:start + len(arr) * width].reshape(len(arr), width)


def partition_of(keys: NDArray[np.uint8], n_partitions: int) -> NDArray[np.int64]:
    """Partition of each key: a hash of its bytes, so equal keys share a partition."""
    if keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    words = keys.shape[1] // 8
    h = np.full(keys.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        if words:
            w = np.ascontiguousarray(keys[:, : words * 8]).view(np.uint64)
            for j in range(words):
                h = (h ^ w[:, j]) * prime
        for j in range(words * 8, keys.shape[1]):
            h = (h ^ keys[:, j].astype(np.uint64)) * prime
        h ^= h >> np.uint64(29)
    return (h % np.uint64(n_partitions)).astype(np.int64)


def _chunk_file(chunk: int) -> str:
    return f"keys/c{chunk:06d}.arrow"


def _partition_file(part: int) -> str:
    return f"out/p{part:05d}.arrow"


def run_chunk(cfg_json: str, work: str, chunk: int, n_threads: int = 0,
              placements: NDArray[np.uint8] | None = None,
              ids: Sequence[str] | None = None) -> dict[str, float]:
    """Phase 1 for one chunk: canonicalize and write its keys, one record batch per partition,
    with ``n_threads`` threads of the core (0: all cores). Returns stage times."""
    import pyarrow as pa

    cfg = ScreenConfig(**_from_json(cfg_json))
    folder = _folder(work)
    name = _chunk_file(chunk)
    if folder.ready(name):
        return {}
    lat = _lattice(cfg.lattice)
    canon = Canonicalizer(lat, cfg.subgroup, n_threads)
    times: dict[str, float] = {}
    cpu = time.thread_time()
    t = time.perf_counter()
    if placements is None:
        placements = _generate(cfg, canon, chunk)
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    ko = canon.keys_and_orbits(placements)
    times["canonicalize"] = time.perf_counter() - t
    t = time.perf_counter()
    part = partition_of(ko.keys, cfg.n_partitions)
    order = np.argsort(part, kind="stable")  # rows of a partition stay in input order
    bounds = np.searchsorted(part[order], np.arange(cfg.n_partitions + 1))
    keys, orbit = ko.keys[order], ko.orbit_size[order]
    id_array = np.asarray(ids, dtype=object)[order] if ids is not None else None
    fields = [("key", pa.binary(canon.key_bytes)), ("orbit_size", pa.from_numpy_dtype(orbit.dtype)),
              ("row", pa.int64())] + ([("id", pa.string())] if ids is not None else [])
    schema = pa.schema(fields)
    with folder.write(name) as fh, pa.ipc.new_file(fh, schema) as writer:
        for p in range(cfg.n_partitions):
            s = slice(int(bounds[p]), int(bounds[p + 1]))
            cols = [_keys_array(keys[s]), pa.array(orbit[s]), pa.array(order[s].astype(np.int64))]
            if id_array is not None:
                cols.append(pa.array(id_array[s].tolist(), type=pa.string()))
            writer.write_batch(pa.record_batch(cols, schema=schema))
    times["write keys"] = time.perf_counter() - t
    times[TASK_CPU] = time.thread_time() - cpu
    return times


def _generate(cfg: ScreenConfig, canon: Canonicalizer, chunk: int) -> NDArray[np.uint8]:
    n_chunks = _n_chunks(cfg)
    if cfg.source == "random":
        start = chunk * cfg.chunk_size
        size = min(cfg.chunk_size, cfg.n - start)
        comps = cfg.compositions
        # rows split as evenly as possible among the compositions, in a fixed order
        sizes = [size // len(comps) + (1 if i < size % len(comps) else 0) for i in range(len(comps))]
        parts = [canon.sample(list(c), s, _chunk_seed(cfg.seed, chunk, i))
                 for i, (c, s) in enumerate(zip(comps, sizes, strict=True))]
        return np.concatenate(parts) if parts else np.zeros((0, canon.lattice.n_sites), np.uint8)
    if cfg.source == "exhaustive":
        states = _enumerated(cfg)
        return states[chunk * cfg.chunk_size:(chunk + 1) * cfg.chunk_size]
    raise ValueError(f"chunk {chunk}/{n_chunks}: placements of a file source are passed in")


_ENUMERATED: dict[str, NDArray[np.uint8]] = {}


def _enumerated(cfg: ScreenConfig) -> NDArray[np.uint8]:
    key = json.dumps([cfg.lattice, cfg.compositions, cfg.subgroup], sort_keys=True)
    if key not in _ENUMERATED:
        canon = Canonicalizer(_lattice(cfg.lattice), cfg.subgroup)
        parts = [canon.enumerate(list(c)).canonical for c in cfg.compositions]
        _ENUMERATED[key] = np.concatenate(parts) if parts else np.zeros((0, canon.lattice.n_sites), np.uint8)
    return _ENUMERATED[key]


def _n_chunks(cfg: ScreenConfig, n_rows: int | None = None) -> int:
    total = {"random": cfg.n}.get(cfg.source, n_rows if n_rows is not None else 0)
    return max(1, -(-total // cfg.chunk_size)) if total else 0


@dataclass
class _Classes:
    """The distinct classes of one partition, in first-occurrence order."""

    keys: NDArray[np.uint8]
    counts: NDArray[np.int64]
    chunk: NDArray[np.int64]
    row: NDArray[np.int64]
    orbit: NDArray[np.int64]
    ids: list[str] | None


@contextmanager
def _reading(folder: Folder, name: str) -> Iterator[Any]:
    """``folder.open_arrow(name)``; a file that cannot be read (deleted or damaged after it was
    checked) is a ValueError naming it and the remedy, not pyarrow's OSError."""
    import pyarrow as pa

    try:
        with folder.open_arrow(name) as source:
            yield source
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"work file {folder.path(name)} cannot be read ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}); it changed after it was checked: rerun the "
                         f"same command, which checks every work file and computes a damaged one "
                         f"again") from None


def _dedupe_partition(folder: Folder, part: int, n_chunks: int, key_bytes: int) -> _Classes:
    import pyarrow as pa

    from defectspace import _core

    store = _core.KeySet(key_bytes)
    keys: list[NDArray[np.uint8]] = []
    chunks: list[NDArray[np.int64]] = []
    rows: list[NDArray[np.int64]] = []
    orbits: list[NDArray[np.int64]] = []
    ids: list[str] = []
    has_ids = False
    for chunk in range(n_chunks):
        with _reading(folder, _chunk_file(chunk)) as source:
            batch = pa.ipc.open_file(source).get_batch(part)
            if batch.num_rows == 0:
                continue
            k = _keys_from_column(batch.column(0), key_bytes)
            _, is_new = store.insert(k)
            new = np.flatnonzero(is_new)
            keys.append(k[new].copy())
            chunks.append(np.full(len(new), chunk, dtype=np.int64))
            rows.append(batch.column(2).to_numpy()[new])
            orbits.append(batch.column(1).to_numpy()[new])
            if batch.num_columns > 3:
                has_ids = True
                ids.extend(np.asarray(batch.column(3).to_pylist(), dtype=object)[new].tolist())
    return _Classes(np.concatenate(keys) if keys else np.zeros((0, key_bytes), np.uint8),
                    np.asarray(store.counts(), dtype=np.int64),
                    np.concatenate(chunks) if chunks else np.zeros(0, np.int64),
                    np.concatenate(rows) if rows else np.zeros(0, np.int64),
                    np.concatenate(orbits) if orbits else np.zeros(0, np.int64),
                    ids if has_ids else None)


def run_partition(cfg_json: str, work: str, part: int, n_chunks: int, n_threads: int = 0,
                  scorer: Scorer | None = None) -> dict[str, Any]:
    """Phase 2 for one partition: dedupe; decode and predict the filtered properties in batches;
    filter; predict the other properties (and embed, for ``cfg.embed``) for the kept classes only;
    write. ``n_threads``: threads of the core and of torch (0: all cores). Returns stage times."""
    import pyarrow as pa

    cfg = ScreenConfig(**_from_json(cfg_json))
    folder = _folder(work)
    out_name = _partition_file(part)
    redone: list[str] = []
    if folder.ready(out_name, redone):
        with _reading(folder, out_name) as source:
            meta = pa.ipc.open_file(source).schema.metadata or {}
        return {"times": {}, "distinct": int(meta.get(b"distinct", b"0")), "redone": [],
                "domain": json.loads(meta.get(b"domain", b"{}"))}
    lat = _lattice(cfg.lattice)
    _worker_blas_threads(n_threads)
    canon = Canonicalizer(lat, cfg.subgroup, n_threads)
    score = scorer if scorer is not None else default_scorer(cfg.model, cfg.predictors, lat, n_threads)
    check_ranges(cfg, score.names)
    times = {"read + dedupe": 0.0, "decode": 0.0, "predict": 0.0, "embed": 0.0, "format + write": 0.0}
    cpu = time.thread_time()
    t = time.perf_counter()
    cls = _dedupe_partition(folder, part, n_chunks, canon.key_bytes)
    times["read + dedupe"] = time.perf_counter() - t
    distinct = len(cls.keys)

    # decode and predict what the filter needs, batch by batch; keep the placements that pass
    filter_names = list(dict.fromkeys(name for name, _, _ in cfg.ranges))
    keep = np.ones(distinct, dtype=bool)
    kept_states: list[NDArray[np.uint8]] = []
    columns: dict[str, list[NDArray[Any]]] = {name: [] for name in score.names}
    for start in range(0, distinct, SCORE_BATCH):
        t = time.perf_counter()
        states = canon.from_keys(cls.keys[start:start + SCORE_BATCH])
        times["decode"] += time.perf_counter() - t
        if filter_names:
            t = time.perf_counter()
            select = getattr(score, "select", None)
            if select is not None:
                ok, values = select(states, cfg.ranges)
            else:
                values = score.predict(states, filter_names)
                ok = np.ones(len(states), dtype=bool)
                for name, lo, hi in cfg.ranges:
                    v = values[name]
                    ok &= (v >= lo) & (v <= hi)
                values = {name: np.asarray(values[name])[ok] for name in filter_names}
            keep[start:start + len(states)] = ok
            for name in filter_names:
                columns[name].append(np.asarray(values[name]))
            states = states[ok]
            times["predict"] += time.perf_counter() - t
        kept_states.append(states)
    kept = np.concatenate(kept_states) if kept_states else np.zeros((0, lat.n_sites), np.uint8)

    # the other properties, the domain flags and the embeddings, for the kept classes only
    others = [name for name in score.names if name not in filter_names]
    embeddings: list[NDArray[np.float32]] = []
    domain_flags = getattr(score, "domain_flags", None)
    flags: dict[str, list[NDArray[np.uint8]]] = {}
    for start in range(0, len(kept), SCORE_BATCH):
        states = kept[start:start + SCORE_BATCH]
        if domain_flags is not None:
            t = time.perf_counter()
            for name, f in domain_flags(states).items():
                flags.setdefault(name, []).append(f)
            times["predict"] += time.perf_counter() - t
        if others:
            t = time.perf_counter()
            values = score.predict(states, others)
            for name in others:
                columns[name].append(np.asarray(values[name]))
            times["predict"] += time.perf_counter() - t
        if cfg.embed:
            t = time.perf_counter()
            embeddings.append(score.embed(states))
            times["embed"] += time.perf_counter() - t

    t = time.perf_counter()
    sel = np.flatnonzero(keep)
    if cls.ids is not None:
        ids = np.asarray(cls.ids, dtype=object)[sel].tolist()
    else:
        ids = [f"c{c}-r{r}" for c, r in zip(cls.chunk[sel].tolist(), cls.row[sel].tolist(), strict=True)]
    out: dict[str, Any] = {
        "id": pa.array(ids, type=pa.string()),
        "defects": pa.array(format_2dmd(kept, lat), type=pa.string()),
        "canonical_key": pa.array(key_to_string(cls.keys[sel]), type=pa.string()),
        "orbit_size": pa.array(cls.orbit[sel]),
        "count": pa.array(cls.counts[sel]),
        "first_chunk": pa.array(cls.chunk[sel]),
        "first_row": pa.array(cls.row[sel]),
    }
    domain_counts: dict[str, list[int]] = {}
    for name in score.names:
        parts = columns[name]
        out[name] = pa.array(np.concatenate(parts) if parts else np.zeros(0, np.float64))
    if domain_flags is not None:
        for name in getattr(score, "domains", {}):
            f = np.concatenate(flags[name]) if name in flags else np.zeros(0, np.uint8)
            out[f"{name}_out_of_domain"] = pa.array(f > 0)
            c = flag_counts(f)
            domain_counts[name] = [c.total, c.outside, *c.by_reason]
    if cfg.embed:
        emb = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
        dim = emb.shape[1] if len(emb) else _embedding_dim(score, lat)
        for j in range(dim):
            out[f"emb_{j}"] = pa.array(emb[:, j] if len(emb) else np.zeros(0, np.float32))
    table = pa.table(out).replace_schema_metadata({"distinct": str(distinct),
                                                   "domain": json.dumps(domain_counts)})
    with folder.write(out_name) as fh, pa.ipc.new_file(fh, table.schema) as writer:
        writer.write_table(table)
    times["format + write"] = time.perf_counter() - t
    times[TASK_CPU] = time.thread_time() - cpu
    return {"times": times, "distinct": distinct, "redone": redone, "domain": domain_counts}


def _embedding_dim(score: Scorer, lattice: Lattice) -> int:
    """The embedding width, for a partition that kept nothing (its columns still exist)."""
    return int(score.embed(np.zeros((1, lattice.n_sites), np.uint8)).shape[1])


def _from_json(text: str) -> dict[str, Any]:
    d = json.loads(text)
    d["compositions"] = tuple(tuple(c) for c in d["compositions"])
    d["ranges"] = tuple(tuple(r) for r in d["ranges"])
    return dict(d)


# ----------------------------------------------------------------------------- driver
def local_cluster_config() -> dict[str, Any]:
    """Dask settings of ``--scheduler local`` (an existing cluster keeps its own)."""
    return {
        # workers forked from this process start in ~1 s instead of ~13 s (a fresh interpreter
        # each, importing distributed and defectspace, on the loaded 2-core machine); spawned where
        # fork is unsafe (macOS) or where torch's thread pools may already run in this process
        "distributed.worker.multiprocessing-method":
            "fork" if sys.platform == "linux" and "torch" not in sys.modules else "spawn",
        # the statistical profiler samples every worker thread's stack 100 times a second
        "distributed.worker.profile.enabled": False,
        # the event loops' health check (every 20 ms), the memory monitor (every 100 ms) and the
        # system monitor (every 500 ms) in the scheduler and in every worker and nanny: polls that
        # cost CPU seconds a one-process run does not pay
        "distributed.admin.tick.interval": "1s",
        "distributed.worker.memory.monitor-interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
    }


def _import_for_forked_workers() -> None:
    """Imports here, once, what every task would import in its own worker: workers forked after it
    share the modules. pyarrow's first ``pa.array`` imports pandas (its pandas shim), 0.3 to 0.5 CPU
    seconds that each worker paid in its first task."""
    import pyarrow as pa

    pa.array([0])


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Runner:
    """Runs tasks on the threads of this process or on Dask workers.

    Each task runs the core and torch on one thread: a Dask worker runs one task per worker thread,
    and this process runs ``n_workers`` tasks at once (default: one per usable core), so the
    machine's cores are shared out, never oversubscribed.
    """

    def __init__(self, scheduler: str | None, n_workers: int = 0) -> None:
        self.client: Any = None
        self.cluster: Any = None
        self.task_threads = 1
        """Threads of the core and of torch per task."""
        self.workers = n_workers if n_workers > 0 else usable_cores()
        """Tasks run at once."""
        if scheduler in (None, "none", "local-process"):
            return
        from dask.distributed import Client, LocalCluster

        if scheduler == "local":
            import dask

            config = local_cluster_config()
            if config["distributed.worker.multiprocessing-method"] == "fork":
                _import_for_forked_workers()
            with dask.config.set(config):
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler)
        self.workers = max(1, sum(self.client.nthreads().values()))

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], desc: str,
            unit: str = "task") -> Iterator[Any]:
        """``fn(*a)`` for each ``a``, results in completion order; the first failure cancels the
        tasks not started and is raised once the running ones have finished."""
        from tqdm import tqdm

        bar = tqdm(total=len(args), desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                   disable=not sys.stderr.isatty() and os.environ.get("DEFECTSPACE_PROGRESS") != "1")
        try:
            if self.client is not None:
                from dask.distributed import as_completed

                futures = [self.client.submit(fn, *a, pure=False) for a in args]
                try:
                    for fut in as_completed(futures):
                        yield fut.result()
                        bar.update()
                finally:
                    for fut in futures:
                        fut.cancel()
            elif self.workers == 1 or len(args) <= 1:
                for a in args:
                    yield fn(*a)
                    bar.update()
            else:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="defectspace-screen") as pool:
                    pending: set[Future[Any]] = {pool.submit(fn, *a) for a in args}
                    try:
                        while pending:
                            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                            for fut in done:
                                yield fut.result()
                                bar.update()
                    finally:
                        for fut in pending:
                            fut.cancel()
        finally:
            bar.close()

    def worker_peak_rss_mib(self) -> float:
        """Largest peak resident memory among the Dask workers (0 without Dask)."""
        if self.client is None:
            return 0.0
        peaks = self.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return float(max(peaks.values(), default=0.0))

    def worker_cpu_seconds(self) -> tuple[float, ...]:
        """CPU seconds of each Dask worker process, largest first (empty without Dask)."""
        if self.client is None:
            return ()

        def cpu() -> float:
            r = resource.getrusage(resource.RUSAGE_SELF)
            return float(r.ru_utime + r.ru_stime)

        return tuple(sorted(self.client.run(cpu).values(), reverse=True))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


_WORKER_BLAS: list[int] = []


def _worker_blas_threads(n: int) -> None:
    """In a Dask worker, BLAS limited to the task's ``n`` threads for good (once per process)."""
    if n <= 0 or _WORKER_BLAS or "distributed" not in sys.modules:
        return
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:  # not in a worker: screen() limits BLAS for the run
        return
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")
    _WORKER_BLAS.append(n)


@contextmanager
def _torch_threads(n: int, load: bool) -> Iterator[None]:
    """torch's threads set to ``n`` for the run (and restored after) when this process embeds
    (``load``) or has torch loaded anyway: tasks on several threads then never race to set it."""
    if not load and "torch" not in sys.modules:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def screen(cfg: ScreenConfig, output: str | Path, *, scheduler: str | None = None, n_workers: int = 0,
           work_dir: str | Path | None = None, keep_work: bool = False,
           scorer: Scorer | None = None, table: PlacementTable | None = None) -> ScreenSummary:
    """Runs (or resumes) a screening run and writes the kept classes to ``output`` (Parquet).

    Args:
        cfg: what to screen.
        output: the Parquet file to write: a path or an fsspec URL.
        scheduler: None (threads of this process), ``"local"`` (a Dask LocalCluster of
            ``n_workers`` single-thread processes) or a Dask scheduler address.
        n_workers: tasks at once in this process, or LocalCluster workers (0: one per core).
        work_dir: where the resumable intermediate files go, a path or an fsspec URL that the
            workers can reach (default: ``OUTPUT.work``).
        keep_work: keep the work folder after success.
        scorer: replaces the default predictors + embedder (tests, custom models).
        table: for a file source, the already-read :class:`defectspace.io.PlacementTable`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    out_url = str(output)
    work_url = str(work_dir) if work_dir is not None else out_url + ".work"
    work = _folder(work_url)
    out_folder, out_name = _parent_and_name(out_url)
    if scheduler not in (None, "none", "local-process") and work.protocol == "memory":
        raise ValueError(f"the work folder {work_url} lives in this process's memory; Dask workers "
                         "cannot reach it (give a shared path or an object-store URL)")
    probe = scorer if scorer is not None else default_scorer(cfg.model, cfg.predictors, _lattice(cfg.lattice))
    check_ranges(cfg, probe.names)
    domains: Mapping[str, TrainingDomain] = getattr(probe, "domains", {})
    cfg_json = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    stamp = {"format": WORK_FORMAT, "fingerprint": cfg.fingerprint()}
    redone: list[str] = []
    if work.exists("config.json") and work.problem("config.json") not in (None, "unfinished (no checksum)"):
        raise ValueError(f"{work.path('config.json')} is {work.problem('config.json')}: the work "
                         f"folder cannot be trusted; remove {work_url} and rerun")
    if work.exists("config.json"):
        try:
            old = json.loads(work.read_bytes("config.json"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{work.path('config.json')} is not valid JSON ({exc}); remove "
                             f"{work_url} and rerun") from None
        if not isinstance(old, dict):
            old = {}
        if old.get("format") != WORK_FORMAT or old.get("fingerprint") != stamp["fingerprint"]:
            raise ValueError(f"{work_url} holds a run with other arguments or input; remove it or choose "
                             f"another output")
    else:
        with work.write("config.json") as fh:
            fh.write(json.dumps({**stamp, "config": json.loads(cfg_json)}, indent=1).encode())
    times = StageTimes()
    phases: dict[str, float] = {}
    runner = Runner(scheduler, n_workers)
    skipped = 0
    try:
        with _torch_threads(runner.task_threads, load=cfg.embed and runner.client is None), \
                blas_threads(runner.task_threads if runner.client is None else 0):
            t = time.perf_counter()
            if cfg.source == "file":
                if table is None:
                    from defectspace.io import read_placements, report_errors

                    on_error: OnError = "skip" if cfg.on_error == "skip" else "fail"
                    table = read_placements(cfg.input_path or "", _lattice(cfg.lattice), on_error)
                    report_errors(table)
                skipped = len(table.errors)
                n_rows = len(table.ids)
                n_chunks = _n_chunks(cfg, n_rows)
                args: list[tuple[Any, ...]] = [
                    (cfg_json, work_url, c, runner.task_threads,
                     table.states[c * cfg.chunk_size:(c + 1) * cfg.chunk_size],
                     table.ids[c * cfg.chunk_size:(c + 1) * cfg.chunk_size]) for c in range(n_chunks)]
            else:
                if cfg.source == "exhaustive":
                    n_rows = len(_enumerated(cfg))
                    n_chunks = _n_chunks(cfg, n_rows)
                else:
                    n_rows, n_chunks = cfg.n, _n_chunks(cfg)
                args = [(cfg_json, work_url, c, runner.task_threads) for c in range(n_chunks)]
            generated = n_rows
            todo = [a for a in args if not work.ready(_chunk_file(a[2]), redone)]
            for result in runner.map(run_chunk, todo, "canonicalize", "chunk"):
                times.add(result)
            phases["chunks"] = time.perf_counter() - t
            t = time.perf_counter()
            distinct = 0
            outside = {name: FlagCounts(0, 0, (0, 0, 0)) for name in domains}
            part_args = [(cfg_json, work_url, p, n_chunks, runner.task_threads)
                         + ((scorer,) if scorer else ()) for p in range(cfg.n_partitions)]
            for result in runner.map(run_partition, part_args, "predict + filter", "partition"):
                times.add(result["times"])
                distinct += result["distinct"]
                redone.extend(result.get("redone", []))
                for name, (n, n_out, *why) in result.get("domain", {}).items():
                    if name in outside:
                        outside[name] += FlagCounts(n, n_out, (why[0], why[1], why[2]))
            phases["partitions"] = time.perf_counter() - t
        worker_peak = runner.worker_peak_rss_mib()
        worker_cpu = runner.worker_cpu_seconds()
    finally:
        runner.close()
    t = time.perf_counter()
    kept = 0
    with out_folder.write(out_name) as fh:
        writer = None
        try:
            for p in range(cfg.n_partitions):
                with _reading(work, _partition_file(p)) as source:
                    part_table = pa.ipc.open_file(source).read_all().replace_schema_metadata(None)
                if writer is None:
                    writer = pq.ParquetWriter(fh, part_table.schema)
                writer.write_table(part_table)
                kept += part_table.num_rows
        finally:
            if writer is not None:
                writer.close()
    phases["merge"] = time.perf_counter() - t
    times.add({"merge output": phases["merge"]})
    if not keep_work:
        work.remove()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warnings = tuple(w for name, d in domains.items()
                     if (w := d.describe_counts(outside[name], name, "kept classes")) is not None)
    return ScreenSummary(generated, skipped, distinct, kept, time.perf_counter() - t0, times.seconds,
                         peak, out_url, worker_peak, runner.task_threads, runner.workers, phases,
                         tuple(redone), worker_cpu, warnings)


def format_summary(s: ScreenSummary) -> str:
    """A short human-readable report of a run: wall time per phase, task time per stage."""
    where = "Dask worker thread(s)" if s.worker_peak_rss_mib else "thread(s) of this process"
    lines = [f"screened {s.generated:,} placements ({s.skipped} skipped): {s.distinct:,} distinct, "
             f"{s.kept:,} kept -> {s.output}",
             f"wall {s.wall_seconds:.1f} s on {s.workers} {where}, peak memory {s.peak_rss_mib:.0f} MiB "
             "(this process)"
             + (f", {s.worker_peak_rss_mib:.0f} MiB (largest Dask worker)" if s.worker_peak_rss_mib else "")]
    for item in s.redone:
        lines.append(f"  computed again, damaged work file {item}")
    if s.worker_cpu_seconds:
        lines.append("  CPU seconds per Dask worker: " + ", ".join(f"{v:.1f}" for v in s.worker_cpu_seconds))
    if s.phase_seconds:
        lines.append("  wall per phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in s.phase_seconds.items()))
    lines.append("  task seconds per stage (summed over workers):")
    for k, v in s.stage_seconds.items():
        lines.append(f"    {k:<16} {v:8.2f} s")
    return "\n".join(lines)
