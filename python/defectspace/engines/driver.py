"""The resumable labelling run: engines (:mod:`defectspace.engines.sevenn`, ``chgnet``, ``xtb``)
label structures row by row into a CSV file beside a JSON sidecar.

* ``sevenn`` / ``chgnet``: single-point energy of the unrelaxed structure and from it the
  formation energy (total and per defect) with 2DMD's formula; chemical potentials and the
  pristine energy are computed with the same engine
  (:func:`defectspace.engines.references.engine_references`).
* ``xtb``: GFN1-xTB (tblite) Gamma-point HOMO-LUMO gap of the unrelaxed structure, 2D periodic
  (``pbc = (True, True, False)``).

Runs are resumable: rows already present in the output are skipped, a half-written last line
(left by a kill) is dropped, and a failing calculation is recorded with ``status=failed`` and its
reason instead of stopping the run. Every row is flushed and fsync'ed as soon as it is computed.

Placements and structures come from the core: a CSV's ``defects`` are parsed onto 2DMD's lattice
(:func:`defectspace.placement.parse_2dmd`), or onto another lattice given as ``lattice`` (e.g.
WSe2 8x8: every structure is then built from its placement, and E_pristine is that lattice's
pristine supercell); structures are 2DMD's unrelaxed CIFs (the tar found by
:mod:`defectspace.datasets`, extracted once into a cache folder), a folder of CIFs
(:func:`defectspace.structure.read_cif_bytes`, ids by :func:`defectspace.structure.structure_id`)
or, for a placement without a CIF, its unrelaxed structure
(:func:`defectspace.structure.placement_to_atoms`); the defects of a CIF without a placement come
from :func:`defectspace.structure.map_structure`.

The command line is ``defectspace label INPUT -o OUTPUT --engine sevenn`` (:mod:`defectspace.cli.engines`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from defectspace.datasets import UNRELAXED, find_2dmd
from defectspace.engines.base import Engine
from defectspace.engines.chgnet import CHGNetEngine
from defectspace.engines.references import References, formation_energy, mos2_2dmd
from defectspace.engines.sevenn import SevenNetEngine
from defectspace.engines.xtb import XTBEngine, find_openblas, loaded_blas
from defectspace.io import write_text_atomic
from defectspace.lattice import Lattice
from defectspace.placement import Defect, to_defects
from defectspace.structure import map_structure, placement_to_atoms, read_cif_bytes, structure_id

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
    """Extract ``tar_path`` into the cache (once; atomic rename of the folder) and return it."""
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


@functools.lru_cache(maxsize=8)
def _cif_index(folder: str) -> dict[str, str]:
    """Id (:func:`~defectspace.structure.structure_id`) -> path of every CIF under ``folder``."""
    index: dict[str, str] = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(".cif"):
                key = structure_id(f)
                if key in index:
                    raise ValueError(f"id {key!r} occurs twice under {folder}")
                index[key] = os.path.join(root, f)
    return index


def structures_for_ids(ids: Iterable[str], source: str | Path | None = None) -> dict[str, Atoms]:
    """Structures of the given 2DMD ids, keyed by id, in the order of ``ids``.

    ``source`` is a folder of CIF files (ids from the file names,
    :func:`~defectspace.structure.structure_id`) or ``None`` for 2DMD's unrelaxed CIFs, extracted
    once from ``mos2_unrelaxed.tar.xz`` (:func:`defectspace.datasets.find_2dmd`) into
    :func:`cache_dir`. Each structure gets ``pbc = (True, True, False)``.

    Raises:
        KeyError: naming the ids that have no CIF.
    """
    folder = Path(source) if source is not None else _extract_tar_once(find_2dmd(UNRELAXED))
    if not folder.is_dir():
        raise ValueError(f"structure source {folder} is not a directory")
    index = _cif_index(str(folder.resolve()))
    ids = list(ids)
    missing = [i for i in ids if i not in index]
    if missing:
        raise KeyError(f"{len(missing)} ids have no CIF under {folder}: {missing[:5]}")
    return {i: read_cif_bytes(Path(index[i]).read_bytes(), index[i]) for i in ids}


def _structures_or_built(ids: Sequence[str], source: str | Path | None,
                         rows: InputRows) -> dict[str, Atoms]:
    """2DMD's unrelaxed CIFs (or ``source``'s) where an id has one; otherwise, for a CSV row with
    defects, the unrelaxed structure of its placement. On a lattice other than 2DMD's MoS2
    (:attr:`InputRows.built`) every CSV row is built from its placement (2DMD's CIFs are MoS2)."""
    if source is not None:
        return structures_for_ids(ids, source)
    if rows.built:
        return {i: placement_to_atoms(_states_or_fail(rows, i), rows.lattice) for i in ids}
    try:
        index = _cif_index(str(_extract_tar_once(find_2dmd(UNRELAXED)).resolve()))
    except (FileNotFoundError, ValueError):
        index = {}
    known = [i for i in ids if i in index]
    out = structures_for_ids(known) if known else {}
    for i in ids:
        if i in index:
            continue
        states = rows.states_of(i)
        if states is None:
            raise KeyError(f"id {i} has no CIF and no defects to build it from")
        out[i] = placement_to_atoms(states, rows.lattice)
    return {i: out[i] for i in ids}


def _states_or_fail(rows: InputRows, sid: str) -> NDArray[np.uint8]:
    states = rows.states_of(sid)
    if states is None:
        raise KeyError(f"id {sid} has no defects to build its structure from")
    return states


# ---------------------------------------------------------------------------------------------
# Resumable output
# ---------------------------------------------------------------------------------------------


def _columns_for(engine: Engine) -> tuple[str, ...]:
    if engine.kind == "energy":
        return ENERGY_COLUMNS
    if engine.kind == "gap":
        return GAP_COLUMNS
    raise ValueError(f"engine kind must be 'energy' or 'gap', got {engine.kind!r}")


def _repair_output(path: Path, columns: Sequence[str], drop: Callable[[str, str], bool] | None = None
                   ) -> dict[str, str]:
    """Make ``path`` a clean label file and return the status of each id it holds.

    Creates the file with a header when absent. Drops a half-written last line (no trailing
    newline), malformed rows, repeated ids (first kept) and the rows ``drop(id, status)`` selects
    (to be computed again); rewrites atomically if needed, keeping the other lines byte for byte.
    Raises ``ValueError`` when the header differs from ``columns``.
    """
    header = ",".join(columns) + "\n"
    if not path.exists() or path.stat().st_size == 0:
        write_text_atomic(path, header)
        return {}
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a label file (not UTF-8 text: {exc.reason} at byte "
                         f"{exc.start}); use another output file") from None
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
    seen: dict[str, str] = {}
    for line in lines[1:]:
        try:
            rows = list(csv.reader([line]))
        except csv.Error:
            changed = True
            continue
        if len(rows) != 1 or len(rows[0]) != len(columns) or rows[0][0] in seen:
            changed = True
            continue
        if drop is not None and drop(rows[0][0], rows[0][1]):
            changed = True
            continue
        seen[rows[0][0]] = rows[0][1]
        kept.append(line)
    if changed:
        write_text_atomic(path, "".join(kept))
    return seen


def inputs_path(output: str | Path) -> Path:
    """The input fingerprints of a label file: same path with suffix ``.inputs.csv``, one
    ``id,sha256`` line per computed row (the last line of an id counts)."""
    return Path(output).with_suffix(".inputs.csv")


def _read_fingerprints(path: Path) -> dict[str, str]:
    """The fingerprint recorded for each id (none for rows computed before fingerprints were)."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text[: text.rfind("\n") + 1])):
        if len(row) == 2 and len(row[1]) == 64:
            out[row[0]] = row[1]
    return out


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
    """Append-only CSV writer that flushes and fsyncs every row, and records the fingerprint of
    the row's input in :func:`inputs_path` after it."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._fh = open(path, "a", encoding="utf-8", newline="")
        self._inputs = open(inputs_path(path), "a", encoding="utf-8", newline="")

    @staticmethod
    def _line(values: Sequence[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def write(self, row: Mapping[str, Any], fingerprint: str | None = None) -> None:
        for fh, line in ((self._fh, self._line([_format_value(row.get(c)) for c in self.columns])),
                         (self._inputs, self._line([str(row["id"]), fingerprint]) if fingerprint
                          else "")):
            if line:
                fh.write(line)  # one write per row
                fh.flush()
                os.fsync(fh.fileno())

    def close(self) -> None:
        self._fh.close()
        self._inputs.close()


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


Result = tuple[str, int, "dict[str, float] | None", float, str]
"""(id, n_atoms, values or None, seconds, error) of one structure."""


def _compute_one(task: tuple[str, Atoms | str]) -> Result:
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


class EngineStartError(ValueError):
    """The engine could not start in a worker process (its setup raised, or the process died);
    the message says why. The run stops: no row could be computed."""


SETUP_SECONDS = 900.0
"""How long a worker may take to set its engine up (load a model) before the run gives up."""


def _worker_main(conn: Any, engine: Engine) -> None:
    """A worker process: set the engine up (reporting ``("ready", blas)`` or ``("failed",
    reason)``), then answer each ``(id, atoms)`` with :func:`_compute_one`'s result until ``None``
    or the pipe closes."""
    try:
        _init_worker(engine)
        blas = loaded_blas() if engine.name == "xtb" else ""
    except BaseException as exc:  # reported to the parent, which stops the run
        conn.send(("failed", f"{type(exc).__name__}: {exc}".strip()))
        return
    conn.send(("ready", blas))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(_compute_one(task))


@dataclasses.dataclass
class _Worker:
    process: Any
    conn: Any


class _Workers:
    """Worker processes, one structure each at a time, that are replaced when they hang past
    ``timeout`` seconds (the row fails with the reason) or die; a worker that cannot set its engine
    up stops the run with :class:`EngineStartError` instead of being respawned forever (as
    ``multiprocessing.Pool`` does with a failing initializer)."""

    def __init__(self, engine: Engine, n: int, env: Mapping[str, str], timeout: float | None) -> None:
        self.engine = engine
        self.env = dict(env)
        self.timeout = timeout
        self.blas = ""
        self.workers: list[_Worker] = []
        self._ctx = mp.get_context("spawn")
        starting = [self._spawn() for _ in range(n)]
        for w in starting:
            self._wait_ready(w)
            self.workers.append(w)

    def _spawn(self) -> _Worker:
        # the spawned process inherits this environment (LD_PRELOAD for xtb); restored at once
        saved = {k: os.environ.get(k) for k in self.env}
        try:
            os.environ.update(self.env)
            parent, child = self._ctx.Pipe()
            process = self._ctx.Process(target=_worker_main, args=(child, self.engine), daemon=True)
            process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        return _Worker(process, parent)

    def _wait_ready(self, w: _Worker) -> None:
        name = self.engine.name
        try:
            if not w.conn.poll(SETUP_SECONDS):
                self._stop(w)
                raise EngineStartError(f"engine {name} did not start in a worker process within "
                                       f"{SETUP_SECONDS:g} s")
            state, detail = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(5)
            raise EngineStartError(f"the worker process of engine {name} died while starting "
                                   f"(exit code {w.process.exitcode})") from None
        if state != "ready":
            self._stop(w)
            raise EngineStartError(f"engine {name} could not start in a worker process: {detail}")
        self.blas = detail

    @staticmethod
    def _stop(w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(10)
        w.conn.close()

    def _replace(self, w: _Worker) -> _Worker:
        self._stop(w)
        self.workers.remove(w)
        new = self._spawn()
        self.workers.append(new)
        self._wait_ready(new)
        return new

    def map(self, tasks: Iterable[tuple[str, Atoms | str]]) -> Iterator[Result]:
        """The result of every task, in the order they finish."""
        from multiprocessing.connection import wait

        idle = list(self.workers)
        busy: dict[Any, tuple[_Worker, str, int, float]] = {}  # conn -> worker, id, atoms, start
        pending = iter(tasks)
        exhausted = False
        while True:
            while idle and not exhausted:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                elif isinstance(task[1], str):  # not loaded: nothing to compute
                    yield task[0], 0, None, 0.0, task[1]
                else:
                    w = idle.pop()
                    w.conn.send(task)
                    busy[w.conn] = (w, task[0], len(task[1]), time.monotonic())
            if not busy:
                return
            wait_s = None
            if self.timeout is not None:
                first = min(start for _, _, _, start in busy.values())
                wait_s = max(0.0, first + self.timeout - time.monotonic())
            for conn in wait(list(busy), timeout=wait_s):
                w, sid, n_atoms, start = busy.pop(conn)
                try:
                    result: Result = w.conn.recv()
                except (EOFError, OSError):
                    w.process.join(5)
                    yield (sid, n_atoms, None, time.monotonic() - start,
                           f"WorkerDied: the worker process ended (exit code {w.process.exitcode}) "
                           "while computing this structure")
                    idle.append(self._replace(w))
                    continue
                idle.append(w)
                yield result
            if self.timeout is not None:
                now = time.monotonic()
                for conn, (w, sid, n_atoms, start) in list(busy.items()):
                    if now - start >= self.timeout:
                        del busy[conn]
                        yield (sid, n_atoms, None, round(now - start, 3),
                               f"Timeout: no result within {self.timeout:g} s; the "
                               "worker was stopped")
                        idle.append(self._replace(w))

    def close(self, wait_for_workers: bool) -> None:
        """Ends the workers: asked to stop (``wait_for_workers``) or killed."""
        for w in self.workers:
            if wait_for_workers:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self.workers:
            if wait_for_workers:
                w.process.join(10)
            self._stop(w)
        self.workers = []


def check_engine(engine: Engine) -> None:
    """Raises ModuleNotFoundError naming the first package ``engine.requires`` lists that is not
    installed; checked in this process before any worker starts or any file is written."""
    import importlib.util

    for module in getattr(engine, "requires", ()):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InputRows:
    """What to label: ids in order, their placements (if the input gives them) and structure
    source."""

    ids: list[str]
    placements: NDArray[np.uint8] | None
    """(n, n_sites) uint8 placements of the ids on :attr:`lattice` in order; None where only CIFs
    say (a folder of CIFs, or a CSV without ``defects``)."""
    source: Path | None
    lattice: Lattice = dataclasses.field(default_factory=mos2_2dmd)
    index: dict[str, int] = dataclasses.field(default_factory=dict)
    """Row of each id."""
    built: bool = False
    """Structures are built from the placements on :attr:`lattice` (a lattice other than 2DMD's
    MoS2 8x8: no 2DMD CIF is looked up)."""

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {sid: r for r, sid in enumerate(self.ids)}

    def states_of(self, sid: str) -> NDArray[np.uint8] | None:
        """The (n_sites,) placement of ``sid``, or None where the input gives none."""
        return None if self.placements is None else self.placements[self.index[sid]]

    def fingerprint(self, sid: str) -> str:
        """sha256 of what row ``sid`` is computed from: its placement (in 2DMD form, so spacing
        and order do not count) or, without one, its CIF's bytes (2DMD's own CIFs: its id)."""
        from defectspace.placement import format_2dmd

        states = self.states_of(sid)
        if states is not None:
            data = ("placement:" + format_2dmd(states[None, :], self.lattice)[0]).encode()
        elif self.source is not None:
            data = b"cif:" + Path(_cif_index(str(self.source.resolve()))[sid]).read_bytes()
        else:
            data = f"2dmd:{sid}".encode()
        return hashlib.sha256(data).hexdigest()


def read_input(path: str | Path, structures: str | Path | None = None,
               lattice: Lattice | None = None) -> InputRows:
    """Read INPUT: a CSV with columns ``id`` and ``defects`` (2DMD form), or a folder of CIFs.

    ``lattice`` (default: 2DMD's MoS2 8x8, :func:`mos2_2dmd`) is the lattice the defects are
    placements of and the CIFs are mapped onto. On another lattice (e.g. ``Lattice.preset("WSe2",
    (8, 8))``) a CSV needs ``defects``, and each structure is built from its placement
    (:func:`defectspace.structure.placement_to_atoms`) unless ``structures`` gives CIFs.

    A CSV is read by :func:`defectspace.io.read_table` (a byte order mark and CRLF line ends are
    accepted; an empty, binary or malformed file is refused naming it). For a CSV the structures
    come from ``structures`` (a CIF folder) or, if ``None``, 2DMD's unrelaxed tar. For a folder,
    ids come from the file names and placements from mapping each structure onto 2DMD's lattice
    when it is labelled.

    Raises:
        ValueError: no such file or folder, no ``id`` column, a repeated id, or a ``defects``
            entry that is no placement of 2DMD's lattice (naming its line and id).
    """
    from defectspace.io import InputError, placements_from_table, read_table

    p = Path(path)
    own = lattice is None or _is_2dmd_lattice(lattice)
    lattice = mos2_2dmd() if own or lattice is None else lattice
    if p.is_dir():
        names = sorted(_cif_index(str(p.resolve())))
        if own:
            return InputRows(ids=names, placements=None, source=p)
        return InputRows(ids=names, placements=None, source=p, lattice=lattice)
    if not p.is_file():
        raise InputError(f"input {p} is neither a CSV file nor a folder of CIF files")
    source = Path(structures) if structures else None
    df = read_table(p, required=("id",), columns=["id", "defects"])
    if "defects" in df.columns:
        table = placements_from_table(df, p, lattice)  # names a bad row's line; refuses repeated ids
        return InputRows(ids=table.ids, placements=table.states, source=source, lattice=lattice,
                         built=not own and source is None)
    if not own and source is None:
        raise InputError(f"{p}: no defects column; on {lattice!r} the structures are built from "
                         "the placements (or give a folder of CIFs as the structures)")
    ids = [str(i) for i in df["id"]]
    dup = df["id"].duplicated().to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise InputError(f"{p}, line {r + 2}: duplicate id {ids[r]!r}")
    return InputRows(ids=ids, placements=None, source=source, lattice=lattice)


def _is_2dmd_lattice(lattice: Lattice) -> bool:
    """``lattice`` is 2DMD's MoS2 8x8 (same cell, basis, supercell and defects)."""
    return lattice.same_as(mos2_2dmd())


def _load_or_make_references(engine: Engine, sidecar: Path,
                             lattice: Lattice | None = None) -> References | None:
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
    refs = engine.references() if lattice is None else engine.references(lattice=lattice)
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


def _defects(sid: str, rows: InputRows,
             loader: Callable[[Sequence[str], Path | None], Mapping[str, Atoms]]) -> list[Defect] | None:
    """The defects of row ``sid``: of its placement, or of its CIF mapped onto the lattice (only
    the composition enters the formation energy; None when the structure fits no placement)."""
    states = rows.states_of(sid)
    if states is None and rows.source is not None:
        try:
            states = map_structure(loader([sid], rows.source)[sid], rows.lattice).states
        except ValueError:
            return None
    return None if states is None else to_defects(states, rows.lattice)[0]


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
    retry_failed: bool = False,
    timeout: float | None = None,
    lattice: Lattice | None = None,
) -> dict[str, int]:
    """Label the structures of ``input_path`` with ``engine`` and append rows to ``output``.

    ``engine`` is a name (``sevenn``, ``chgnet``, ``xtb``) or an :class:`Engine` instance; the
    packages it needs are checked first, in this process (ModuleNotFoundError names the first
    missing one; nothing is written). ``workers`` processes (default: number of cores) each run
    one thread; with one worker, no ``timeout`` and an engine that needs no OpenBLAS preload the
    work runs in this process. A worker whose engine cannot start stops the run
    (:class:`EngineStartError`). ``timeout`` limits each structure to that many seconds: the
    worker is stopped and replaced, and the row is a failed row with the reason. ``limit`` caps
    the number of new rows computed in this call (``0`` only reads and counts: no engine, no
    references, no workers); ``ids`` restricts (and orders) the ids.

    Rows already in ``output`` are skipped, unless the row's input changed since it was computed
    (the fingerprint recorded in :func:`inputs_path` differs: its defects, or its CIF's bytes) or
    it failed and ``retry_failed`` is set: those rows are dropped from ``output`` and computed
    again. For ``xtb`` an OpenBLAS found by :func:`find_openblas` is put in the workers'
    ``LD_PRELOAD`` (``use_openblas=False`` or ``DEFECTSPACE_OPENBLAS=off`` disables). Torch in
    this process is set to one thread (references and in-process work use it).
    ``structure_loader(ids, source)`` replaces :func:`structures_for_ids` (e.g. atoms built from
    placements). ``lattice`` (default: 2DMD's MoS2 8x8) is the lattice of the input's placements
    (:func:`read_input`); on another one the structures are built from the placements, E_pristine
    is that lattice's pristine supercell (``engine.references(lattice=...)``) and the sidecar
    records the lattice. Returns counts ``{"done_before", "computed", "ok", "failed", "changed",
    "retried"}`` (``changed`` and ``retried`` rows are among the computed ones, or still to do).
    """
    eng = make_engine(engine) if isinstance(engine, str) else engine
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    check_engine(eng)
    out = Path(output)
    columns = _columns_for(eng)
    rows = read_input(input_path, structures, lattice)
    other = rows.lattice is not mos2_2dmd()
    wanted = list(rows.ids)
    if ids is not None:
        unknown = [i for i in ids if i not in rows.index]
        if unknown:
            raise ValueError(f"{len(unknown)} ids are not in {input_path}: {unknown[:5]}")
        wanted = list(dict.fromkeys(ids))
    recorded = _read_fingerprints(inputs_path(out))
    wanted_set = set(wanted)
    changed: list[str] = []
    retried: list[str] = []

    def drop(sid: str, status: str) -> bool:
        if sid not in wanted_set:
            return False
        old = recorded.get(sid)
        if old is not None and old != rows.fingerprint(sid):
            changed.append(sid)
            return True
        if retry_failed and status == "failed":
            retried.append(sid)
            return True
        return False

    done = _repair_output(out, columns, drop if (recorded or retry_failed) else None)
    todo = [i for i in wanted if i not in done]
    if limit is not None:
        todo = todo[:limit]
    counts = {"done_before": len(done.keys() & wanted_set), "computed": 0, "ok": 0, "failed": 0,
              "changed": len(changed), "retried": len(retried)}
    if not todo:
        return counts

    preload = find_openblas() if (use_openblas and eng.name == "xtb") else None
    in_process = workers == 1 and preload is None and timeout is None
    if in_process:
        _init_worker(eng)
    sidecar = sidecar_path(out)
    _one_thread()
    refs = _load_or_make_references(eng, sidecar, rows.lattice if other else None)
    loader = structure_loader or (lambda chunk, src: _structures_or_built(chunk, src, rows))
    pool: _Workers | None = None
    if not in_process:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if preload is not None:
            prev = os.environ.get("LD_PRELOAD", "")
            env["LD_PRELOAD"] = prev if preload in prev.split(":") else ":".join(
                q for q in (preload, prev) if q)
            env["OPENBLAS_NUM_THREADS"] = os.environ.get("OPENBLAS_NUM_THREADS", "1")
        pool = _Workers(eng, workers, env, timeout)
    writer = _RowWriter(out, columns)
    finished = False
    try:
        extra: dict[str, Any] = {
            "workers": workers,
            "structures": str(rows.source)
            if rows.source is not None
            else "2DMD unrelaxed CIFs (mos2_unrelaxed.tar.xz)",
        }
        if other:
            extra["lattice"] = rows.lattice.describe()
            if rows.built:
                extra["structures"] = (
                    f"built from the placements on {rows.lattice.name} "
                    f"{rows.lattice.supercell[0]}x{rows.lattice.supercell[1]} "
                    "(defectspace.structure.placement_to_atoms, unrelaxed preset geometry)")
        if eng.name == "xtb":
            extra["blas"] = pool.blas if pool is not None else loaded_blas()
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

        results: Iterable[Result]
        results = map(_compute_one, tasks()) if pool is None else pool.map(tasks())
        bar: Any = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"label[{eng.name}]", unit="struct", file=sys.stderr)
        for sid, n_atoms, values, seconds, error in results:
            row: dict[str, Any] = {"id": sid, "n_atoms": n_atoms, "seconds": round(seconds, 3)}
            if values is not None and refs is not None:
                defects = _defects(sid, rows, loader)
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
            writer.write(row, rows.fingerprint(sid))
            counts["computed"] += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        finished = True
    finally:
        writer.close()
        if pool is not None:
            pool.close(wait_for_workers=finished)
    return counts
