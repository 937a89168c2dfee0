"""Run the study: every numbered notebook at one preset, through papermill.

    xtal-study --preset cpu            # what `make study` does
    xtal-study --preset smoke --only 00 03

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="notebooks/params/<preset>.yaml (default: cpu)")
    parser.add_argument("--only", nargs="*", help="notebook numbers or slugs to run (default: all)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)

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
