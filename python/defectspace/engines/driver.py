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
(:func:`defectspace.placement.parse_2dmd`); structures are 2DMD's unrelaxed CIFs (the tar found by
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
import io
import json
import math
import multiprocessing as mp
import multiprocessing.pool
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
from defectspace.placement import Defect, PlacementError, parse_2dmd, to_defects
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
    defects, the unrelaxed structure of its placement."""
    if source is not None:
        return structures_for_ids(ids, source)
    try:
        index = _cif_index(str(_extract_tar_once(find_2dmd(UNRELAXED)).resolve()))
    except (FileNotFoundError, ValueError):
        index = {}
    known = [i for i in ids if i in index]
    out = structures_for_ids(known) if known else {}
    for i in ids:
        if i in index:
            continue
        states = rows.states.get(i)
        if states is None:
            raise KeyError(f"id {i} has no CIF and no defects to build it from")
        out[i] = placement_to_atoms(states, rows.lattice)
    return {i: out[i] for i in ids}


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
    """What to label: ids in order, their placements (``None`` if unknown) and structure source."""

    ids: list[str]
    states: dict[str, NDArray[np.uint8] | None]
    """(n_sites,) uint8 placement of each id on :attr:`lattice`, None where only a CIF says."""
    source: Path | None
    lattice: Lattice = dataclasses.field(default_factory=mos2_2dmd)


def read_input(path: str | Path, structures: str | Path | None = None) -> InputRows:
    """Read INPUT: a CSV with columns ``id`` and ``defects`` (2DMD form), or a folder of CIFs.

    For a CSV the structures come from ``structures`` (a CIF folder) or, if ``None``, 2DMD's
    unrelaxed tar. For a folder, ids come from the file names and placements from mapping each
    structure onto 2DMD's lattice when it is labelled.

    Raises:
        ValueError: no such file or folder, no ``id`` column, a repeated id, or a ``defects``
            entry that is no placement of 2DMD's lattice (naming its line and id).
    """
    p = Path(path)
    if p.is_dir():
        names = sorted(_cif_index(str(p.resolve())))
        return InputRows(ids=names, states=dict.fromkeys(names), source=p)
    if not p.is_file():
        raise ValueError(f"INPUT {p} is neither a CSV file nor a folder of CIF files")
    lattice = mos2_2dmd()
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise ValueError(f"{p} needs an 'id' column, has {reader.fieldnames}")
        has_defects = "defects" in reader.fieldnames
        ids: list[str] = []
        states: dict[str, NDArray[np.uint8] | None] = {}
        for line, row in enumerate(reader, start=2):
            sid = row["id"]
            if sid in states:
                raise ValueError(f"id {sid!r} occurs twice in {p}")
            ids.append(sid)
            if not has_defects:
                states[sid] = None
                continue
            try:
                states[sid] = parse_2dmd([row["defects"] or ""], lattice)[0]
            except PlacementError as exc:
                raise ValueError(f"{p}, line {line} (id {sid}): {str(exc).removeprefix('row 0: ')}") from None
    return InputRows(ids=ids, states=states, source=Path(structures) if structures else None,
                     lattice=lattice)


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


def _defects(sid: str, rows: InputRows,
             loader: Callable[[Sequence[str], Path | None], Mapping[str, Atoms]]) -> list[Defect] | None:
    """The defects of row ``sid``: of its placement, or of its CIF mapped onto the lattice (only
    the composition enters the formation energy; None when the structure fits no placement)."""
    states = rows.states.get(sid)
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
        known = set(rows.states)
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
    pool: multiprocessing.pool.Pool | None = None
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
