"""High-throughput screening: generate, canonicalize, dedupe, embed, predict, filter, write Parquet.

The run has two resumable phases, each a set of independent tasks that run in this process or on
a Dask cluster:

1. *chunks*: each chunk of placements (drawn, enumerated or read) is canonicalized and its keys
   are written, split into ``n_partitions`` files by a hash of the key
   (``WORK/keys/p<part>/c<chunk>.parquet``);
2. *partitions*: each partition gathers its keys from every chunk, keeps the first occurrence of
   every class in (chunk, row) order with its count, decodes the canonical placements from the
   keys, embeds them, predicts their properties, keeps those inside the wanted ranges and writes
   ``WORK/out/p<part>.parquet``.

Dedupe is exact across chunks and workers because equal keys always land in the same partition.
Every file is written atomically, so a killed run restarted with the same arguments skips what is
done and produces byte-identical results. The partitions are then concatenated into the output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from defectspace.canonical import Canonicalizer, key_to_string
from defectspace.io import OnError, PlacementTable, atomic_path, write_text_atomic
from defectspace.lattice import Lattice
from defectspace.placement import format_2dmd

WORK_FORMAT = 1
"""Version of the work-directory layout; a mismatch refuses to resume."""

Scorer = Callable[[NDArray[np.uint8]], dict[str, NDArray[Any]]]
"""Maps canonical placements (n, n_sites) to named columns: embeddings and predictions."""


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
    """Seconds spent per stage, summed over tasks (so over workers too)."""

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
    peak_rss_mib: float
    """Peak resident memory of this process."""
    output: str
    worker_peak_rss_mib: float = 0.0
    """Largest peak resident memory of a Dask worker (0 without Dask)."""
    threads_per_task: int = 0
    """Threads each task gave the core and torch (0: all cores, in this process)."""


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
    arr = column.combine_chunks()
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


def _atomic_write_table(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _chunk_done(work: Path, chunk: int) -> bool:
    return (work / "keys" / f"done-c{chunk:06d}").exists()


def run_chunk(cfg_json: str, work: str, chunk: int, n_threads: int = 0,
              placements: NDArray[np.uint8] | None = None,
              ids: Sequence[str] | None = None) -> dict[str, float]:
    """Phase 1 for one chunk: canonicalize and write its keys per partition, with ``n_threads``
    threads of the core (0: all cores). Returns stage times."""
    import pyarrow as pa

    cfg = ScreenConfig(**_from_json(cfg_json))
    work_dir = Path(work)
    if _chunk_done(work_dir, chunk):
        return {}
    lat = _lattice(cfg.lattice)
    canon = Canonicalizer(lat, cfg.subgroup, n_threads)
    times: dict[str, float] = {}
    t = time.perf_counter()
    if placements is None:
        placements = _generate(cfg, canon, chunk)
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    ko = canon.keys_and_orbits(placements)
    keys, orbit = ko.keys, ko.orbit_size
    times["canonicalize"] = time.perf_counter() - t
    t = time.perf_counter()
    part = partition_of(keys, cfg.n_partitions)
    rows = np.arange(len(keys), dtype=np.int64)
    id_array = np.asarray(ids if ids is not None else [], dtype=object)
    for p in range(cfg.n_partitions):
        sel = np.flatnonzero(part == p)
        cols: dict[str, Any] = {
            "key": _keys_array(keys[sel]),
            "orbit_size": pa.array(orbit[sel]),
            "row": pa.array(rows[sel]),
        }
        if ids is not None:
            cols["id"] = pa.array(id_array[sel].tolist(), type=pa.string())
        _atomic_write_table(pa.table(cols), work_dir / "keys" / f"p{p:03d}" / f"c{chunk:06d}.parquet")
    (work_dir / "keys" / f"done-c{chunk:06d}").touch()
    times["write keys"] = time.perf_counter() - t
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


def run_partition(cfg_json: str, work: str, part: int, n_chunks: int, n_threads: int = 0,
                  scorer: Scorer | None = None) -> dict[str, Any]:
    """Phase 2 for one partition: dedupe, embed, predict, filter, write, with ``n_threads`` threads
    of the core and of torch (0: all cores). Returns stage times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from defectspace import _core

    cfg = ScreenConfig(**_from_json(cfg_json))
    work_dir = Path(work)
    out_path = work_dir / "out" / f"p{part:03d}.parquet"
    if out_path.exists():
        meta = pq.read_metadata(out_path).metadata or {}
        return {"times": {}, "distinct": int(meta.get(b"distinct", b"0"))}
    lat = _lattice(cfg.lattice)
    canon = Canonicalizer(lat, cfg.subgroup, n_threads)
    times: dict[str, float] = {}
    t = time.perf_counter()
    store = _core.KeySet(canon.key_bytes)
    first_chunk: list[NDArray[np.int64]] = []
    first_row: list[NDArray[np.int64]] = []
    first_id: list[Any] = []
    orbits: list[NDArray[np.int64]] = []
    key_rows: list[NDArray[np.uint8]] = []
    for chunk in range(n_chunks):
        path = work_dir / "keys" / f"p{part:03d}" / f"c{chunk:06d}.parquet"
        table = pq.read_table(path)
        if table.num_rows == 0:
            continue
        keys = _keys_from_column(table.column("key"), canon.key_bytes)
        _, is_new = store.insert(keys)
        new = np.flatnonzero(is_new)
        key_rows.append(keys[new])
        first_chunk.append(np.full(len(new), chunk, dtype=np.int64))
        first_row.append(table.column("row").to_numpy()[new])
        orbits.append(table.column("orbit_size").to_numpy()[new])
        if "id" in table.column_names:
            first_id.extend(np.asarray(table.column("id").to_pylist(), dtype=object)[new].tolist())
    counts = store.counts()
    keys_all = np.concatenate(key_rows) if key_rows else np.zeros((0, canon.key_bytes), np.uint8)
    chunks_all = np.concatenate(first_chunk) if first_chunk else np.zeros(0, np.int64)
    rows_all = np.concatenate(first_row) if first_row else np.zeros(0, np.int64)
    orbit_all = np.concatenate(orbits) if orbits else np.zeros(0, np.int64)
    times["dedupe"] = time.perf_counter() - t
    distinct = len(keys_all)
    t = time.perf_counter()
    states = canon.from_keys(keys_all) if distinct else np.zeros((0, lat.n_sites), np.uint8)
    score = scorer if scorer is not None else default_scorer(cfg.model, cfg.predictors, lat, n_threads)
    columns = _score_in_batches(score, states)
    times["embed + predict"] = time.perf_counter() - t
    t = time.perf_counter()
    keep = np.ones(distinct, dtype=bool)
    for name, lo, hi in cfg.ranges:
        if name not in columns:
            raise ValueError(f"range on {name!r}, but the predictors give {sorted(columns)}")
        v = np.asarray(columns[name])
        keep &= (v >= lo) & (v <= hi)
    sel = np.flatnonzero(keep)
    if first_id:
        ids = np.asarray(first_id, dtype=object)[sel].tolist()
    else:
        ids = [f"c{c}-r{r}" for c, r in zip(chunks_all[sel].tolist(), rows_all[sel].tolist(), strict=True)]
    out: dict[str, Any] = {
        "id": pa.array(ids, type=pa.string()),
        "defects": pa.array(format_2dmd(states[sel], lat), type=pa.string()),
        "canonical_key": pa.array(key_to_string(keys_all[sel]), type=pa.string()),
        "orbit_size": pa.array(orbit_all[sel]),
        "count": pa.array(counts[sel]),
        "first_chunk": pa.array(chunks_all[sel]),
        "first_row": pa.array(rows_all[sel]),
    }
    for name, values in columns.items():
        arr = np.asarray(values)[sel]
        if arr.ndim == 2:
            for j in range(arr.shape[1]):
                out[f"{name}_{j}"] = pa.array(arr[:, j])
        else:
            out[name] = pa.array(arr)
    table = pa.table(out).replace_schema_metadata({"distinct": str(distinct)})
    _atomic_write_table(table, out_path)
    times["filter + write"] = time.perf_counter() - t
    return {"times": times, "distinct": distinct}


