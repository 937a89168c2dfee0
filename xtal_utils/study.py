"""Run the study: every numbered notebook at one preset, through papermill.

    xtal-study --preset cpu            # what `make study` does
    xtal-study --preset smoke --only 00 03
    xtal-study --findings              # the README's findings table, from the cpu runs' metrics

Each notebook is executed into ``runs/<slug>/<preset>/executed.ipynb`` (never in place) with the
values of ``notebooks/params/<preset>.yaml`` that its parameters cell declares. The notebook itself
writes ``config.json`` and ``metrics.json`` beside it; this runner gathers every ``metrics.json`` into
``results/<preset>/summary.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np
import pandas as pd
import yaml

from xtal_utils.config import run_dir
from xtal_utils.paths import NOTEBOOKS, PARAMS, RESULTS


def numbered_notebooks(only: list[str] | None = None):
    """The study's notebooks, NN_slug.ipynb, in reading order; ``only`` keeps those whose NN or slug is named."""
    notebooks = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if p.stem[:2] in only or p.stem in only]
    return notebooks


def load_preset(preset: str) -> dict:
    path = PARAMS / f"{preset}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS.glob("*.yaml"))
        raise SystemExit(f"unknown preset {preset!r}: no {path}; known presets: {', '.join(known)}")
    params = yaml.safe_load(path.read_text()) or {}
    # A notebook run by hand with ``papermill -f <preset>.yaml`` takes its preset's name from the file:
    # without it the notebook's default would file the results under another preset's runs.
    if params.get("preset") != preset:
        raise SystemExit(f"{path} must set 'preset: {preset}', got {params.get('preset')!r}")
    return params


def _hide_unknown_parameter_notes(record: logging.LogRecord) -> bool:
    """Hide papermill's note on preset values a notebook does not use (tests check every one is used)."""
    return not record.getMessage().startswith("Passed unknown parameter")


def run_notebook(notebook, preset: str, params: dict, *, log_output: bool = False):
    """Execute one notebook at ``preset``; returns its metrics dict."""
    import papermill as pm

    # Every preset value goes in: papermill only warns about names a notebook does not use, and
    # silently dropping a value the notebook meant to take would run it at the wrong size.
    chosen = {**params, "preset": preset}
    logging.getLogger("papermill").addFilter(_hide_unknown_parameter_notes)
    out = run_dir(notebook.stem, preset) / "executed.ipynb"
    pm.execute_notebook(
        str(notebook), str(out), parameters=chosen, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, log_output=log_output,
    )
    return json.loads((out.parent / "metrics.json").read_text())


def summarise(preset: str) -> pd.DataFrame:
    """Gather the scalar metrics of every run at ``preset`` into ``results/<preset>/summary.csv``."""
    rows = []
    for notebook in numbered_notebooks():
        path = run_dir(notebook.stem, preset) / "metrics.json"
        if path.exists():
            for key, value in json.loads(path.read_text()).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append({"notebook": notebook.stem, "metric": key, "value": value})
    table = pd.DataFrame(rows, columns=["notebook", "metric", "value"])
    (RESULTS / preset).mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / preset / "summary.csv", index=False)
    return table

# ---------------------------------------------------------------------------------------------
# The slides' findings, each with our number from the committed runs and a verdict by a stated rule

def _pm(mean: float, sd: float) -> str:
    return f"{100 * mean:+.1f} ± {100 * sd:.1f}"


