"""Every command x every bad-input class: the exit code and the message actually printed.

    PYTHONPATH=python python benchmarks/cli_bad_inputs.py [-o benchmarks/results/cli_bad_inputs.md]

Runs the variations of tests/test_cli_robustness.py (the same valid inputs, written with a UTF-8
byte order mark and CRLF line ends, and the same bad ones) on the command's first declared input
and its output, each in a fresh temporary folder, plus the cases issue 17 named one by one
(export's ids, label's engines, a bulk crystal, partial occupancies, a memory limit). Prints a
markdown table: the command, the class, the exit code, the last line on stderr (for a run that
succeeded, its summary line), and whether anything was written where it should not be.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_cli_robustness as R  # noqa: E402  (the variations the tests run)
from defectspace.cli import main  # noqa: E402

TEXT_GARBAGE = b"hello world\nthis is not, what you think\n\"unclosed quote\n"
CLASSES = ["missing file", "empty file", "binary garbage", "text garbage", "BOM + CRLF (valid)",
           "output is the wrong type", "output under a file", "no optional package"]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = int(exc.code or 0)
        except BaseException as exc:  # a traceback is what the table would show
            import traceback

            traceback.print_exc(file=err)
            rc = f"traceback ({type(exc).__name__})"  # type: ignore[assignment]
    return rc, out.getvalue(), err.getvalue()


def last_line(out: str, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()] or [ln for ln in out.splitlines() if ln.strip()]
    if any("Traceback" in ln for ln in err.splitlines()):
        return "TRACEBACK: " + lines[-1]
    return lines[-1] if lines else ""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


CURRENT: list[Path] = []
"""The temporary folder of the row being run (its name is replaced by '.' in messages)."""


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, cmd: str, case: str, rc: object, message: str, stray: str) -> None:
        for folder in CURRENT:
            message = message.replace(str(folder.resolve()), ".").replace(str(folder), ".")
        self.rows.append((cmd, case, str(rc), message, stray))
        print(f"{cmd:16} {case:28} {rc!s:4} {message[:110]}", file=sys.stderr)


def in_folder(fn: Callable[[Path], tuple[object, str, str]]) -> tuple[object, str, str]:
    with tempfile.TemporaryDirectory(prefix="cli_bad_") as tmp:
        folder = Path(tmp)
        CURRENT[:] = [folder]
        old = Path.cwd()
        import os

        os.chdir(folder)
        try:
            return fn(folder)
        finally:
            os.chdir(old)


def stray_files(before: dict[str, bytes | None], folder: Path) -> str:
    after = R.snapshot(folder)
    changed = sorted(k for k in after if before.get(k, b"\0absent") != after[k])
    return "nothing" if not changed else ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")


def generic(table: Table, cmd: str) -> None:
    inputs, outputs = R._inputs(cmd), R._outputs(cmd)
    spec = inputs[0]
    suffix = {"lattice": ".cif", "placements": ".csv", "table": ".csv", "ids": ".txt"}.get(spec.kind, "")
    for case, content in [("missing file", None), ("empty file", b""), ("binary garbage", R.GARBAGE),
                          ("text garbage", TEXT_GARBAGE)]:
        def bad(folder: Path, content: bytes | None = content) -> tuple[object, str, str]:
            argv = R.prepare(cmd, folder)
            name = f"bad{suffix}"
            if content is not None:
                (folder / name).write_bytes(content)
            before = R.snapshot(folder)
            rc, out, err = run_main(R.with_value(argv, spec, name))
            return rc, last_line(out, err), stray_files(before, folder)

        table.add(cmd, f"{case} ({spec.label})", *in_folder(bad))

    def valid(folder: Path) -> tuple[object, str, str]:
        argv = R.prepare(cmd, folder)
        before = R.snapshot(folder)
        rc, out, err = run_main(argv)
        return rc, last_line(out, err), "(wrote " + stray_files(before, folder) + ")"

    table.add(cmd, "BOM + CRLF (valid)", *in_folder(valid))
    for ospec in outputs:
        for case in ("output is the wrong type", "output under a file"):
            def unwritable(folder: Path, case: str = case, ospec: R.OutputArgument = ospec
                           ) -> tuple[object, str, str]:
                argv = R.prepare(cmd, folder)
                value = str(getattr(R._parse(argv), ospec.dest))
                if case == "output is the wrong type":
                    if R.output_is_folder(ospec.kind, Path(value)):
                        (folder / value).write_text("a file\n")
                    else:
                        (folder / value).mkdir()
                else:
                    (folder / "a_file").write_text("a file\n")
                    argv = R.with_value(argv, ospec, f"a_file/{value}")
                before = R.snapshot(folder)
                rc, out, err = run_main(argv)
                return rc, last_line(out, err), stray_files(before, folder)

            table.add(cmd, f"{case} ({ospec.label})", *in_folder(unwritable))


def without_optional_packages(table: Table) -> None:
    """Every command's valid run with every optional package hidden (one interpreter)."""
    def hidden(folder: Path) -> tuple[object, str, str]:
        runs = [R.prepare(c, folder) for c in R.DECLARED]
        results = R.run_hidden(R.OPTIONAL, runs, folder)
        for argv, res in zip(runs, results, strict=True):
            rc = res["rc"] if res["rc"] is not None else "traceback"
            table.add(argv[0], "no optional package", rc, last_line(res["out"], res["err"]),
                      "(not checked: one folder for all)")
        return 0, "", ""

    in_folder(hidden)


