"""Every command x every bad input: exit status 2 and one line naming the file, never a traceback,
and nothing written; a valid input with a byte order mark and CRLF line ends is read; outputs get
the umask's permissions; ``--help`` works without any optional package, and a missing package
names the extra that brings it.

The commands come from the parser, so a new command is covered as soon as it is registered with
:func:`defectspace.cli.common.add_command` and declares its files with ``add_input`` and
``add_output`` (its example is the valid run every bad input is a variation of).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from defectspace.cli import EXTRAS, build_parser, main
from defectspace.cli.common import InputArgument, OutputArgument, input_paths, output_is_folder

CSV_BOM_CRLF = "\ufeffid,defects\r\na,vac:17:S->V\r\nb,sub:6:Mo->W;vac:2:S->V\r\n"

UNIT_CELL_CIF = """data_MoS2
_cell_length_a 3.1903157
_cell_length_b 3.1903157
_cell_length_c 14.879004
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 120
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Mo1 Mo 0.333333 0.666667 0.25
S1 S 0.666667 0.333333 0.144826
S2 S 0.666667 0.333333 0.355174
"""

GARBAGE = b"\x00\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
"""Binary garbage: NUL bytes, invalid UTF-8, a PNG signature."""

CHEAP = {
    "train-embedder": ["--steps", "1", "--batch-size", "4", "--eval-pairs", "10", "--channels", "12",
                       "--dim", "4", "--threads", "1", "--no-progress"],
    "plot-embeddings": ["--method", "pca", "--defects", "2", "--classes", "2", "--images", "2"],
    "label": ["--limit", "0", "--no-progress"],
    "fit": ["--regressor", "ridge", "--folds", "2"],
}
"""Options appended to a command's example so that its valid run takes a second or two."""


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PARSERS = _subparsers()
COMMANDS = sorted(PARSERS)
DECLARED = [c for c in COMMANDS if PARSERS[c].get_default("cli_example")]


def _inputs(cmd: str) -> tuple[InputArgument, ...]:
    return tuple(PARSERS[cmd].get_default("cli_inputs") or ())


def _outputs(cmd: str) -> tuple[OutputArgument, ...]:
    return tuple(PARSERS[cmd].get_default("cli_outputs") or ())


def _example(cmd: str) -> list[str]:
    tokens = shlex.split(PARSERS[cmd].get_default("cli_example"))
    assert tokens[:2] == ["defectspace", cmd]
    return tokens[1:] + CHEAP.get(cmd, [])


def _parse(argv: list[str]) -> argparse.Namespace:
    return PARSERS[argv[0]].parse_args(argv[1:])


def _with_bom_crlf(text: str) -> bytes:
    return ("\ufeff" + text.replace("\n", "\r\n")).encode()


def _copy_checkpoint(source: Path, dest: Path, meta_file: str) -> None:
    shutil.copytree(source, dest)
    meta = dest / meta_file
    meta.write_bytes(_with_bom_crlf(meta.read_text(encoding="utf-8")))


def write_valid(kind: str, path: Path) -> None:
    """A valid input of each kind, written with a UTF-8 byte order mark and CRLF line ends."""
    if kind in ("placements", "table"):
        path.write_bytes(CSV_BOM_CRLF.encode())
    elif kind == "lattice":
        path.write_bytes(_with_bom_crlf(UNIT_CELL_CIF))
    elif kind == "embedder":
        from defectspace.ml.config import __file__ as ml_file

        _copy_checkpoint(Path(ml_file).parents[1] / "data" / "models" / "mos2_8x8", path,
                         "embedder.json")
    elif kind == "predictor":
        from defectspace.predict import default_model_paths

        _copy_checkpoint(default_model_paths()["homo_lumo_gap"], path, "metadata.json")
    elif kind == "ids":
        path.write_bytes(_with_bom_crlf("a\nb\n"))
    elif kind == "embeddings":  # the shipped embedder's vectors of two placements
        from defectspace.ml.embedder import Embedder
        from defectspace.placement import parse_2dmd

        emb = Embedder.load()
        z = emb.embed(parse_2dmd(["vac:17:S->V", "sub:6:Mo->W;vac:2:S->V"], emb.lattice))
        header = "id," + ",".join(f"emb_{i}" for i in range(z.shape[1]))
        rows = [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in zip("ab", z, strict=True)]
        path.write_bytes(_with_bom_crlf("\n".join([header, *rows]) + "\n"))
    else:
        raise AssertionError(f"no valid {kind!r} input known to this test; add one")


