"""Run the study: every numbered notebook at one preset, through papermill.

    xtal-study --preset cpu            # what `make study` does
    xtal-study --preset smoke --only 00 03
    xtal-study --findings              # the README's findings table: notebooks/findings.yaml on the cpu runs

Each notebook is executed into ``runs/<slug>/<preset>/executed.ipynb`` (never in place) with the
values of ``notebooks/params/<preset>.yaml`` that its parameters cell declares, then rewritten without
progress bars and with paths relative to the repository root. The notebook itself
writes ``config.json`` and ``metrics.json`` beside it; this runner gathers every ``metrics.json`` into
``results/<preset>/summary.csv``.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import operator
import re
import string
import sys
import time

import nbformat
import numpy as np
import pandas as pd
import yaml

from xtal_utils.config import atomic_path, run_dir
from xtal_utils.paths import NOTEBOOKS, PARAMS, RESULTS, ROOT


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
    import papermill as pm  # here: slow to import, and `xtal-study --findings` runs no notebook

    # Every preset value goes in: papermill only warns about names a notebook does not use, and
    # silently dropping a value the notebook meant to take would run it at the wrong size.
    chosen = {**params, "preset": preset}
    logging.getLogger("papermill").addFilter(_hide_unknown_parameter_notes)
    out = run_dir(notebook.stem, preset) / "executed.ipynb"
    try:
        pm.execute_notebook(
            str(notebook), str(out), parameters=chosen, kernel_name="python3",
            cwd=str(NOTEBOOKS), progress_bar=False, log_output=log_output,
        )
    finally:
        if out.exists():
            clean_executed(out)
    return json.loads((out.parent / "metrics.json").read_text())


# tqdm's two-line warning that a batch kernel has no ipywidgets; its first line names site-packages
_TQDM_WIDGET_NOTE = ("TqdmWarning: IProgress not found", "from .autonotebook import tqdm as notebook_tqdm")


def _without_progress(text: str) -> str:
    """``text`` without its progress-bar lines (those holding a carriage return) or tqdm's widget note."""
    return "".join(line for line in re.split(r"(?<=\n)", text)
                   if "\r" not in line and not any(note in line for note in _TQDM_WIDGET_NOTE))


def clean_outputs(nb, root: str) -> None:
    """Drop progress bars from ``nb``'s stream outputs and write paths under ``root`` relative to it,
    in every text output and in papermill's metadata; images and numbers are left as they are."""
    under_root = re.compile(re.escape(root) + r"(/|(?![\w.-]))")

    def relative(text: str) -> str:
        return under_root.sub(lambda m: "" if m.group(1) else ".", text)

    for cell in nb.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = relative(_without_progress(output.text))
                if not output.text.strip():
                    continue
            for key, value in output.get("data", {}).items():
                if key.startswith("text/"):
                    output.data[key] = relative(value)
            if "traceback" in output:
                output.traceback = [relative(line) for line in output.traceback]
                output.evalue = relative(output.evalue)
            outputs.append(output)
        if "outputs" in cell:
            cell.outputs = outputs
    papermill = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if isinstance(papermill.get(key), str):
            papermill[key] = relative(papermill[key])


def clean_executed(path) -> None:
    """Rewrite an executed notebook (atomically) without progress bars or this checkout's absolute paths."""
    nb = nbformat.read(path, as_version=4)
    clean_outputs(nb, str(ROOT))
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)


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
# The slides' findings (notebooks/findings.yaml), each with our number from the runs and a verdict by its rule

FINDINGS = NOTEBOOKS / "findings.yaml"
_REQUIRED = {"finding", "slides_say", "notebook", "slides", "ours", "rule", "verdicts", "otherwise"}
_OPTIONAL = {"nist"}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_COMPARISONS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCTIONS = {"abs": abs, "max": max, "hypot": lambda a, b: float(np.hypot(a, b))}


class NullMetric(Exception):
    """An expression read a metric that is null: it does not apply to this run."""