def specific(table: Table) -> None:
    """The cases issue 17 listed one by one."""
    rows = "id,defects\n"

    def export(rows_text: str, extra: list[str] | None = None, header: str = "id,defects\n"
               ) -> Callable[[Path], tuple[object, str, str]]:
        def go(folder: Path) -> tuple[object, str, str]:
            (folder / "work").mkdir()
            (folder / "work" / "hits.csv").write_text(header + rows_text)
            before = R.snapshot(folder)
            rc, out, err = run_main(["export", "work/hits.csv", "-o", "work/out/cifs", *(extra or [])])
            written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.cif"))
            outside = [w for w in written if not w.startswith("work/out/cifs/")]
            absolute = Path("/abs.cif").exists()
            where = ("outside: " + ", ".join(outside) if outside or absolute else
                     f"{len(written)} CIFs, all in work/out/cifs" if written else stray_files(before, folder))
            said = " / ".join(ln.strip() for ln in err.splitlines() if ln.strip()) if rc == 0 else \
                last_line(out, err)
            return rc, said, where
        return go

    table.add("export", "ids ../../escaped and /abs",
              *in_folder(export("../../escaped,vac:17:S->V\n/abs,vac:2:S->V\nok,vac:5:S->V\n")))
    table.add("export", "duplicated ids",
              *in_folder(export("a,vac:17:S->V\nb,vac:2:S->V\na,vac:5:S->V\n")))
    table.add("export", "ids that map to one file name",
              *in_folder(export("a/b,vac:17:S->V\na_b,vac:2:S->V\n")))
    table.add("export", "CSV without defects", *in_folder(export("a,1.0\n", header="id,homo_lumo_gap\n")))

    def engine_hidden(blocked: str, engine: str) -> Callable[[Path], tuple[object, str, str]]:
        def go(folder: Path) -> tuple[object, str, str]:
            (folder / "in.csv").write_text(rows + "a,vac:17:S->V\n")
            t0 = time.monotonic()
            [res] = R.run_hidden([blocked], [["label", "in.csv", "-o", "l.csv", "--engine", engine,
                                              "--no-progress"]], folder)
            seconds = time.monotonic() - t0
            left = sorted(p.name for p in folder.iterdir() if p.name != "in.csv")
            return (res["rc"], last_line(res["out"], res["err"]) + f" ({seconds:.1f} s)",
                    ", ".join(left) or "nothing")
        return go

    for blocked, engine in [("tblite", "xtb"), ("sevenn", "sevenn"), ("chgnet", "chgnet")]:
        table.add("label", f"--engine {engine} without {blocked}", *in_folder(engine_hidden(blocked, engine)))

    seeds = ROOT / "fuzz" / "seeds" / "structure"
    for name, case in [("si_bulk.cif", "bulk crystal as --lattice"),
                       ("partial.cif", "partial occupancy in --lattice")]:
        def lattice_cif(folder: Path, name: str = name) -> tuple[object, str, str]:
            (folder / name).write_bytes((seeds / name).read_bytes())
            before = R.snapshot(folder)
            rc, out, err = run_main(["enumerate", "--lattice", name, "--supercell", "2x2", "--counts",
                                     "S->V=1", "-o", "e.csv"])
            return rc, last_line(out, err), stray_files(before, folder)

        table.add("enumerate", case, *in_folder(lattice_cif))

    flat = (seeds / "mos2_unit.cif").read_text().replace("_cell_angle_beta 90", "_cell_angle_beta 0")
    for case, argv, files in [
        ("S->V=30 on 8x8 (>= 2e26 classes)", ["enumerate", "--counts", "S->V=30", "-o", "e.csv"], {}),
        ("screen --exhaustive S->V=30", ["screen", "--exhaustive", "--counts", "S->V=30", "-o",
                                         "h.parquet"], {}),
        ("--counts S->V=99999999999999999999", ["enumerate", "--counts", "S->V=99999999999999999999",
                                                "-o", "e.csv"], {}),
        ("--lattice CIF with _cell_angle_beta 0", ["enumerate", "--lattice", "flat.cif", "--counts",
                                                   "S->V=1", "-o", "e.csv"], {"flat.cif": flat}),
    ]:
        def at_once(folder: Path, argv: list[str] = argv, files: dict[str, str] = files
                    ) -> tuple[object, str, str]:
            for name, text in files.items():
                (folder / name).write_text(text)
            before = R.snapshot(folder)
            t0 = time.monotonic()
            rc, out, err = run_main(argv)
            return (rc, last_line(out, err) + f" ({time.monotonic() - t0:.1f} s)",
                    stray_files(before, folder))

        table.add(argv[0], case, *in_folder(at_once))

    for damage in ("flipped byte", "truncated", "deleted"):
        def screen_work(folder: Path, damage: str = damage) -> tuple[object, str, str]:
            argv = [*R.prepare("screen", folder), "--keep-work"]
            rc, out, err = run_main(argv)
            assert rc == 0, err
            victim = sorted((folder / "hits.parquet.work" / "out").glob("*.arrow"))[0]
            data = bytearray(victim.read_bytes())
            if damage == "flipped byte":
                data[len(data) // 2] ^= 0x01
                victim.write_bytes(bytes(data))
            elif damage == "truncated":
                victim.write_bytes(bytes(data[: len(data) // 3]))
            else:
                victim.unlink()
            first = (folder / "hits.parquet").read_bytes()
            (folder / "hits.parquet").unlink()
            rc, out, err = run_main(argv)
            said = [ln.strip() for ln in err.splitlines() if "damaged work file" in ln]
            same = (folder / "hits.parquet").read_bytes() == first
            return (rc, " / ".join(said) or last_line(out, err),
                    "hits.parquet " + ("byte-identical to the first run" if same else "DIFFERS"))

        table.add("screen", f"resume, work file {damage}", *in_folder(screen_work))

    for headroom in (8, 256):
        def limited(folder: Path, headroom: int = headroom) -> tuple[object, str, str]:
            t0 = time.monotonic()
            r = R._run_limited(headroom, ["enumerate", "--supercell", "100x100", "--counts", "S->V=1",
                                          "-o", "e.csv"], folder)
            seconds = time.monotonic() - t0
            left = ", ".join(sorted(p.name for p in folder.iterdir()))
            written = f"(wrote {left})" if r.returncode == 0 else left or "nothing"
            return r.returncode, last_line(r.stdout, r.stderr) + f" ({seconds:.1f} s)", written

        table.add("enumerate", f"100x100 S->V=1, RLIMIT_AS +{headroom} MiB", *in_folder(limited))


def markdown(table: Table, seconds: float) -> str:
    lines = [
        "# Every command x every bad input",
        "",
        "Made by `PYTHONPATH=python python benchmarks/cli_bad_inputs.py -o "
        "benchmarks/results/cli_bad_inputs.md` "
        f"(commit {git_head()}, {time.strftime('%Y-%m-%d')}, {seconds:.0f} s). Each row ran in a fresh "
        "temporary folder holding the command's example inputs (tests/test_cli_robustness.py), "
        "written with a UTF-8 byte order mark and CRLF line ends; the bad value replaces the "
        "command's first declared input (or its output). *Message*: the last line on stderr "
        "(stdout for a run that said nothing there). *Written*: files that appeared or changed "
        "in the folder (for the valid run, what it wrote). This machine runs as root, so a folder "
        "without write permission is no test here (root may write in it); the tests check the "
        "permission path with os.access.",
        "",
        "| command | bad input | exit | message | written |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {c} | {case} | {rc} | {cell(msg)} | {cell(stray)} |" for c, case, rc, msg, stray in
              table.rows]
    return "\n".join(lines) + "\n"


def git_head() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    return r.stdout.strip() or "?"


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help="also write the table here")
    ap.add_argument("--commands", help="comma-separated subset (default: every command)")
    args = ap.parse_args()
    commands = args.commands.split(",") if args.commands else R.DECLARED
    t0 = time.monotonic()
    table = Table()
    for cmd in commands:
        generic(table, cmd)
    if not args.commands:
        without_optional_packages(table)
        specific(table)
    order = {c: i for i, c in enumerate(sorted({r[0] for r in table.rows}))}
    table.rows.sort(key=lambda r: order[r[0]])  # stable: a command's rows stay in their order
    text = markdown(table, time.monotonic() - t0)
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
