"""The ``defectspace`` command line: all of it lives in this folder, one module per command family.

* :mod:`~defectspace.cli.core`: canonicalize, dedupe, enumerate, sample, export;
* :mod:`~defectspace.cli.ml`: embed, train-embedder, plot-embeddings;
* :mod:`~defectspace.cli.predict`: predict;
* :mod:`~defectspace.cli.engines`: label;
* :mod:`~defectspace.cli.pipeline`: screen;
* :mod:`~defectspace.cli.design`: design, decode.

Every sub-command is registered whatever the arguments; a handler imports the heavy modules it
needs (torch, pyarrow, the engines) when it runs. Bad input and a missing optional dependency end
the command with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from defectspace.cli import core, design, engines, ml, pipeline, predict

Handler = Callable[[argparse.Namespace], int]

EXTRAS = {"torch": "ml", "safetensors": "ml", "sklearn": "ml", "pyarrow": "screen", "dask": "screen",
          "distributed": "screen", "matplotlib": "plot", "umap": "plot", "sevenn": "label",
          "tblite": "label"}
"""The optional extra (``pip install 'defectspace[EXTRA]'``) that brings each optional package."""


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
    for family in (core, ml, predict, engines, pipeline, design):
        family.register(sub)
    return parser


def missing_dependency_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """The one line for an optional package that is not installed (None for anything else)."""
    top = (exc.name or "").split(".")[0]
    if top in EXTRAS:
        return f"{command} needs {top}: pip install 'defectspace[{EXTRAS[top]}]'"
    if top == "chgnet":
        return f"{command} needs chgnet: pip install chgnet"
    return None


def fail(message: str) -> int:
    """Prints ``defectspace: error: MESSAGE`` on stderr; returns exit status 2."""
    print(f"defectspace: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (2 for bad input or a missing extra, with a
    one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ModuleNotFoundError as exc:
        message = missing_dependency_message(args.command, exc)
        if message is None:
            raise
        return fail(message)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("defectspace: interrupted", file=sys.stderr)
        return 130