LABELLED_CSV = "id,defects,homo_lumo_gap\n" + "".join(
    f"r{i},vac:{3 * i + 1}:S->V;sub:{3 * (i % 3)}:Mo->W,{1.5 + 0.01 * i * i}\n" for i in range(10))
"""fit's valid input: placements with a label column."""


def prepare(cmd: str, folder: Path) -> list[str]:
    """The command's example (plus :data:`CHEAP`) with valid files at the paths it names."""
    argv = _example(cmd)
    for spec, path in input_paths(_parse(argv)):
        write_valid(spec.kind, folder / path)
    if cmd == "fit":  # a labelled table
        (folder / argv[1]).write_bytes(_with_bom_crlf(LABELLED_CSV))
    return argv


def with_value(argv: list[str], spec: InputArgument | OutputArgument, value: str) -> list[str]:
    """``argv`` with the argument ``spec`` set to ``value`` (appended when the example lacks it)."""
    out = list(argv)
    if spec.label in ("input",):
        current = getattr(_parse(argv), spec.dest)
        out[out.index(str(current), 1)] = value
        return out
    action = next(a for a in PARSERS[argv[0]]._actions if a.dest == spec.dest)
    for k, token in enumerate(out):
        if token in action.option_strings:
            out[k + 1] = value
            return out
    return [*out, spec.label, value]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def assert_one_error_line(err: str, *names: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("defectspace: error:")]
    assert len(lines) == 1 and err.rstrip("\n").splitlines()[-1] == lines[0], err
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_declares_its_files_and_an_example(cmd: str) -> None:
    """The contract that puts a command into this file's tests."""
    assert cmd in DECLARED and (_inputs(cmd) or _outputs(cmd)), (
        f"register {cmd} with cli.common.add_command(..., example=...) and declare its files with "
        "add_input/add_output")
    _parse(_example(cmd))  # the example parses


INPUT_SLOTS = [(c, s) for c in DECLARED for s in _inputs(c)]


