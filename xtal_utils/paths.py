"""Absolute paths of the study, so that notebooks run by papermill from any directory find their files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CACHE = DATA / "cache"  # content-addressed, gitignored
NOTEBOOKS = ROOT / "notebooks"
PARAMS = NOTEBOOKS / "params"
RUNS = ROOT / "runs"
RESULTS = ROOT / "results"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "figures"
MODELS = ROOT / "models"