def load_findings(path=FINDINGS) -> list[dict]:
    """The findings of ``path`` (notebooks/findings.yaml), each checked for its fields."""
    findings = yaml.safe_load(path.read_text())
    for i, finding in enumerate(findings, 1):
        keys = set(finding)
        if not _REQUIRED <= keys <= _REQUIRED | _OPTIONAL:
            raise ValueError(f"{path}, finding {i}: missing {sorted(_REQUIRED - keys)}, "
                             f"unknown {sorted(keys - _REQUIRED - _OPTIONAL)}")
    return findings


def evaluate_expression(expression: str, metrics: dict):
    """The value of ``expression`` over one notebook's ``metrics``.

    An expression holds metric names, numbers, ``+ - * /``, unary ``-``, one comparison (``< <= > >=``),
    ``and``/``or`` and the functions ``abs``, ``max`` and ``hypot``. Raises :class:`NullMetric` when it
    reads a null metric, and ValueError for anything else or for a name that is not a numeric metric.
    """
    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in metrics:
                raise ValueError(f"{expression!r}: no metric {node.id!r}")
            found = metrics[node.id]
            if found is None:
                raise NullMetric(node.id)
            if type(found) not in (int, float):
                raise ValueError(f"{expression!r}: metric {node.id!r} is not a number")
            return found
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARISONS:
            return _COMPARISONS[type(node.ops[0])](value(node.left), value(node.comparators[0]))
        if isinstance(node, ast.BoolOp):
            values = [value(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            return _FUNCTIONS[node.func.id](*(value(a) for a in node.args))
        raise ValueError(f"{expression!r}: {ast.unparse(node)!r} is not allowed in a finding's expression")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"{expression!r} is not an expression: {err.msg}") from None
    return value(tree.body)


def fill_template(template: str, metrics: dict) -> str:
    """``template`` with each ``{expression:format}`` field filled from ``metrics``."""
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            if conversion:
                raise ValueError(f"{template!r}: a field takes a format, not a conversion (!{conversion})")
            parts.append(format(evaluate_expression(field, metrics), spec))
    return "".join(parts)


def _holds(condition: str, metrics: dict) -> bool:
    try:
        return bool(evaluate_expression(condition, metrics))
    except NullMetric:
        return False


def finding_row(finding: dict, metrics: dict) -> dict:
    """One row of the findings table: ``finding`` (from findings.yaml) judged on its notebook's ``metrics``."""
    templates = finding["ours"] if isinstance(finding["ours"], list) else [finding["ours"]]
    for template in templates:
        try:
            ours = fill_template(template, metrics)
            break
        except NullMetric:
            continue
    else:
        raise ValueError(f"finding {finding['finding']!r}: every template of 'ours' reads a null metric")
    verdict = next((label for label, condition in finding["verdicts"].items() if _holds(condition, metrics)),
                   finding["otherwise"])
    return {"finding": finding["finding"], "notebook": finding["notebook"][:2], "slides": finding["slides"],
            "nist": finding.get("nist") or "—", "ours": ours, "rule": finding["rule"], "verdict": verdict}


def run_metrics(preset: str) -> dict[str, dict]:
    """Each notebook's ``runs/<notebook>/<preset>/metrics.json``, by notebook slug, where the run exists."""
    metrics = {}
    for notebook in numbered_notebooks():
        path = run_dir(notebook.stem, preset) / "metrics.json"
        if path.exists():
            metrics[notebook.stem] = json.loads(path.read_text())
    return metrics


def findings_table(preset: str = "cpu") -> str:
    """The README's findings table (markdown): each finding of notebooks/findings.yaml whose notebook has a
    run at ``preset``, judged on that run's metrics."""
    metrics = run_metrics(preset)
    lines = [f"| finding of the slides | notebook | slides | NIST | ours, {preset} preset | verdict (rule) |",
             "|---|---|---|---|---|---|"]
    for finding in load_findings():
        if metrics.get(finding["notebook"]):
            row = finding_row(finding, metrics[finding["notebook"]])
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

