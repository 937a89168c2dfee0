"""Training throughput, in patterns per second, for each model on the current device.

    .venv/bin/python benchmarks/train.py                 # CPU here; CUDA when torch sees a GPU
    .venv/bin/python benchmarks/train.py --n-points 8192 --batch-size 256 --steps 50

Two data paths are timed for every model:
- stored: patterns already in memory (on the host; copied to the device batch by batch);
- on-the-fly: patterns simulated on the training device from stored structures, with augmentations,
  as the study trains at scale.
``--variants`` times the default ResNet1d under each setting that could make training faster (bfloat16
autocast on the CPU, torch.compile, threads, batch size, grid size, width and depth, and the fresh-crystal
stream made in a background process or in the training process), against the float32 step in the same run.
For the on-the-fly path the script also prints the share of each step spent waiting for data
(simulation), the time the model waits on the data path.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xtal_utils.config import default_device
from xtal_utils.models import ResNet1d, Transformer1d, n_parameters


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_training(model, batches, *, device, steps: int, warmup: int = 10, amp: bool | None = None,
                  compile_model: bool = False) -> dict:
    """Run ``warmup + steps`` optimiser steps; return patterns/s and the seconds spent on data and on the model.

    ``amp``: bfloat16 autocast (default: on CUDA only); ``compile_model``: ``torch.compile`` first.
    """
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    use_amp = torch.device(device).type == "cuda" if amp is None else amp
    kind = torch.device(device).type
    if compile_model:
        model = torch.compile(model)
    data_s = model_s = 0.0
    seen = 0
    for step in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        x, y = next(batches)
        _sync(device)
        t1 = time.perf_counter()
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=use_amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        t2 = time.perf_counter()
        if step >= warmup:
            data_s += t1 - t0
            model_s += t2 - t1
            seen += len(y)
    return {"patterns_per_s": seen / (data_s + model_s), "data_s": data_s, "model_s": model_s}


def stored_batches(n_points: int, batch_size: int, device, n_classes: int = 99):
    rng = np.random.default_rng(0)
    patterns = torch.from_numpy(rng.random((batch_size * 8, n_points), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, n_classes, len(patterns)))
    while True:
        for start in range(0, len(patterns), batch_size):
            yield (patterns[start : start + batch_size].to(device, non_blocking=True)[:, None],
                   labels[start : start + batch_size].to(device, non_blocking=True))


def simulated_batches(n_points: int, batch_size: int, device, n_structures: int = 256):
    """Batches simulated on ``device`` from real AMCSD cells, with training augmentations."""
    from xtal_utils.crystals import sample_amcsd
    from xtal_utils.datasets import SimulatedSource
    from xtal_utils.diffraction import Augmentation, PowderSimulator
    from xtal_utils.structures import StructureBatch

    structures, _, _ = sample_amcsd(n_structures, max_sites=64, seed=1)
    # labels do not matter for throughput: random space groups
    labels = np.random.default_rng(0).integers(1, 231, len(structures))
    batch = StructureBatch.from_structures(structures, space_groups=labels)
    simulator = PowderSimulator(n_points=n_points, device=device)
    augmentation = Augmentation(fwhm_scale=(0.5, 2.0), strain=0.01, zero_shift=0.05, march_dollase=(0.7, 1.3),
                                background=0.2, poisson_counts=(1e3, 1e5), intensity_scale=(0.8, 1.2))
    source = SimulatedSource(batch, "extinction_group",
                             lambda b, generator: simulator.simulate(b, augmentation=augmentation,
                                                                     generator=generator, as_tensor=True))
    epoch = 0
    while True:
        yield from source.batches(batch_size, epoch=epoch, shuffle=True, device=device)
        epoch += 1


def stream_batches(n_points: int, batch_size: int, device, workers: int = 1):
    """Fresh random crystals every batch (the balanced training stream), made by ``workers`` processes."""
    from xtal_utils.datasets import CrystalStream
    from xtal_utils.diffraction import PowderSimulator

    stream = CrystalStream(PowderSimulator(n_points=n_points, device=device), "extinction_group", seed=0,
                           batch_size=batch_size)
    return stream.batches(device=device, workers=workers if torch.device(device).type == "cpu" else 0)


def variants(args, device) -> None:
    """The default ResNet1d under each training setting, against the plain float32 step, in one run."""
    n, b = args.n_points, args.batch_size
    rows = [
        ("float32, stored patterns (baseline)", dict(), lambda: stored_batches(n, b, device)),
        ("bfloat16 autocast", dict(amp=True), lambda: stored_batches(n, b, device)),
        ("torch.compile", dict(compile_model=True), lambda: stored_batches(n, b, device)),
        ("1 torch thread", dict(threads=1), lambda: stored_batches(n, b, device)),
        (f"batch {2 * b}", dict(batch=2 * b), lambda: stored_batches(n, 2 * b, device)),
        (f"{n // 2} points", dict(), lambda: stored_batches(n // 2, b, device)),
        (f"{2 * n} points", dict(), lambda: stored_batches(2 * n, b, device)),
        ("widths 32-64-128-256", dict(widths=(32, 64, 128, 256)), lambda: stored_batches(n, b, device)),
        ("blocks 2-2-2-2", dict(blocks=(2, 2, 2, 2)), lambda: stored_batches(n, b, device)),
        ("fresh stream, 1 worker process", dict(), lambda: stream_batches(n, b, device, 1)),
        ("fresh stream, in the training process", dict(), lambda: stream_batches(n, b, device, 0)),
    ]
    threads = torch.get_num_threads()
    base = None
    print(f"{'setting':40s} {'patterns/s':>11s} {'x baseline':>10s} {'waiting for data':>17s}")
    for label, options, batches in rows:
        torch.set_num_threads(options.get("threads", threads))
        model = ResNet1d(99, **{k: options[k] for k in ("widths", "blocks") if k in options})
        try:
            result = time_training(model, batches(), device=device, steps=args.steps,
                                   amp=options.get("amp"), compile_model=options.get("compile_model", False),
                                   warmup=2 * args.warmup if options.get("compile_model") else args.warmup)
        except Exception as error:  # e.g. torch.compile without a working compiler: say so, go on
            print(f"{label:40s} failed: {type(error).__name__}: {str(error).splitlines()[0][:60]}")
            continue
        base = base or result["patterns_per_s"]
        wait = result["data_s"] / (result["data_s"] + result["model_s"])
        print(f"{label:40s} {result['patterns_per_s']:11.0f} {result['patterns_per_s'] / base:10.2f} {wait:16.0%}")
    torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed steps first (twice as many under torch.compile): the first steps of a "
                             "setting pay for allocation, kernel choice and, in bfloat16, weight casts")
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument("--variants", action="store_true",
                        help="the default ResNet1d under each setting (bf16, compile, threads, grid, width, stream)")
    args = parser.parse_args()
    device = default_device(args.device)
    name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); n_points={args.n_points}, batch={args.batch_size}, steps={args.steps}")
    if args.variants:
        variants(args, device)
        return
    models = {
        "ResNet1d (default)": lambda: ResNet1d(99),
        "ResNet1d (small)": lambda: ResNet1d(99, widths=(16, 32, 64), blocks=(1, 1, 1)),
        "Transformer1d (default)": lambda: Transformer1d(99),
    }
    paths = {"stored": stored_batches}
    if not args.skip_simulated:
        paths["on-the-fly"] = simulated_batches
    print(f"{'model':26s} {'params':>8s} {'data path':>11s} {'patterns/s':>11s} {'waiting for data':>17s}")
    for label, make in models.items():
        for path, batches in paths.items():
            model = make()
            result = time_training(model, batches(args.n_points, args.batch_size, device), device=device,
                                   steps=args.steps, warmup=args.warmup)
            wait = result["data_s"] / (result["data_s"] + result["model_s"])
            print(f"{label:26s} {n_parameters(model) / 1e6:7.2f}M {path:>11s} {result['patterns_per_s']:11.0f} "
                  f"{wait:16.0%}")


if __name__ == "__main__":
    main()
