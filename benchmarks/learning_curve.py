"""Learning curve of a model trained on the fresh-crystal stream: EG top-1 and top-5 against patterns seen.

    .venv/bin/python benchmarks/learning_curve.py --steps 4000 --tag resnet         # one run
    .venv/bin/python benchmarks/learning_curve.py --model Transformer1d --tag transformer
    .venv/bin/python benchmarks/learning_curve.py --log-d --tag resnet_logd
    .venv/bin/python benchmarks/learning_curve.py --plot                            # the figure of all runs
    .venv/bin/python benchmarks/learning_curve.py --steps 28000 --batch-size 64 --tag reference \\
        --save-model models/balanced-reference.pt                                    # the shipped reference

Every batch is a fresh set of random crystals (:class:`xtal_utils.datasets.CrystalStream`, balanced over
extinction groups); nothing is ever seen twice. At each evaluation the BatchNorm statistics of a copy
of the model are re-estimated on 16 fresh batches (:func:`xtal_utils.train.recalibrate_batchnorm`), then
the copy is scored on four test sets (:func:`xtal_utils.experiments.stream_test_sets`): held-out fresh
crystals, held-out PyXtal ``from_random`` crystals (another generator), the de-duplicated AMCSD test
split and the measured RRUFF development patterns. Results go to
``benchmarks/results/learning_curve_<tag>.json`` with their provenance; ``--plot`` draws every such
file into ``benchmarks/results/learning_curve.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xtal_utils import cards
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS

LABELS = cards.REFERENCE_TEST_SETS  # test set -> its name in figures and the model card
TESTS = tuple(LABELS)


def model_options(args) -> tuple:
    """The (name, value) options of the model class ``args.model``."""
    if args.model == "ResNet1d":
        options = {"widths": tuple(args.widths), "blocks": tuple(args.blocks), "intensity": args.intensity}
        if args.norm != "batch":
            options["norm"] = args.norm
        if args.log_d:
            options["log_d"] = (args.two_theta_min, args.two_theta_max)
        return tuple(options.items())
    return ("d_model", args.d_model), ("depth", args.depth), ("intensity", args.intensity)


def grid_of(args):
    """The patterns' grid of ``args``."""
    from xtal_utils import pattern_sets as ps

    return ps.Grid(n_points=args.n_points, fwhm=args.fwhm, two_theta_min=args.two_theta_min,
                   two_theta_max=args.two_theta_max)


def stream_config(args):
    """The :class:`~xtal_utils.train.StreamConfig` of ``args`` (``benchmarks/levers.py`` times its pilot)."""
    from xtal_utils import pattern_sets as ps
    from xtal_utils.train import StreamConfig

    return StreamConfig(kind=args.kind, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed,
                        model=args.model, model_options=model_options(args),
                        augmentation=ps.REALISTIC if args.augment else None,
                        crystals=(("max_atoms", args.max_atoms), ("min_distance", args.min_distance)),
                        precision=getattr(args, "precision", "auto"), ema=args.ema)


