"""The ``defectspace`` command line: all of it lives in this folder, one module per command family.

* :mod:`~defectspace.cli.core`: canonicalize, dedupe, enumerate, sample, export;
* :mod:`~defectspace.cli.ml`: embed, train-embedder, plot-embeddings;
* :mod:`~defectspace.cli.predict`: predict;
* :mod:`~defectspace.cli.fit`: fit;
* :mod:`~defectspace.cli.engines`: label;
* :mod:`~defectspace.cli.pipeline`: screen;
* :mod:`~defectspace.cli.design`: design, decode;
* :mod:`~defectspace.cli.bench`: bench.

Every sub-command is registered whatever the arguments; a handler imports the heavy modules it
needs (torch, pyarrow, the engines) when it runs. Bad input and a missing optional dependency end
the command with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable, Sequence

from defectspace.cli import bench, core, design, engines, fit, ml, pipeline, predict
from defectspace.cli.common import check_arguments, one_line

Handler = Callable[[argparse.Namespace], int]

EXTRAS = {"torch": "ml", "safetensors": "ml", "sklearn": "ml", "pyarrow": "screen", "dask": "screen",
          "distributed": "screen", "matplotlib": "plot", "umap": "plot", "sevenn": "label",
          "tblite": "label", "chgnet": "chgnet", "pymatgen": "pymatgen"}
"""The optional extra (``pip install 'defectspace[EXTRA]'``) that brings each optional package."""

REQUIRED = {"numpy": "numpy", "scipy": "scipy", "spglib": "spglib", "ase": "ase", "tqdm": "tqdm",
            "pandas": "pandas"}
"""defectspace's own dependencies (module -> PyPI name): missing, the installation is broken."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (building it imports no optional package)."""
    from defectspace import __version__

    parser = argparse.ArgumentParser(
        prog="defectspace",
        description="Symmetry-aware keys, embeddings and property predictions for defect "
                    "configurations in 2D crystals.",
    )
    parser.add_argument("--version", action="version", version=f"defectspace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in (core, ml, predict, fit, engines, pipeline, design, bench):
        family.register(sub)
    return parser


def missing_dependency_message(command: str, exc: ImportError) -> str:
    """The one line for a package that cannot be imported: the extra that brings it, or for one of
    defectspace's own dependencies how to repair the installation."""
    name = exc.name
    if _no_memory_to_load(exc):
        return f"{command}: not enough memory to load {name or 'a library'}: {MEMORY_HINT}"
    if name is None:  # pandas: "Missing optional dependency 'pyarrow'.  Use pip or conda ..."
        m = re.search(r"optional dependency '([A-Za-z0-9_.]+)'", str(exc))
        name = m.group(1) if m else None
    top = (name or "").split(".")[0]
    if top in EXTRAS:
        return f"{command} needs {top}, which is not installed: pip install 'defectspace[{EXTRAS[top]}]'"
    if top in REQUIRED:
        return (f"{command} needs {name}, a dependency of defectspace that cannot be imported: "
                f"pip install --force-reinstall {REQUIRED[top]} (or reinstall defectspace)")
    return f"{command}: cannot import {name or 'a module'} ({one_line(exc)}); reinstall defectspace"


MEMORY_HINT = "free memory or ask for less (a smaller supercell, fewer defects or rows)"


def out_of_memory_message(command: str, exc: BaseException) -> str:
    """The one line for an allocation that failed: the core's own message where it says what needed
    the memory, else which command ran out (a bare ``MemoryError`` or ``std::bad_alloc``)."""
    text = one_line(exc)
    if "memory" in text and "bad_alloc" not in text:
        return text
    return f"{command} ran out of memory: {MEMORY_HINT}"


def _no_memory_to_load(exc: ImportError) -> bool:
    """Whether the dynamic loader could not map a shared library for lack of memory."""
    text = str(exc).lower()
    return "failed to map segment" in text or "cannot allocate memory" in text


def fail(message: str) -> int:
    """Prints ``defectspace: error: MESSAGE`` on stderr; returns exit status 2."""
    print(f"defectspace: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code: 0, or 2 with one line on stderr for bad
    input, an output that cannot be written, a missing package (naming its extra) or memory that
    ran out (:func:`out_of_memory_message`); 130 when interrupted. The declared inputs and
    outputs are checked before the command does any work
    (:func:`defectspace.cli.common.check_arguments`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    # Written as it is when even formatting a message fails for lack of memory.
    no_memory = f"defectspace: error: {args.command} ran out of memory: {MEMORY_HINT}\n".encode()
    try:
        check_arguments(args)
        return handler(args)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "defectspace" and not _no_memory_to_load(exc):
            raise  # a bug, not a missing package
        return fail(missing_dependency_message(args.command, exc))
    except MemoryError as exc:
        try:
            return fail(out_of_memory_message(args.command, exc))
        except MemoryError:
            sys.stderr.flush()
            os.write(2, no_memory)
            return 2
    except OSError as exc:
        if exc.errno == errno.ENOMEM:  # a fork, an mmap
            return fail(out_of_memory_message(args.command, MemoryError()))
        return fail(one_line(exc))
    except (ValueError, OverflowError) as exc:  # OverflowError: a number too large for the core
        return fail(one_line(exc))
    except KeyboardInterrupt:
        print("defectspace: interrupted", file=sys.stderr)
        return 130