def _finding_rows(m: dict) -> list[dict]:
    """One row per finding of the slides. ``m[slug]`` is a notebook's metrics; every number comes from it."""
    rows = []
    if m.get("01_data"):
        share = m["01_data"]["duplicate_fraction"]
        rows.append({
            "finding": "about a third of a structure database is duplicates (same reduced formula and space group)",
            "notebook": "01", "slides": "33% (ICSD)", "nist": "—", "ours": f"{100 * share:.1f}% of AMCSD",
            "rule": "reproduced within 10 points", "verdict": "reproduced" if abs(share - 0.33) <= 0.10 else "not reproduced"})
    s02, s03, s04, s05, s06, s07, s08 = (m.get(k) for k in ("02_sg_vs_ext", "03_duplicates", "04_bias", "05_scaling",
                                                            "06_resolution", "07_interpretability", "08_measured"))
    if s02:
        mean, sd = s02["collapsed_minus_eg_top1_sweep"], s02["collapsed_minus_eg_top1_sweep_std"]
        rows.append({
            "finding": "a space-group model collapsed to extinction groups loses nothing against an EG model",
            "notebook": "02", "slides": "same or better", "nist": "—",
            "ours": f"collapsed − EG top-1: {100 * s02['collapsed_minus_eg_top1']:+.1f} points "
                    f"({s02['patterns_main'] / 1e6:.2f}M patterns); {_pm(mean, sd)} over {s02['n_seeds']} seeds",
            "rule": "reproduced unless the seeds' mean is below −2 s.d.",
            "verdict": "reproduced" if mean >= -2 * sd else "contradicted"})
        level = s02["sg_model_collapsed_extinction_group_top1"]
        rows.append({
            "finding": "the collapsed space-group model's EG top-1", "notebook": "02", "slides": "85%", "nist": "—",
            "ours": f"{100 * level:.1f}% on held-out random crystals", "rule": "reproduced within 5 points",
            "verdict": "reproduced" if abs(level - 0.85) <= 0.05 else "not reproduced"})
    if s03:
        inflation = s03["inflation_top1"]
        sd = float(np.hypot(s03["duplicated_top1_std"], s03["deduplicated_top1_std"]))
        rows.append({
            "finding": "duplicates and a random split inflate accuracy", "notebook": "03", "slides": "yes", "nist": "—",
            "ours": f"top-1 {100 * s03['duplicated_top1']:.1f}% against {100 * s03['deduplicated_top1']:.1f}% de-duplicated: "
                    f"{_pm(inflation, sd)} points ({s03['n_seeds']} seeds)",
            "rule": "reproduced if the inflation exceeds 2 s.d.",
            "verdict": "reproduced" if inflation > 2 * sd else "not reproduced"})
    if s04:
        drop = s04["biased_on_biased_top1"] - s04["biased_on_balanced_top1"]
        rows.append({
            "finding": "a model trained on a database's skew fails on balanced data", "notebook": "04", "slides": "yes",
            "nist": "—", "ours": f"biased model: {100 * s04['biased_on_biased_top1']:.1f}% on AMCSD, "
                                 f"{100 * s04['biased_on_balanced_top1']:.1f}% on balanced crystals",
            "rule": "reproduced if it loses over half its accuracy",
            "verdict": "reproduced" if drop > s04["biased_on_biased_top1"] / 2 else "not reproduced"})
        mean, sd = s04["finding_margin_top1_sweep"], s04["finding_margin_top1_sweep_std"]
        main = s04["finding_margin_top1"]
        verdict = ("reproduced" if main > 0 and mean > 2 * sd else
                   "contradicted" if main < 0 and mean < -2 * sd else "not reproduced (within the seed spread)")
        rows.append({
            "finding": "the balanced model does better on biased data than the biased model on balanced data",
            "notebook": "04", "slides": "yes", "nist": "54.0% against 38.7% top-1",
            "ours": f"{100 * s04['balanced_on_biased_top1']:.1f}% against {100 * s04['biased_on_balanced_top1']:.1f}% "
                    f"({100 * main:+.1f} points); {_pm(mean, sd)} over {s04['n_seeds']} seeds at the smaller budget",
            "rule": "reproduced if positive and the seeds' mean exceeds 2 s.d.; contradicted if the reverse",
            "verdict": verdict})
    if s05:
        plateau = s05["resnet_plateau_crystals"]
        found = plateau is not None and plateau <= s05["patterns_seen"] / 4
        rows.append({
            "finding": "the ResNet's accuracy plateaus as the training data grow", "notebook": "05", "slides": "yes",
            "nist": "—",
            "ours": (f"within 2 points of the unlimited stream from {plateau:,} distinct crystals"
                     if plateau is not None else "no plateau below one crystal per pattern seen")
                    + f" ({s05['patterns_seen']:,} patterns); ResNet on the stream {100 * s05['resnet_stream_top1']:.1f}% "
                      f"top-1, {100 * s05['resnet_stream_main_top1']:.1f}% at {s05['patterns_main']:,} patterns; "
                      f"transformer {100 * s05['transformer_stream_top1']:.1f}%",
            "rule": "reproduced if it plateaus at a pool of at most a quarter of the patterns seen",
            "verdict": "reproduced (at this budget)" if found else "not reproduced"})
    if s06:
        spread = max(s06["grid_range_top1"], s06["fwhm_range_top1"])
        sd = s06["seed_sd_top1"]
        rows.append({
            "finding": "accuracy depends on the 2θ grid and the peak width", "notebook": "06", "slides": "yes",
            "nist": "—", "ours": f"top-1 ranges {100 * s06['grid_range_top1']:.1f} points over the grids and "
                                 f"{100 * s06['fwhm_range_top1']:.1f} over the widths; seed s.d. {100 * sd:.1f}",
            "rule": "reproduced if a range exceeds 3 seed s.d.",
            "verdict": "reproduced" if spread > 3 * sd else "not reproduced"})
    if s07:
        gain = max(s07["peak_enrichment_eg_saliency"] - s07["peak_enrichment_untrained_saliency"],
                   s07["absent_enrichment_eg_saliency"] - s07["absent_enrichment_untrained_saliency"])
        rows.append({
            "finding": "the attributions sit on the reflections that decide the class", "notebook": "07", "slides": "yes",
            "nist": "—",
            "ours": f"Saliency enrichment, EG model against untrained: allowed {s07['peak_enrichment_eg_saliency']:.2f} against "
                    f"{s07['peak_enrichment_untrained_saliency']:.2f}, absent {s07['absent_enrichment_eg_saliency']:.2f} "
                    f"against {s07['absent_enrichment_untrained_saliency']:.2f}",
            "rule": "reproduced if training raises an enrichment by over 0.1 above the untrained control",
            "verdict": "reproduced" if gain > 0.1 else "not reproduced"})
    if s08:
        gain = s08["amcsd_member_eg_top1"] - s08["clean_amcsd_eg_eg_top1"]  # one network on AMCSD alone, not the ensemble
        rows.append({
            "finding": "realism augmentation makes simulated training work on measured patterns", "notebook": "08",
            "slides": "yes", "nist": "—",
            "ours": f"RRUFF EG top-1 {100 * s08['amcsd_member_eg_top1']:.1f}% augmented against "
                    f"{100 * s08['clean_amcsd_eg_eg_top1']:.1f}% clean",
            "rule": "reproduced if augmentation adds over 10 points",
            "verdict": "reproduced" if gain > 0.10 else "not reproduced"})
    return rows


