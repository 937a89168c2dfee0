"""The one prepared GPU run: what a lent GPU measures in at most about 8 minutes, written with provenance.

    bash benchmarks/gpu.sh                                   # on the GPU machine (one H100 or H200)
    .venv/bin/python benchmarks/gpu.py --tiny --out /tmp/g   # the same steps at a tiny size, on any CPU

Steps, each timed and written as soon as it ends, so that a run cut short keeps what it measured:

1. ``tests``: the CUDA tests (``pytest -k cuda``), their outcome and time (skipped by ``--tiny``);
2. ``simulate``: the simulator's patterns per second on the run's device against the CPU, the same
   fresh random crystals, the same grid;
3. ``train``: training patterns per second on the fresh-crystal stream made on the device, float32
   against bfloat16 autocast (``StreamConfig.precision``), after warm-up steps that are not timed;
4. ``slice``: a short slice of the paper preset: the reference recipe (log intensity, label smoothing
   0.1, AdamW, cosine schedule) on the paper's 8,192-point grid for a fixed number of steps, in bfloat16,
   scored on held-out crystals of the stream's generator and on PyXtal ``from_random`` crystals.

Results go to ``<out>/gpu.json`` with their provenance (device, date, commit, command).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from xtal_utils import crystals, experiments as ex, pattern_sets as ps
from xtal_utils.config import default_device, provenance, write_json_atomic
from xtal_utils.datasets import CrystalStream
from xtal_utils.paths import BENCHMARK_RESULTS, ROOT
from xtal_utils.train import StreamConfig, bf16_supported, fit_stream

# (full, tiny): the GPU run's sizes, and the CPU test's
SIZES = {
    "sim_crystals": (4096, 64), "sim_points": (8192, 256), "train_points": (8192, 256),
    "train_batch": (256, 8), "train_warmup": (20, 1), "train_steps": (100, 2),
    "slice_steps": (3000, 4), "slice_batch": (256, 8), "slice_points": (8192, 256),
    "test_fresh": (1980, 20), "test_per_group": (10, 0),
}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_tests() -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider",
                          "tests/test_diffraction.py", "tests/test_models.py", "tests/test_stream.py"],
                         capture_output=True, text=True, cwd=ROOT)
    return {"returncode": out.returncode, "summary": out.stdout.strip().splitlines()[-1:],
            "seconds": time.perf_counter() - t0}


def simulate_rate(device: str, n_crystals: int, n_points: int, repeats: int = 3) -> float:
    """Clean patterns per second of the stream's simulator on ``device`` (median of ``repeats`` calls)."""
    simulator = ps.Grid(n_points=n_points, fwhm=0.1).simulator(device)
    batch = crystals.sample_crystals(n_crystals, seed=12345)
    symmetry = crystals.laue_symmetry_of(batch.space_group)
    simulator.simulate(batch, symmetry=symmetry, as_tensor=True)  # warm-up: tables, kernels
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        simulator.simulate(batch, symmetry=symmetry, as_tensor=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return n_crystals / sorted(times)[len(times) // 2]


def train_rate(device: str, precision: str, n_points: int, batch: int, warmup: int, steps: int) -> float:
    """Training patterns per second on the stream made on ``device``, after ``warmup`` untimed steps."""
    grid = ps.Grid(n_points=n_points, fwhm=0.1)
    config = StreamConfig(steps=warmup + steps, batch_size=batch, precision=precision)
    model = config.build()
    stream = CrystalStream(grid.simulator(device), config.kind, seed=0, batch_size=batch)
    fit_stream(model, stream, dataclasses.replace(config, steps=warmup), device=device, workers=0, progress=False)
    _sync(device)
    t0 = time.perf_counter()
    fit_stream(model, stream, config, device=device, workers=0, progress=False, stop_after=steps)
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def paper_slice(device: str, steps: int, batch: int, n_points: int, fresh: int, per_group: int) -> dict:
    """The reference recipe on the paper grid for ``steps`` steps, in bfloat16 where the device has it."""
    grid = ps.Grid(n_points=n_points, fwhm=0.1)
    config = StreamConfig(steps=steps, batch_size=batch, precision="bf16" if bf16_supported(device) else "float32")
    t0 = time.perf_counter()
    model, info = ex.train_on_stream(config, grid, device=device, progress=False)
    seconds = time.perf_counter() - t0
    tests = ex.stream_test_sets(grid, fresh=fresh, from_random_per_group=per_group, amcsd=False, rruff=False,
                                progress=False)
    scores = {name: ex.score_test(model, test, config.kind, device=device)[1] for name, test in tests.items()}
    return {"steps": steps, "batch": batch, "n_points": n_points, "precision": config.precision,
            "patterns": steps * batch, "train_seconds": info["seconds"], "wall_seconds": seconds,
            "scores": {name: {k: s[f"extinction_group_top{k}"] for k in (1, 5)} for name, s in scores.items()},
            "n_test": {name: len(t.space_groups) for name, t in tests.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="every step at a tiny size (the CPU test)")
    parser.add_argument("--out", type=Path, default=BENCHMARK_RESULTS / "gpu")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    size = {name: pair[1 if args.tiny else 0] for name, pair in SIZES.items()}
    device = default_device(args.device)
    result = {"provenance": {**provenance(sys.argv if argv is None else ["benchmarks/gpu.py", *argv]),
                             "device": device,
                             "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU",
                             "bf16": bf16_supported(device)},
              "tiny": args.tiny, "sizes": size}
    path = args.out / "gpu.json"

    def record(name, fn):
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as error:  # a failed step is recorded, and the run goes on to the next one
            result[name] = {"error": f"{type(error).__name__}: {error}"}
        result.setdefault("step_seconds", {})[name] = time.perf_counter() - t0
        write_json_atomic(path, result)
        print(f"{name}: {json.dumps(result[name])[:300]}", flush=True)

    if not args.tiny:
        record("tests", run_tests)
    record("simulate", lambda: {"device": simulate_rate(device, size["sim_crystals"], size["sim_points"]),
                                "cpu": simulate_rate("cpu", size["sim_crystals"] // (1 if args.tiny else 8),
                                                     size["sim_points"]),
                                "crystals": size["sim_crystals"], "n_points": size["sim_points"]})
    record("train", lambda: {precision: train_rate(device, precision, size["train_points"], size["train_batch"],
                                                   size["train_warmup"], size["train_steps"])
                             for precision in ("float32", "bf16")})
    record("slice", lambda: paper_slice(device, size["slice_steps"], size["slice_batch"], size["slice_points"],
                                        size["test_fresh"], size["test_per_group"]))
    return result


if __name__ == "__main__":
    main()
