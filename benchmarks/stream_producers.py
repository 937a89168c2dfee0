"""How fast the fresh-crystal stream makes batches, against the number of worker processes, beside how fast
the trainer consumes them, in the same run.

    .venv/bin/python benchmarks/stream_producers.py                    # 1 .. all cores, 1,024 points
    .venv/bin/python benchmarks/stream_producers.py --n-points 8192 --batches 40

Producers: ``CrystalStream.batches(workers=w)`` (each worker one process with one torch thread; ``w = 0``
makes batches in this process), timed over ``--batches`` batches after the first ``w`` (the workers' start).
Trainer: the default ResNet1d's optimiser steps on batches already in memory (``benchmarks/train.py``'s
stored path), with torch's threads, after warm-up steps. Producers keep up when their rate is above the
trainer's; on a machine with few cores the two share them, so the trainer's rate is the upper bound of
what a run reaches. Results go to ``benchmarks/results/stream_producers.json`` with their provenance.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

from xtal_utils.config import provenance, write_json_atomic
from xtal_utils.datasets import CrystalStream
from xtal_utils.diffraction import PowderSimulator
from xtal_utils.models import ResNet1d
from xtal_utils.paths import BENCHMARK_RESULTS



def _train_benchmark():
    """benchmarks/train.py, whose trainer timing this script reuses."""
    spec = importlib.util.spec_from_file_location("train_benchmark", Path(__file__).with_name("train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def producer_rate(n_points: int, batch_size: int, workers: int, n_batches: int) -> float:
    """Patterns per second made by ``workers`` processes (0: this process), after their first batches."""
    stream = CrystalStream(PowderSimulator(n_points=n_points, fwhm=0.1, device="cpu"), "extinction_group", seed=0,
                           batch_size=batch_size)
    skip = max(workers, 1)
    batches = stream.batches(start=0, stop=skip + n_batches, workers=workers)
    for _ in range(skip):  # the workers' start-up and first batches
        next(batches)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    return n_batches * batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--max-workers", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(BENCHMARK_RESULTS / "stream_producers.json"))
    args = parser.parse_args(argv)
    producers = {}
    for workers in range(0, args.max_workers + 1):
        producers[workers] = producer_rate(args.n_points, args.batch_size, workers, args.batches)
        print(f"producers, {workers} worker process{'es' if workers != 1 else ''}: "
              f"{producers[workers]:,.0f} patterns/s", flush=True)
    bench = _train_benchmark()
    trainer = bench.time_training(ResNet1d(99, intensity="log"), bench.stored_batches(args.n_points, args.batch_size, "cpu"),
                                  device="cpu", steps=args.batches, warmup=10)["patterns_per_s"]
    print(f"trainer (ResNet1d, {torch.get_num_threads()} torch threads, batches in memory): {trainer:,.0f} patterns/s")
    result = {"provenance": provenance(sys.argv if argv is None else ["benchmarks/stream_producers.py", *argv]),
              "args": vars(args), "producers_patterns_per_s": producers, "trainer_patterns_per_s": trainer}
    write_json_atomic(args.out, result)
    return result


if __name__ == "__main__":
    main()