def findings_table(preset: str = "cpu") -> str:
    """The README's findings table (markdown), from ``runs/<notebook>/<preset>/metrics.json``."""
    metrics = {}
    for notebook in numbered_notebooks():
        path = run_dir(notebook.stem, preset) / "metrics.json"
        if path.exists():
            metrics[notebook.stem] = json.loads(path.read_text())
    lines = [f"| finding of the slides | notebook | slides | NIST | ours, {preset} preset | verdict (rule) |",
             "|---|---|---|---|---|---|"]
    for row in _finding_rows(metrics):
        lines.append(f"| {row['finding']} | {row['notebook']} | {row['slides']} | {row['nist']} | {row['ours']} | "
                     f"**{row['verdict']}** ({row['rule']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="notebooks/params/<preset>.yaml (default: cpu)")
    parser.add_argument("--only", nargs="*", help="notebook numbers or slugs to run (default: all)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    parser.add_argument("--findings", action="store_true",
                        help="print the README's findings table from the runs at --preset, and run nothing")
    args = parser.parse_args(argv)
    if args.findings:
        print(findings_table(args.preset))
        return 0

    params = load_preset(args.preset)
    notebooks = numbered_notebooks(args.only)
    if not notebooks:
        raise SystemExit(f"no notebook matches {args.only}")
    start = time.perf_counter()
    for i, notebook in enumerate(notebooks, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(notebooks)}] {notebook.name} at preset {args.preset} ...", flush=True)
        run_notebook(notebook, args.preset, params, log_output=args.log_output)
        print(f"      done in {time.perf_counter() - t0:.0f} s", flush=True)
    summary = summarise(args.preset)
    print(f"study at preset {args.preset}: {len(notebooks)} notebooks in "
          f"{(time.perf_counter() - start) / 60:.1f} min; {len(summary)} metrics in "
          f"{RESULTS / args.preset / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

