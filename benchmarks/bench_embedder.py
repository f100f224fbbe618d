"""pytest-benchmark groups for the Siamese embedder.

    python -m pytest benchmarks/bench_embedder.py --benchmark-enable

* ``embed``: placements/s of the shipped (point-group equivariant) model, learned and exact
  (canonical form) mode, folded for inference (:class:`defectspace.ml.encoder.FoldedEncoder`,
  what ``Embedder.embed`` runs) beside the plain encoder on the one-hot grid (what it ran before,
  the baseline) and the paper's plain CNN of the same width (untrained; same cost whatever its
  weights).

``python benchmarks/bench_embedder.py [--n 20000]`` prints the same comparison as a table, with
the largest difference between the folded and the plain embeddings.
* ``train-step``: generating one step's pairs in the core versus one optimizer step, to show pair
  generation is not the bottleneck (it also runs in a background thread during training).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from defectspace import Canonicalizer, Lattice  # noqa: E402
from defectspace.ml.embedder import Embedder  # noqa: E402
from defectspace.ml.encoder import Encoder  # noqa: E402
from defectspace.ml.training import PairStream, TrainConfig, margin_loss  # noqa: E402
from defectspace.placement import random_placements  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")

LAT = Lattice.preset("MoS2", (8, 8))
N = 20_000


@functools.cache
def batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([random_placements(LAT, N // 2, (1, 3), rng),
                           random_placements(LAT, N // 2, (4, 24), rng)])


def plain_embed(emb: Embedder, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """The encoder on the one-hot grid, unfolded: ``Embedder.embed`` before the folding."""
    with torch.inference_mode():
        return np.concatenate([emb.embed_tensor(torch.from_numpy(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("model", "exact"), [("shipped", False), ("shipped-plain", False), ("shipped", True),
                                              ("cnn", False)])
def test_embed_throughput(benchmark, model: str, exact: bool, threads: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "embed"
    benchmark.extra_info["placements"] = N
    if model.startswith("shipped"):
        emb = Embedder.load()
    else:
        emb = Embedder(Encoder(TrainConfig(architecture="cnn").encoder_config(LAT)), LAT)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if model == "shipped-plain":
            out = benchmark(plain_embed, emb, batch())
        else:
            out = benchmark(emb.embed, batch(), exact=exact)
    finally:
        torch.set_num_threads(old)
    assert out.shape == (N, 12)


def test_pair_generation(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "train-step"
    cfg = TrainConfig()
    stream = PairStream(Canonicalizer(LAT, n_threads=1), cfg)
    steps = iter(range(10**9))
    pb = benchmark(lambda: stream.batch(next(steps)))
    assert pb.anchors.shape == (cfg.batch_size, LAT.n_sites)


def test_training_step(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "train-step"
    cfg = TrainConfig()
    torch.set_num_threads(cfg.threads)
    pb = PairStream(Canonicalizer(LAT, n_threads=1), cfg).batch(0)
    enc = Encoder(cfg.encoder_config(LAT), LAT)
    emb = Embedder(enc, LAT, "cpu")
    enc.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    x = torch.from_numpy(np.concatenate([pb.anchors, pb.positives, pb.negatives]))
    a_cls, n_cls = torch.from_numpy(pb.anchor_class), torch.from_numpy(pb.negative_class)
    valid = torch.from_numpy(pb.neg_valid)
    b = pb.anchors.shape[0]

    def step() -> float:
        z = emb.embed_tensor(x)
        loss = margin_loss(z[:b], z[b:2 * b], z[2 * b:], a_cls, n_cls, valid, cfg.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    assert np.isfinite(benchmark(step))


def main() -> None:
    """Placements/s of the folded and the plain shipped encoder, 1 and 2 threads, in one run."""
    import argparse
    import os
    import time

    ap = argparse.ArgumentParser(description="embedding throughput: folded vs plain encoder")
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = np.concatenate([random_placements(LAT, args.n // 2, (1, 3), rng),
                        random_placements(LAT, args.n - args.n // 2, (4, 24), rng)])
    emb = Embedder.load()
    diff = np.abs(emb.embed(x) - plain_embed(emb, x))
    print(f"{args.n} placements (half 1-3 defects, half 4-24), load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; folded - plain: max abs {diff.max():.2e}, mean {diff.mean():.2e}")
    print("| threads | plain /s | folded /s | folded / plain | plain /s per CPU-s | folded /s per CPU-s |")
    print("|---:|---:|---:|---:|---:|---:|")
    old = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):  # interleaved, so that both see the same load
            for name, fn in (("plain", lambda: plain_embed(emb, x)), ("folded", lambda: emb.embed(x))):
                t, c = time.perf_counter(), time.process_time()
                fn()
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                prev = best.get(name, (np.inf, np.inf))
                best[name] = (min(prev[0], wall), min(prev[1], cpu))
        p, f = best["plain"], best["folded"]
        print(f"| {threads} | {args.n / p[0]:,.0f} | {args.n / f[0]:,.0f} | {p[0] / f[0]:.2f} | "
              f"{args.n / p[1]:,.0f} | {args.n / f[1]:,.0f} |")
    torch.set_num_threads(old)


if __name__ == "__main__":
    main()
