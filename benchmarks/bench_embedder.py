"""pytest-benchmark groups for the Siamese embedder.

    python -m pytest benchmarks/bench_embedder.py --benchmark-enable

* ``embed``: placements/s of the shipped (point-group equivariant) model, learned and exact
  (canonical form) mode, beside the paper's plain CNN of the same width (untrained; same cost
  whatever its weights) as the baseline.
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


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("model", "exact"), [("shipped", False), ("shipped", True), ("cnn", False)])
def test_embed_throughput(benchmark, model: str, exact: bool, threads: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "embed"
    benchmark.extra_info["placements"] = N
    if model == "shipped":
        emb = Embedder.load()
    else:
        emb = Embedder(Encoder(TrainConfig(architecture="cnn").encoder_config(LAT)), LAT)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
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