PARTITION_ROWS = 65536
"""Placements per key partition chosen by the command line: the memory bound of phase 2."""

SCORE_BATCH = 16384
"""Rows scored at once: bounds the scorer's working memory (embedding grids, descriptor rows)."""


def _score_in_batches(score: Scorer, states: NDArray[np.uint8]) -> dict[str, NDArray[Any]]:
    if len(states) <= SCORE_BATCH:
        return score(states)
    parts = [score(states[i:i + SCORE_BATCH]) for i in range(0, len(states), SCORE_BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def default_scorer(model: str | None, predictors: str | None, lattice: Lattice,
                   n_threads: int = 0) -> Scorer:
    """Embeddings from the (shipped) embedder plus the (shipped) property predictors, with
    ``n_threads`` threads of torch and of the core (0: as many as they like)."""
    from defectspace.ml.embedder import Embedder
    from defectspace.ml.encoder import torch_threads
    from defectspace.predict import load_predictors

    embedder = Embedder.load(model)
    models = load_predictors(predictors, lattice)

    def score(states: NDArray[np.uint8]) -> dict[str, NDArray[Any]]:
        with torch_threads(n_threads):
            cols: dict[str, NDArray[Any]] = {"emb": embedder.embed(states)}
        for name, m in models.items():
            cols[name] = m.predict(states, n_threads=n_threads)
        return cols

    return score


def _from_json(text: str) -> dict[str, Any]:
    d = json.loads(text)
    d["compositions"] = tuple(tuple(c) for c in d["compositions"])
    d["ranges"] = tuple(tuple(r) for r in d["ranges"])
    return dict(d)


# ----------------------------------------------------------------------------- driver
class Runner:
    """Runs tasks in this process or on Dask, and knows how many threads each task may use."""

    def __init__(self, scheduler: str | None, n_workers: int = 2) -> None:
        self.client: Any = None
        self.cluster: Any = None
        self.task_threads = 0
        """Threads of the core and of torch per task: 0 (all cores) in this process, else the
        Dask workers' thread count (the smallest, on a cluster of several kinds)."""
        if scheduler in (None, "none", "local-process"):
            return
        from dask.distributed import Client, LocalCluster

        if scheduler == "local":
            self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler)
        self.task_threads = max(1, min(self.client.nthreads().values(), default=1))

    def map(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], desc: str,
            unit: str = "task") -> Iterator[Any]:
        from tqdm import tqdm

        bar = tqdm(total=len(args), desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                   disable=not sys.stderr.isatty() and os.environ.get("DEFECTSPACE_PROGRESS") != "1")
        try:
            if self.client is None:
                for a in args:
                    yield fn(*a)
                    bar.update()
            else:
                from dask.distributed import as_completed

                futures = [self.client.submit(fn, *a, pure=False) for a in args]
                for fut in as_completed(futures):
                    yield fut.result()
                    bar.update()
        finally:
            bar.close()

    def worker_peak_rss_mib(self) -> float:
        """Largest peak resident memory among the Dask workers (0 without Dask)."""
        if self.client is None:
            return 0.0
        peaks = self.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return float(max(peaks.values(), default=0.0))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def screen(cfg: ScreenConfig, output: str | Path, *, scheduler: str | None = None, n_workers: int = 2,
           work_dir: str | Path | None = None, keep_work: bool = False,
           scorer: Scorer | None = None, table: PlacementTable | None = None) -> ScreenSummary:
    """Runs (or resumes) a screening run and writes the kept classes to ``output`` (Parquet).

    Args:
        cfg: what to screen.
        output: the Parquet file to write.
        scheduler: None (this process), ``"local"`` (a Dask LocalCluster of ``n_workers``
            processes) or a Dask scheduler address.
        work_dir: where the resumable intermediate files go (default: ``OUTPUT.work``).
        keep_work: keep the work directory after success.
        scorer: replaces the default embedder + predictors (tests, custom models).
        table: for a file source, the already-read :class:`defectspace.io.PlacementTable`.
    """
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    out = Path(output)
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    cfg_json = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    stamp = {"format": WORK_FORMAT, "fingerprint": cfg.fingerprint()}
    stamp_path = work / "config.json"
    if stamp_path.exists():
        old = json.loads(stamp_path.read_text())
        if old.get("format") != WORK_FORMAT or old.get("fingerprint") != stamp["fingerprint"]:
            raise ValueError(f"{work} holds a run with other arguments or input; remove it or choose "
                             f"another output")
    else:
        write_text_atomic(stamp_path, json.dumps({**stamp, "config": json.loads(cfg_json)}, indent=1))
    times = StageTimes()
    runner = Runner(scheduler, n_workers)
    skipped = 0
    try:
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
                (cfg_json, str(work), c, runner.task_threads,
                 table.states[c * cfg.chunk_size:(c + 1) * cfg.chunk_size],
                 table.ids[c * cfg.chunk_size:(c + 1) * cfg.chunk_size]) for c in range(n_chunks)]
            generated = n_rows
        else:
            if cfg.source == "exhaustive":
                n_rows = len(_enumerated(cfg))
                n_chunks = _n_chunks(cfg, n_rows)
            else:
                n_rows, n_chunks = cfg.n, _n_chunks(cfg)
            args = [(cfg_json, str(work), c, runner.task_threads) for c in range(n_chunks)]
            generated = n_rows
        todo = [a for a in args if not _chunk_done(work, a[2])]
        for result in runner.map(run_chunk, todo, "canonicalize", "chunk"):
            times.add(result)
        distinct = 0
        part_args = [(cfg_json, str(work), p, n_chunks, runner.task_threads) + ((scorer,) if scorer else ())
                     for p in range(cfg.n_partitions)]
        for result in runner.map(run_partition, part_args, "embed + predict", "partition"):
            times.add(result["times"])
            distinct += result["distinct"]
        worker_peak = runner.worker_peak_rss_mib()
        task_threads = runner.task_threads
    finally:
        runner.close()
    t = time.perf_counter()
    kept = 0
    with atomic_path(out) as tmp:
        writer = None
        try:
            for p in range(cfg.n_partitions):
                part_table = pq.read_table(work / "out" / f"p{p:03d}.parquet").replace_schema_metadata(None)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, part_table.schema)
                writer.write_table(part_table)
                kept += part_table.num_rows
        finally:
            if writer is not None:
                writer.close()
    times.add({"merge output": time.perf_counter() - t})
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ScreenSummary(generated, skipped, distinct, kept, time.perf_counter() - t0, times.seconds,
                         peak, str(out), worker_peak, task_threads)


def format_summary(s: ScreenSummary) -> str:
    """A short human-readable report of a run."""
    lines = [f"screened {s.generated:,} placements ({s.skipped} skipped): {s.distinct:,} distinct, "
             f"{s.kept:,} kept -> {s.output}",
             f"wall {s.wall_seconds:.1f} s, peak memory {s.peak_rss_mib:.0f} MiB (this process)"
             + (f", {s.worker_peak_rss_mib:.0f} MiB (largest Dask worker)" if s.worker_peak_rss_mib else "")
             + (f"; {s.threads_per_task} thread(s) per task" if s.threads_per_task else "")]
    for k, v in s.stage_seconds.items():
        lines.append(f"  {k:<16} {v:8.2f} s")
    return "\n".join(lines)
