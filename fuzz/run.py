"""Runs one atheris fuzzer for a fixed time, saving crashing inputs under tests/fuzz_corpus/.

    python fuzz/run.py TARGET SECONDS        (TARGET: parse, canonical, structure, label)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import targets  # noqa: E402

atheris.instrument_all()  # Python-level coverage of everything loaded (numpy included)


def main() -> None:
    name, seconds = sys.argv[1], int(sys.argv[2])
    target = targets.TARGETS[name]
    crashes = ROOT / "tests" / "fuzz_corpus" / name  # kept as regression inputs
    corpus = ROOT / "build" / "fuzz" / name           # the working corpus, not committed
    seeds = ROOT / "fuzz" / "seeds" / name
    crashes.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    stats = {"runs": 0, "start": time.time()}

    def one(data: bytes) -> None:
        stats["runs"] += 1
        target(data)

    args = [sys.argv[0], f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/",
            "-print_final_stats=1", "-rss_limit_mb=4096", str(corpus), str(seeds)]
    atheris.Setup(args, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
