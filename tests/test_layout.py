"""The project's layout: one copy of each concept, and the README's commands work."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "defectspace"


def _sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_one_atomic_writer() -> None:
    """Files are replaced in one place, io.atomic_path (there were four ways of doing it)."""
    offenders = [name for name, text in _sources().items()
                 if name != "io.py" and ("os.replace(" in text or "mkstemp(" in text)]
    assert offenders == []


@pytest.mark.slow
def test_readme_benchmark_command_collects_the_benchmark_files() -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--benchmark-enable",
                        "--collect-only", "-q", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = {line.split("::")[0] for line in r.stdout.splitlines() if "::" in line}
    assert {"benchmarks/bench_canonical.py", "benchmarks/bench_descriptors.py",
            "benchmarks/bench_embedder.py"} <= files


@pytest.mark.parametrize(("text", "home"), [
    ("3.1903157", "lattice.py"),             # MoS2's lattice constant (the labeller had its own)
    ("0.144826", "lattice.py"),              # 2DMD's chalcogen heights
    ("class Defect:", "placement.py"),       # labeling.Defect clashed with defectspace.Defect
    ('("vac", "sub")', "placement.py"),      # the 2DMD-string parser (labeling had a second)
    ('"DEFECTSPACE_2DMD', "datasets.py"),    # the data locator's variable
    ("mkdtemp(", "engines/driver.py"),       # the cache of 2DMD's extracted CIFs
])
def test_one_copy_of_each_concept(text: str, home: str) -> None:
    holders = [name for name, source in _sources().items()
               if text in source and not name.startswith("pipeline/")]
    assert holders == [home]


def test_only_cli_knows_the_command_line() -> None:
    """argparse and option names live in cli/ (the command line was in five modules, tied together
    by guessing the sub-command from argv)."""
    offenders = [name for name, text in _sources().items()
                 if not name.startswith("cli/") and ("argparse" in text or "--lattice" in text)]
    assert offenders == []



def _imports(tree: ast.Module, name: str, modules: set[str]) -> set[str]:
    """The package's modules a module imports (at any depth, except under ``if TYPE_CHECKING:``)."""
    skip = {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[:len(name.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m not in (name, "defectspace")}


def test_no_import_cycle() -> None:
    """No module of the package imports, directly or through others, itself (issue 12: embedding,
    training and plotting imported each other; screening imported cli)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("defectspace", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    modules = set(names)
    graph = {m: _imports(ast.parse(p.read_text(encoding="utf-8")), m, modules) for m, p in names.items()}
    in_cycles = []
    for start in sorted(graph):
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        if start in seen:
            in_cycles.append(start)
    assert in_cycles == []


_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def test_library_messages_name_no_command_line_option() -> None:
    """Below cli/ a message names what was wrong, not the option that gave it: the command line
    adds its option names (cli.core.lattice_from puts '--lattice ... --defects ...:' in front)."""
    offenders = []
    for name, text in _sources().items():
        if name.startswith("cli/"):
            continue
        tree = ast.parse(text)
        docstrings = {id(node.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        offenders += [f"{name}:{node.lineno}: {node.value.strip()[:60]}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and id(node) not in docstrings and _OPTION.search(node.value)]
    assert offenders == []


def test_dead_code_is_gone() -> None:
    """What issue 12 found unused stays out: embedding._main, labeling.main, predict.train_shipped
    (fit replaced it), PlacementTable.notes (always empty)."""
    import dataclasses

    from defectspace.io import PlacementTable

    assert "notes" not in {f.name for f in dataclasses.fields(PlacementTable)}
    defined = {(name, node.name) for name, text in _sources().items()
               for node in ast.walk(ast.parse(text))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert {d for d in defined if d[1] in ("_main", "train_shipped")} == set()
    assert {name for name, fn in defined if fn == "main"} == {"cli/__init__.py"}


def test_every_command_is_registered_without_importing_optional_packages() -> None:
    code = ("import sys; from defectspace.cli import build_parser; "
            "sub = build_parser()._subparsers._group_actions[0]; print(sorted(sub.choices)); "
            "print(sorted(m for m in ('torch', 'pyarrow', 'dask', 'sklearn', 'matplotlib') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    commands, heavy = (ast.literal_eval(line) for line in r.stdout.splitlines())
    assert {"canonicalize", "dedupe", "enumerate", "sample", "export", "embed", "train-embedder",
            "plot-embeddings", "predict", "label", "screen"} <= set(commands)
    assert heavy == []


def test_tests_take_their_helpers_from_helpers_py() -> None:
    """conftest holds fixtures; shared helpers (the 2DMD folder, assert_invariant) are imported
    from tests/helpers.py."""
    imports = ("from conftest " + "import", "import " + "conftest")  # not these lines themselves
    offenders = [p.name for p in sorted((ROOT / "tests").glob("*.py"))
                 if any(text in p.read_text() for text in imports)]
    assert offenders == []


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("torch", ["embed", "{input}", "-o", "{out}"], "ml"),
    ("pyarrow", ["screen", "--input", "{input}", "-o", "{out}"], "screen"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, module: str, argv: list[str],
                                              extra: str) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,defects\na,vac:17:S->V\n")
    args = [a.format(input=src, out=tmp_path / "out") for a in argv]
    code = (f"import sys; sys.modules[{module!r}] = None; from defectspace.cli import main; "
            f"sys.exit(main({args!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'defectspace[{extra}]'" in lines[0], r.stderr
