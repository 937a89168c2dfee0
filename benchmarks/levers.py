"""Levers of sample efficiency and throughput, each against the reference recipe at equal wall time.

    .venv/bin/python benchmarks/levers.py                         # every lever, 7 minutes of training each
    .venv/bin/python benchmarks/levers.py --minutes 2 --only ema bf16   # the reference and two levers
    .venv/bin/python benchmarks/levers.py --table                  # the last results as a markdown table

Run it alone on the machine: every lever gets the same number of training seconds, so anything else that
runs at the same time changes the result. For each lever, one change to the reference recipe (the study's
balanced models: ResNet1d, log intensity, 1,024 points, label smoothing 0.1, batches of 64, peak learning
rate 0.002, a fresh batch of random crystals at every step, one worker process making batches):

1. a pilot of 300 steps on the same crystals for every lever measures its seconds per step (steps 50 to
   300, after warm-up and the workers' start);
2. its cosine schedule is set to as many steps as ``--minutes`` of training allow at that rate;
3. it trains (``learning_curve.run``) and is scored at the end on the held-out fresh crystals (1,980) and
   PyXtal ``from_random`` crystals (990), BatchNorm statistics re-estimated on 16 batches.

Printed and written to ``benchmarks/results/levers.json`` with the provenance: patterns per second, steps,
the training seconds each run really took, EG top-1 and top-5 on each test set, and each lever's top-1
minus the reference's with the binomial standard error of that difference (the runs' seed spread is
about 1.5 points at 990 crystals, so a lever is kept only for a gain above both). Each run's curve goes to
``benchmarks/results/learning_curve_lever_time_<short name>.json`` as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import learning_curve  # noqa: E402

from xtal_utils import train  # noqa: E402
from xtal_utils.config import provenance  # noqa: E402
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS  # noqa: E402

REFERENCE = ["--intensity", "log", "--n-points", "1024", "--label-smoothing", "0.1", "--no-amcsd", "--no-rruff"]
LEVERS = {  # name -> (short name, the options that change, on top of REFERENCE)
    "reference": ("reference", []),
    "moving average of the weights (0.999)": ("ema", ["--ema", "0.999"]),
    "GroupNorm": ("groupnorm", ["--norm", "group"]),
    "batch 128, learning rate x1.4": ("batch128", ["--batch-size", "128", "--lr", "0.0028"]),
    "512 points": ("points512", ["--n-points", "512"]),
    "widths x1.5": ("widths15", ["--widths", "24", "48", "96", "192"]),
    "two blocks per stage": ("depth2", ["--blocks", "2", "2", "2", "2"]),
    "bf16 autocast": ("bf16", ["--precision", "bf16"]),
}
TESTS = ("fresh", "from_random")
PILOT_STEPS, PILOT_FROM = 300, 50


def seconds_per_step(args) -> float:
    """Training seconds per step of ``args``' recipe, from steps PILOT_FROM to PILOT_STEPS of a pilot run."""
    config = dataclasses.replace(learning_curve.stream_config(args), steps=PILOT_STEPS)
    state = train.fit_stream(config.build(), config.stream(learning_curve.grid_of(args).simulator("cpu"),
                                                          args.seed + 3 * 10**6), config,
                             checkpoint_every=PILOT_FROM, workers=args.workers, progress=False)
    at = {row["step"]: row["seconds"] for row in state["history"]}
    return (at[PILOT_STEPS] - at[PILOT_FROM]) / (PILOT_STEPS - PILOT_FROM)


def suffix(seed: int) -> str:
    """Seed 0 writes levers.json; another seed levers_seed<seed>.json (and the runs' files likewise)."""
    return f"_seed{seed}" if seed else ""


def table(result: dict) -> str:
    """The levers of a ``levers.json`` as a markdown table: patterns per second and seen, the minutes the
    training took, EG top-1 / top-5 on each test set, and top-1 minus the reference's (binomial s.e.)."""
    reference = result["levers"]["reference"]
    lines = ["| lever | patterns/s | patterns seen | minutes | fresh top-1 / top-5 | from_random top-1 / top-5 |",
             "|---|---|---|---|---|---|"]
    for name, row in result["levers"].items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} | | | | |")
            continue
        cells = []
        for t, n in (("fresh", 1980), ("from_random", 990)):
            p, q = row[f"{t}_top1"] / 100, reference[f"{t}_top1"] / 100
            se = 100 * np.sqrt((p * (1 - p) + q * (1 - q)) / n)
            diff = "" if name == "reference" else f" ({row[f'{t}_top1'] - reference[f'{t}_top1']:+.1f} ± {se:.1f})"
            cells.append(f"{row[f'{t}_top1']:.1f} / {row[f'{t}_top5']:.1f}{diff}")
        lines.append(f"| {name} | {row['patterns'] / row['train_seconds']:,.0f} | {row['patterns']:,} | "
                     f"{row['train_seconds'] / 60:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=7.0, help="training minutes of every lever (default: 7)")
    parser.add_argument("--only", nargs="+", default=None, choices=[short for short, _ in LEVERS.values()],
                        help="these levers (short names), beside the reference")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the runs' crystals and weights; not 0: results go to levers_seed<seed>.json")
    parser.add_argument("--table", action="store_true", help="only print levers.json as a markdown table")
    options = parser.parse_args()
    if options.table:
        print(table(json.loads((RESULTS / f"levers{suffix(options.seed)}.json").read_text())))
        return
    names = [n for n, (short, _) in LEVERS.items() if options.only is None or short in {"reference", *options.only}]
    out = {"provenance": provenance(sys.argv), "minutes": options.minutes, "reference": REFERENCE, "levers": {}}
    for name in names:
        short, change = LEVERS[name]
        args = learning_curve.arguments().parse_args(
            [*REFERENCE, *change, "--tag", f"lever_time_{short}{suffix(options.seed)}", "--eval-every", "0", "--quiet", "--seed", str(options.seed)])
        if args.precision == "bf16" and not train.bf16_supported("cpu"):
            print(f"{name}: skipped, this processor has no bfloat16 instructions", flush=True)
            out["levers"][name] = {"skipped": "no bfloat16 instructions on this processor"}
            continue
        pace = seconds_per_step(args)
        args.steps = max(PILOT_STEPS, int(options.minutes * 60 / pace))
        print(f"{name}: {args.batch_size / pace:.0f} patterns/s in the pilot -> {args.steps:,} steps", flush=True)
        start = time.perf_counter()
        result = learning_curve.run(args)
        last = result["curve"][-1]
        out["levers"][name] = {"options": change, "pilot_patterns_per_second": args.batch_size / pace,
                               "steps": args.steps, "patterns": args.steps * args.batch_size,
                               "train_seconds": result["seconds"], "wall_seconds": time.perf_counter() - start,
                               "parameters": result["parameters"],
                               **{f"{t}_top{k}": last[f"{t}_eg_top{k}"] for t in TESTS for k in (1, 5)}}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"levers{suffix(options.seed)}.json").write_text(json.dumps(out, indent=1) + "\n")  # after each
    print(f"\nEG top-1 / top-5 (%) after {options.minutes:g} minutes of training each; in brackets top-1 minus the "
          "reference's (binomial s.e.):\n" + table(out))

if __name__ == "__main__":
    main()