@pytest.mark.parametrize("bad", ["missing", "empty", "garbage"])
@pytest.mark.parametrize(("cmd", "spec"), INPUT_SLOTS, ids=[f"{c}-{s.label}" for c, s in INPUT_SLOTS])
def test_bad_input_exits_2_with_one_line_naming_it(cmd: str, spec: InputArgument, bad: str,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    argv = prepare(cmd, tmp_path)
    suffix = {"lattice": ".cif", "placements": ".csv", "table": ".csv", "ids": ".txt"}.get(spec.kind, "")
    name = f"bad_{bad}{suffix}"
    if bad != "missing":
        (tmp_path / name).write_bytes(b"" if bad == "empty" else GARBAGE)
    before = snapshot(tmp_path)
    rc, err = run(with_value(argv, spec, name), capsys)
    assert rc == 2, err
    assert_one_error_line(err, name)
    assert snapshot(tmp_path) == before  # nothing written: no output, no work folder


OUTPUT_SLOTS = [(c, s) for c in DECLARED for s in _outputs(c)]


def _refuse_work(monkeypatch: pytest.MonkeyPatch, cmd: str) -> None:
    """Makes the command's handler fail the test if it is reached."""
    handler: Callable[..., int] = PARSERS[cmd].get_default("handler")

    def started(args: Any) -> int:
        raise AssertionError(f"{cmd} started its work before refusing its output")

    monkeypatch.setattr(sys.modules[handler.__module__], handler.__name__, started)


@pytest.mark.parametrize("bad", ["wrong-type", "under-a-file"])
@pytest.mark.parametrize(("cmd", "spec"), OUTPUT_SLOTS, ids=[f"{c}-{s.label}" for c, s in OUTPUT_SLOTS])
def test_unwritable_output_is_refused_before_any_work(cmd: str, spec: OutputArgument, bad: str,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An output that exists as a file where a folder goes (train-embedder --out FILE, export -o
    FILE) or as a folder where a file goes, or that lies under a file."""
    monkeypatch.chdir(tmp_path)
    argv = prepare(cmd, tmp_path)
    value = str(getattr(_parse(argv), spec.dest))
    if bad == "wrong-type":
        if output_is_folder(spec.kind, Path(value)):
            (tmp_path / value).write_text("a file\n")
        else:
            (tmp_path / value).mkdir()
    else:
        (tmp_path / "a_file").write_text("a file\n")
        value = f"a_file/{value}"
        argv = with_value(argv, spec, value)
    _refuse_work(monkeypatch, cmd)
    before = snapshot(tmp_path)
    rc, err = run(argv, capsys)
    assert rc == 2, err
    assert_one_error_line(err, value)
    assert snapshot(tmp_path) == before


PRIMARY = [(c, _inputs(c)[0]) for c in DECLARED if _inputs(c)]


@pytest.mark.parametrize(("cmd", "spec"), PRIMARY, ids=[c for c, _ in PRIMARY])
def test_bom_and_crlf_input_is_read_and_outputs_get_the_umask(
        cmd: str, spec: InputArgument, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One reader for every command (label refused the byte order mark), and every output file
    created 0o644 under umask 022 (CSV, CIF and extxyz were 0o600)."""
    monkeypatch.chdir(tmp_path)
    argv = prepare(cmd, tmp_path)
    before = set(snapshot(tmp_path))
    old = os.umask(0o022)
    try:
        rc, err = run(argv, capsys)
    finally:
        os.umask(old)
    assert rc == 0, err
    assert "Traceback" not in err
    created = [p for p in tmp_path.rglob("*") if p.relative_to(tmp_path).as_posix() not in before]
    assert created, "the command wrote nothing"
    for p in created:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


# ----------------------------------------------------------------------- hidden packages
DRIVER = r"""
import contextlib, importlib.abc, io, json, sys, traceback
blocked, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2])

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, Hide())
from defectspace.cli import main
results = []
for argv in runs:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    except BaseException:
        rc = None
        err.write(traceback.format_exc())
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""

OPTIONAL = sorted(EXTRAS)


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports the defectspace this test imported
    (with ``PYTHONPATH=python`` relative to the checkout, a child in a temporary folder would
    import an installed copy instead)."""
    import defectspace

    env = dict(os.environ)
    here = str(Path(defectspace.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_hidden(blocked: list[str], runs: list[list[str]], cwd: Path) -> list[dict[str, Any]]:
    """Runs each command line in one fresh interpreter in which ``blocked`` cannot be imported."""
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(blocked), json.dumps(runs)],
                       capture_output=True, text=True, cwd=cwd, timeout=600, check=False,
                       env=child_env())
    assert r.returncode == 0, r.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(r.stdout.splitlines()[-1])
    return results


def test_help_of_every_command_works_without_optional_packages(tmp_path: Path) -> None:
    """``embed --help`` showed an empty usage without torch."""
    results = run_hidden(OPTIONAL, [[c, "--help"] for c in COMMANDS], tmp_path)
    for cmd, res in zip(COMMANDS, results, strict=True):
        assert res["rc"] == 0, (cmd, res["err"])
        assert f"usage: defectspace {cmd}" in res["out"], (cmd, res["out"])
        assert "--help" in res["out"] and len(res["out"].splitlines()) > 6, (cmd, res["out"])


def test_every_command_without_optional_packages_runs_or_names_an_extra(tmp_path: Path) -> None:
    runs = [prepare(c, tmp_path) for c in DECLARED]
    for argv, res in zip(runs, run_hidden(OPTIONAL, runs, tmp_path), strict=True):
        assert "Traceback" not in res["err"], (argv, res["err"])
        if res["rc"] != 0:
            assert res["rc"] == 2, (argv, res["err"])
            assert_one_error_line(res["err"], "pip install 'defectspace[")


@pytest.mark.parametrize(("blocked", "argv", "expected"), [
    (["torch"], ["embed", "in.csv", "-o", "e.csv"], "defectspace[ml]"),
    (["torch"], ["train-embedder", "--data", "in.csv", "--out", "m", *CHEAP["train-embedder"]],
     "defectspace[ml]"),
    (["torch"], ["plot-embeddings", "-o", "p.png"], "defectspace[ml]"),
    (["matplotlib"], ["plot-embeddings", "-o", "p.png", *CHEAP["plot-embeddings"]], "defectspace[plot]"),
    (["pyarrow"], ["screen", "--input", "in.csv", "-o", "h.parquet"], "defectspace[screen]"),
    (["pyarrow"], ["export", "in.parquet", "-o", "cifs"], "defectspace[screen]"),
    (["pyarrow"], ["canonicalize", "in.parquet", "-o", "k.csv"], "defectspace[screen]"),
    (["tblite"], ["label", "in.csv", "-o", "l.csv", "--engine", "xtb", "--no-progress"],
     "defectspace[label]"),
    (["sevenn"], ["label", "in.csv", "-o", "l.csv", "--engine", "sevenn", "--no-progress"],
     "defectspace[label]"),
    (["chgnet"], ["label", "in.csv", "-o", "l.csv", "--engine", "chgnet", "--no-progress"],
     "defectspace[chgnet]"),
    (["ase.io"], ["export", "in.csv", "-o", "cifs"], "pip install --force-reinstall ase"),
], ids=lambda v: "-".join(v) if isinstance(v, list) and len(v) == 1 else None)
def test_a_missing_package_names_its_extra(blocked: list[str], argv: list[str], expected: str,
                                           tmp_path: Path) -> None:
    """Each in a fresh interpreter where the package cannot be imported (a meta-path blocker)."""
    (tmp_path / "in.csv").write_text("id,defects\na,vac:17:S->V\n")
    if "in.parquet" in argv:
        import pandas as pd

        pd.DataFrame({"id": ["a"], "defects": ["vac:17:S->V"]}).to_parquet(tmp_path / "in.parquet")
    [res] = run_hidden(blocked, [argv], tmp_path)
    assert res["rc"] == 2, res["err"]
    assert_one_error_line(res["err"], expected)
    written = {p.name for p in tmp_path.iterdir()} - {"in.csv", "in.parquet"}
    assert written == set(), written  # nothing computed, nothing written


def test_every_extra_named_is_one_pyproject_defines(tmp_path: Path) -> None:
    """``--engine chgnet`` was documented but no extra installed chgnet."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert extra in extras, (module, extra)
        wanted = {"sklearn": "scikit-learn", "umap": "umap-learn", "distributed": "dask"}.get(module, module)
        assert any(req.startswith(wanted) for req in extras[extra]), (module, extras[extra])
    assert "defectspace[chgnet]" in extras["all"][0] or any("chgnet" in r for r in extras["all"])


# ----------------------------------------------------------------------- export
def _export(tmp_path: Path, rows: str, capsys: pytest.CaptureFixture[str], *extra: str
            ) -> tuple[int, str]:
    src = tmp_path / "hits.csv"
    src.write_text("id,defects\n" + rows)
    return run(["export", str(src), "-o", str(tmp_path / "out" / "cifs"), *extra], capsys)


def test_export_file_names_stay_inside_the_output_folder(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Ids ``../../escaped`` and ``/abs`` wrote ``escaped.cif`` two levels up and ``/abs.cif``."""
    ids = ["../../escaped", "/abs", "a/b", "..", ".hidden", "ok-1.2_x+y", "spa ce"]
    rc, err = _export(tmp_path, "".join(f"{i},vac:17:S->V\n" for i in ids), capsys)
    assert rc == 0, err
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.cif"))
    assert written == sorted(f"out/cifs/{n}" for n in [
        "_.._escaped.cif", "_abs.cif", "a_b.cif", "_.cif", "hidden.cif", "ok-1.2_x+y.cif",
        "spa_ce.cif"])
    assert not Path("/abs.cif").exists()
    assert "6 ids are not safe file names" in err and "'../../escaped' -> _.._escaped.cif" in err


def test_export_refuses_ids_that_would_share_a_file(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicated ids said 'wrote 23 structures' and left 20 files."""
    rc, err = _export(tmp_path, "a,vac:17:S->V\nb,vac:2:S->V\na,vac:5:S->V\n", capsys)
    assert rc == 2
    assert_one_error_line(err, "hits.csv", "id 'a' occurs twice (lines 2 and 4)")
    assert not (tmp_path / "out").exists()
    rc, err = _export(tmp_path, "a/b,vac:17:S->V\na_b,vac:2:S->V\n", capsys)
    assert rc == 2
    assert_one_error_line(err, "ids 'a/b' (line 2) and 'a_b' (line 3) would both be written to a_b.cif")
    rc, err = _export(tmp_path, "a,vac:17:S->V\nb,vac:2:S->V\na,vac:5:S->V\n", capsys, "--ids", "a,b")
    assert rc == 2  # choosing the duplicated id still picks both rows
    rc, err = _export(tmp_path, "a,vac:17:S->V\nb,vac:2:S->V\na,vac:5:S->V\n", capsys, "--ids", "b")
    assert rc == 0, err
    assert [p.name for p in (tmp_path / "out" / "cifs").iterdir()] == ["b.cif"]
    src = tmp_path / "hits.csv"
    rc, err = run(["export", str(src), "-o", str(tmp_path / "all.extxyz")], capsys)
    assert rc == 0, err  # one extxyz file: every row is a frame with its id, nothing overwritten
    import ase.io

    assert [f.info["id"] for f in ase.io.read(tmp_path / "all.extxyz", index=":")] == ["a", "b", "a"]


def test_export_of_a_table_without_defects_is_one_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV without ``defects`` ended in a KeyError traceback."""
    src = tmp_path / "ids.csv"
    src.write_text("id,homo_lumo_gap\na,1.0\n")
    rc, err = run(["export", str(src), "-o", str(tmp_path / "cifs")], capsys)
    assert rc == 2
    assert_one_error_line(err, "ids.csv", "missing column(s) ['defects']")
    assert not (tmp_path / "cifs").exists()


def test_export_extxyz_and_label_files_get_the_umask(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """CSV, CIF and extxyz outputs were created 0o600 (temporary file, then rename)."""
    src = tmp_path / "hits.csv"
    src.write_text("id,defects\na,vac:17:S->V\n")
    old = os.umask(0o022)
    try:
        assert run(["export", str(src), "-o", str(tmp_path / "all.extxyz")], capsys)[0] == 0
        assert run(["export", str(src), "-o", str(tmp_path / "cifs")], capsys)[0] == 0
        assert run(["canonicalize", str(src), "-o", str(tmp_path / "k.csv")], capsys)[0] == 0
    finally:
        os.umask(old)
    for p in (tmp_path / "all.extxyz", tmp_path / "cifs" / "a.cif", tmp_path / "k.csv"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


# ----------------------------------------------------------------------- memory
MEMORY_DRIVER = r"""
import json, resource, subprocess, sys
import numpy as np, pandas, spglib, defectspace._core
from defectspace.cli import main
# The libraries the command loads, and OpenBLAS's buffers, are in place before the limit: the limit
# is for the command's own work (OpenBLAS that cannot get its buffer ends the process itself).
np.linalg.det(np.eye(3)); np.linalg.inv(np.eye(3)); np.ones((64, 64)) @ np.ones((64, 64))
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
limit = vm + (int(sys.argv[1]) << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""


def _run_limited(headroom_mib: int, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MEMORY_DRIVER, str(headroom_mib), *argv],
                          capture_output=True, text=True, cwd=cwd, timeout=300, check=False,
                          env=child_env())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits the address space with RLIMIT_AS")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan reserves terabytes of address space")
def test_large_supercell_under_a_memory_limit_runs_or_says_it_ran_out(tmp_path: Path) -> None:
    """``enumerate --supercell 100x100 --counts 'S->V=1'`` took 14.2 GB (a dense 120,000 x 30,000
    permutation table) and under a memory limit ended in ``MemoryError: std::bad_alloc`` with a
    traceback; a bare MemoryError printed ``error: MemoryError``, one while formatting the message a
    traceback, and a library the loader could not map for lack of memory said 'reinstall'."""
    argv = ["enumerate", "--supercell", "100x100", "--counts", "S->V=1", "-o", "e.csv"]
    ok = _run_limited(256, argv, tmp_path)  # the dense table alone would be 13.4 GiB
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "e.csv").read_text().count("\n") == 2
    (tmp_path / "e.csv").unlink()
    refused = 0
    for headroom in (0, 4, 8, 12, 16, 24, 32, 48):
        r = _run_limited(headroom, argv, tmp_path)
        assert r.returncode in (0, 2), (headroom, r.returncode, r.stderr)
        if r.returncode == 2:
            refused += 1
            assert_one_error_line(r.stderr, "memory")
            assert "enumerate ran out of memory" in r.stderr or "not enough memory" in r.stderr
            assert list(tmp_path.iterdir()) == [], headroom  # nothing written, no temporary file
        else:
            (tmp_path / "e.csv").unlink()
    assert refused >= 2
    r = _run_limited(64, ["enumerate", "--supercell", "12x12", "--counts", "S->V=4", "-o", "e.csv"],
                     tmp_path)  # about 160,000 classes of 432 bytes
    assert r.returncode == 2, r.stderr
    assert_one_error_line(r.stderr, "not enough memory to enumerate", "12x12 supercell")
    assert list(tmp_path.iterdir()) == []


def test_a_library_that_cannot_be_mapped_is_out_of_memory_not_a_broken_install() -> None:
    from defectspace.cli import missing_dependency_message, out_of_memory_message

    exc = ImportError("/x/_spglib.so: failed to map segment from shared object", name="_spglib")
    assert missing_dependency_message("enumerate", exc).startswith(
        "enumerate: not enough memory to load _spglib: free memory")
    assert out_of_memory_message("screen", MemoryError()).startswith("screen ran out of memory")
    assert out_of_memory_message("screen", MemoryError("std::bad_alloc")).startswith("screen ran out")
    assert out_of_memory_message("x", MemoryError("not enough memory to build the group")) == (
        "not enough memory to build the group")


def test_an_enumeration_that_cannot_fit_is_refused_at_once(tmp_path: Path) -> None:
    """``enumerate --counts 'S->V=30'`` on 8x8 (at least 2e26 classes) and ``screen --exhaustive``
    of it ran for ever (screen after writing its work folder); now one line at once, before any
    work, in a child with a time limit so that a relapse fails instead of hanging the suite."""
    runs = {
        "enumerate": ["enumerate", "--counts", "S->V=30", "-o", "e.csv"],
        "screen": ["screen", "--exhaustive", "--counts", "S->V=30", "-o", "h.parquet"],
        "huge": ["enumerate", "--supercell", "100x100", "--counts", "S->V=2000", "-o", "e.csv"],
    }
    for name, argv in runs.items():
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "defectspace", *argv], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120, check=False, env=child_env())
        assert r.returncode == 2, (name, r.stderr)
        assert_one_error_line(r.stderr, "not enough memory to enumerate", "symmetry operations")
        assert time.monotonic() - t0 < 60, name
        assert list(tmp_path.iterdir()) == [], name  # no output, no work folder
    assert "at least 2.01e+26 (1.54e+29 placements / 768" in r.stderr or "10^2816" in r.stderr


def test_counts_past_the_core_s_integers_are_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``--counts S->V=99999999999999999999`` ended in an OverflowError traceback."""
    rc, err = run(["enumerate", "--counts", "S->V=99999999999999999999", "-o",
                   str(tmp_path / "e.csv")], capsys)
    assert rc == 2
    assert_one_error_line(err, "--counts S->V=99999999999999999999: more defects than the 65535")


def test_enumeration_size_check_counts_placements_exactly() -> None:
    """The check's placement count is the sum of the orbit sizes the core enumerates; small
    enumerations pass it."""
    from defectspace import Canonicalizer, Lattice
    from defectspace.canonical import check_enumeration_fits, n_placements

    c = Canonicalizer(Lattice.preset("MoS2", (3, 3)))
    for counts in ({"S->V": 2}, {"S->V": 1, "S->Se": 2, "Mo->W": 1}, {"Mo->V": 4}, {"Mo->W": 9}):
        check_enumeration_fits(c, counts)
        assert int(c.enumerate(counts).orbit_size.sum()) == n_placements(c.lattice, counts), counts
    assert n_placements(c.lattice, {"S->V": 19}) == 0  # 18 S sites
    assert n_placements(c.lattice, {"S->V": 3, "S->Se": 2}) == 816 * 105  # C(18,3) C(15,2)