def run(args) -> dict:
    from xtal_utils import evaluate, experiments
    from xtal_utils.models import MODELS, n_parameters
    from xtal_utils.symmetry import n_classes
    from xtal_utils.train import fit_stream, recalibrate_batchnorm

    if args.threads:
        torch.set_num_threads(args.threads)
    grid = grid_of(args)
    kind = args.kind
    print("preparing the test sets ...", flush=True)
    tests = experiments.stream_test_sets(grid, amcsd=not args.no_amcsd, rruff=not args.no_rruff)
    print(", ".join(f"{name} {len(t.space_groups)}" for name, t in tests.items()), flush=True)

    config = stream_config(args)
    stream = config.stream(grid.simulator("cpu"), args.seed)
    calibration = config.stream(grid.simulator("cpu"), args.seed + 10**6)
    model = MODELS[args.model](n_classes(kind), **dict(config.model_options))
    torch.manual_seed(args.seed)
    print(f"{args.model}: {n_parameters(model) / 1e6:.2f}M parameters; {args.steps} steps of "
          f"{args.batch_size} = {args.steps * args.batch_size:,} patterns", flush=True)

    def score(net, step):
        t0 = time.perf_counter()
        probe = recalibrate_batchnorm(copy.deepcopy(net), calibration.batches(start=0, stop=16))
        row = experiments.score_on(probe.eval(), tests, kind)
        row["eval_seconds"] = time.perf_counter() - t0
        print(f"  step {step:6d} ({step * args.batch_size:9,d} patterns): " + ", ".join(
            f"{name} {row[f'{name}_eg_top1']:.1f}/{row[f'{name}_eg_top5']:.1f}" for name in tests), flush=True)
        return row

    checkpoint = RESULTS / f".learning_curve_{args.tag}.pt" if args.resumable else None
    state = fit_stream(model, stream, config, checkpoint=checkpoint, checkpoint_every=args.eval_every or 1000,
                       evaluate=score, eval_every=args.eval_every, workers=args.workers, progress=not args.quiet)
    result = {"tag": args.tag, "provenance": provenance(sys.argv), "args": vars(args),
              "parameters": n_parameters(model), "seconds": state["seconds"],
              "data_seconds": state["data_seconds"], "data_share": state["data_seconds"] / state["seconds"],
              "patterns_per_second": args.steps * args.batch_size / state["seconds"],
              "curve": state["curve"], "history": state["history"]}
    print(f"trained in {state['seconds'] / 60:.1f} min, {result['patterns_per_second']:.0f} patterns/s, "
          f"waiting on data {100 * result['data_share']:.1f} % of the time", flush=True)

    if args.save_model:
        from xtal_utils.classify import save_classifier

        final = recalibrate_batchnorm(model, calibration.batches(start=0, stop=32)).eval()
        # temperature from fresh validation crystals (another seed than every test set)
        val = config.stream(grid.simulator("cpu"), args.seed + 2 * 10**6, batch_size=256)
        logits, labels = [], []
        with torch.no_grad():
            for x, y in val.batches(start=0, stop=8):
                logits.append(final(x).float())
                labels.append(y)
        temperature = evaluate.fit_temperature(torch.cat(logits).numpy(), torch.cat(labels).numpy() + 1)
        last = state["curve"][-1]
        save_classifier(args.save_model, final, kind=kind, two_theta_range=(grid.two_theta_min, grid.two_theta_max),
                        n_points=grid.n_points, wavelength=grid.wavelength, radiation=grid.radiation,
                        temperature=temperature, metadata={
                            "fwhm": grid.fwhm, "training": "fresh random crystals (xtal_utils.crystals.sample_crystals), "
                            "balanced over extinction groups, a new batch every step",
                            "augmentation": "realistic" if args.augment else "none",
                            "steps": args.steps, "batch_size": args.batch_size, "patterns_seen": args.steps * args.batch_size,
                            "training_minutes": state["seconds"] / 60, "lr": args.lr, "seed": args.seed,
                            "log_d_axis": bool(args.log_d), "intensity": args.intensity,
                            "min_distance": args.min_distance, "scores": {k: v for k, v in last.items()},
                            **provenance(sys.argv)})
        result["temperature"] = temperature
        result["model"] = str(args.save_model)
        result["saved_scores"] = score_saved(args.save_model, tests)
        print(f"wrote {args.save_model} (temperature {temperature:.2f}); its own scores: " + ", ".join(
            f"{name} {result['saved_scores'][f'{name}_eg_top1']:.1f}/{result['saved_scores'][f'{name}_eg_top5']:.1f}"
            for name in tests))
        cards.write_reference_card(result, args.save_model.with_suffix(".md"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"learning_curve_{args.tag}.json").write_text(json.dumps(result, indent=1, default=lambda o: str(o) if isinstance(o, Path) else float(o)) + "\n")
    return result


def score_saved(path: Path, tests: dict) -> dict:
    """EG top-1 and top-5 (percent) of a saved classifier file on each test set, through the file's own
    path (:func:`xtal_utils.classify.load_classifier`), temperature applied."""
    from xtal_utils import evaluate
    from xtal_utils.classify import load_classifier

    classifier = load_classifier(path, device="cpu")
    out = {}
    for name, test in tests.items():
        logits = classifier.logits(test.patterns) / classifier.temperature
        s = evaluate.score(evaluate.softmax(logits), test.space_groups, classifier.kind)
        out[f"{name}_eg_top1"] = 100 * s["extinction_group_top1"]
        out[f"{name}_eg_top5"] = 100 * s["extinction_group_top5"]
    return out


def plot(tags=None) -> Path:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from xtal_utils.plotting import apply_style

    apply_style()
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("learning_curve_*.json"))]
    runs = [r for r in runs if tags is None or r["tag"] in tags]
    fig, axes = plt.subplots(2, len(TESTS), figsize=(7.0, 4.2), sharex=True, sharey="row")
    # long runs solid, from one palette (the longest in black); short lever runs dashed, from another
    long_colours = ("black", "tab:blue", "tab:olive", "tab:cyan", "tab:red")
    lever_colours = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")
    runs.sort(key=lambda r: (r["tag"].startswith("lever"), -r["curve"][-1]["patterns"], r["tag"]))
    n_long = n_lever = 0
    for run_ in runs:
        curve = run_["curve"]
        patterns = np.array([row["patterns"] for row in curve])
        lever = run_["tag"].startswith("lever")
        if lever:
            colour, n_lever = lever_colours[n_lever % len(lever_colours)], n_lever + 1
        else:
            colour, n_long = long_colours[n_long % len(long_colours)], n_long + 1
        style = dict(marker=".", markersize=3, linewidth=0.8 if lever else 1.4, linestyle="--" if lever else "-",
                     color=colour)
        for j, test in enumerate(TESTS):
            for i, k in enumerate((1, 5)):
                key = f"{test}_eg_top{k}"
                if key in curve[0]:
                    axes[i, j].plot(patterns, [row[key] for row in curve], label=run_["tag"], **style)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ticks = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    label = FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k")
    for j, test in enumerate(TESTS):
        axes[0, j].set_title(LABELS[test], fontsize=8)
        axes[1, j].set_xlabel("patterns seen")
        axes[1, j].set_xscale("log")
        for ax in axes[:, j]:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(label)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_ylabel("EG top-1 (%)")
    axes[1, 0].set_ylabel("EG top-5 (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out = RESULTS / "learning_curve.png"
    fig.savefig(out, dpi=200)
    fig.savefig(out.with_suffix(".pdf"))
    return out


def arguments() -> argparse.ArgumentParser:
    """This script's options (``benchmarks/levers.py`` starts from their defaults)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="resnet")
    parser.add_argument("--model", default="ResNet1d", choices=["ResNet1d", "Transformer1d"])
    parser.add_argument("--kind", default="extinction_group", choices=["extinction_group", "space_group"])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--n-points", type=int, default=2048)
    parser.add_argument("--fwhm", type=float, default=0.1, help="Gaussian peak width, degrees")
    parser.add_argument("--two-theta-min", type=float, default=5.0)
    parser.add_argument("--two-theta-max", type=float, default=90.0)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 1, 1])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--log-d", action="store_true", help="resample onto a ln d axis inside the model")
    parser.add_argument("--norm", default="batch", choices=["batch", "group"], help="ResNet1d's normalisation")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="decay of a moving average of the weights, evaluated and saved in their place")
    parser.add_argument("--intensity", default="linear", choices=["linear", "sqrt", "log"],
                        help="how the model scales intensities first")
    parser.add_argument("--augment", action="store_true", help="realism augmentations (ps.REALISTIC)")
    parser.add_argument("--max-atoms", type=int, default=48)
    parser.add_argument("--min-distance", type=float, default=None,
                        help="Angstrom: redraw training crystals with two atoms closer (sample_crystals)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "float32"],
                        help="auto: bfloat16 on CUDA, float32 on the CPU; bf16: bfloat16 where the hardware has it")
    parser.add_argument("--workers", type=int, default=1, help="background processes making batches")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the training process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-amcsd", action="store_true")
    parser.add_argument("--no-rruff", action="store_true")
    parser.add_argument("--resumable", action="store_true", help="checkpoint, and resume an interrupted run")
    parser.add_argument("--save-model", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--plot", action="store_true", help="only draw the figure of the saved runs")
    parser.add_argument("--card", type=Path, default=None,
                        help="only write the model card of --tag's saved model to this path")
    return parser


def main() -> None:
    args = arguments().parse_args()
    if args.plot:
        print(plot())
        return
    if args.card:
        print(cards.write_reference_card(json.loads((RESULTS / f"learning_curve_{args.tag}.json").read_text()), args.card))
        return
    run(args)
    plot()


if __name__ == "__main__":
    main()
