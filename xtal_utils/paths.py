"""Where the package finds its files and writes its caches.

In a source checkout (the repository, installed with ``pip install -e``) everything lives in the
repository: ``data/``, ``models/``, ``runs/`` and the content-addressed cache ``data/cache/``. Installed
from a wheel (``pip install <repo>``), the package carries the shipped classifiers and the
extinction-group table as package data (``xtal_utils/shipped``, ``xtal_utils/tables``; see
``pyproject.toml``), and caches go to the user's cache directory.

The search-match libraries of ``xtal-classify`` always go to the user's cache directory
(:data:`USER_CACHE`): they belong to the tool, not to one checkout. ``XTAL_UTILS_CACHE`` overrides it.
"""

import os
from pathlib import Path

import platformdirs

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
SOURCE_CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "xtal_utils").is_dir()
USER_CACHE = Path(os.environ.get("XTAL_UTILS_CACHE") or platformdirs.user_cache_path("xtal_utils"))
DATA = ROOT / "data"
CACHE = DATA / "cache" if SOURCE_CHECKOUT else USER_CACHE  # content-addressed, gitignored
NOTEBOOKS = ROOT / "notebooks"
PARAMS = NOTEBOOKS / "params"
RUNS = ROOT / "runs"
RESULTS = ROOT / "results"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "figures"
MODELS = ROOT / "models"
# trained study models that seed data/cache/ (config.cache_dir), so that `make study` reads them instead of
# training them again; XTAL_RETRAIN=1 ignores them
STUDY_MODELS = MODELS / "study"
# the classifiers that xtal-classify ships and the extinction-group table: package data in a wheel
SHIPPED_MODELS = PACKAGE / "shipped" if (PACKAGE / "shipped").is_dir() else MODELS
TABLES = PACKAGE / "tables" if (PACKAGE / "tables").is_dir() else DATA / "extinction_groups"
