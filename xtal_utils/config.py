"""Seeding, device choice, content-hash cache keys and run records."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np

from xtal_utils import __version__
from xtal_utils.paths import CACHE, ROOT, RUNS, STUDY_MODELS


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # symmetry and crystals work without torch
        return
    torch.manual_seed(seed)


def default_device(device: str | None = None) -> str:
    """The given device, else 'cuda' when a GPU is visible, else 'cpu'."""
    if device:
        return device
    import torch  # here, not at the top: symmetry and crystals work without torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_jsonable(obj):
    """Turn dataclasses, numpy scalars/arrays, tuples and paths into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cache_key(config) -> str:
    """sha256 of the canonical JSON of ``config`` and the package version (first 16 hex digits)."""
    canonical = json.dumps({"config": to_jsonable(config), "version": __version__}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# the files that mark a cache entry as complete; a seeded entry's marker is copied last
_DONE_MARKERS = ("done.json", "model.pt")


def cache_dir(kind: str, config) -> Path:
    """``data/cache/<kind>/<key>/``, created if missing; the config is stored beside the data.

    A new entry is first seeded from ``models/study/<kind>/<key>/`` when the repository ships one (a
    trained model that a full study would otherwise train again; :func:`ship_cached` writes them), unless
    the environment sets ``XTAL_RETRAIN=1``."""
    path = CACHE / kind / cache_key(config)
    new = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    seed = STUDY_MODELS / kind / path.name
    if new and seed.is_dir() and os.environ.get("XTAL_RETRAIN", "").strip() in ("", "0"):
        for source in sorted(seed.iterdir(), key=lambda f: f.name in _DONE_MARKERS):
            with atomic_path(path / source.name) as tmp:
                tmp.write_bytes(source.read_bytes())
    if not (path / "config.json").exists():
        write_json_atomic(path / "config.json", to_jsonable(config))
    return path


def ship_cached(kind: str, key: str) -> Path:
    """Copy the complete cache entry ``data/cache/<kind>/<key>/`` into ``models/study/<kind>/<key>/``, where
    :func:`cache_dir` seeds a fresh checkout's cache from it. A training checkpoint keeps only what a
    finished model is read back with (its weights and history), not the optimiser's state."""
    import torch  # here: config is imported by modules that work without torch

    source, target = CACHE / kind / key, STUDY_MODELS / kind / key
    if not any((source / marker).exists() for marker in _DONE_MARKERS):
        raise FileNotFoundError(f"{source} holds no finished model (none of {', '.join(_DONE_MARKERS)})")
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name == "checkpoint.pt" and (source / "done.json").exists():
            state = torch.load(file, map_location="cpu", weights_only=True)
            slim = {"model_spec": state["model_spec"], "best_state": state["best_state"] or state["model_state"],
                    "model_state": None, "history": state["history"]}
            with atomic_path(target / file.name) as tmp:
                torch.save(slim, tmp)
        elif file.suffix in (".pt", ".json"):
            with atomic_path(target / file.name) as tmp:
                tmp.write_bytes(file.read_bytes())
    return target


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends without
    an error, removed otherwise, so that a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _null_non_finite(obj):
    """``obj`` (plain JSON values) with every NaN or infinite float replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _null_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_null_non_finite(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data) -> None:
    """Write strict JSON atomically (:func:`atomic_path`): a value that does not apply (NaN, infinity)
    is written as null."""
    text = json.dumps(_null_non_finite(to_jsonable(data)), indent=2, sort_keys=True, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def run_dir(slug: str, preset: str) -> Path:
    """``runs/<slug>/<preset>/``: where a notebook's executed copy, config and metrics go."""
    path = RUNS / slug / preset
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run(slug: str, preset: str, config, metrics: dict) -> Path:
    """Write ``config.json`` and ``metrics.json`` for one notebook run; returns the run folder."""
    path = run_dir(slug, preset)
    write_json_atomic(path / "config.json", config)
    write_json_atomic(path / "metrics.json", metrics)
    return path


def resolve(path: str | Path) -> Path:
    """A path from a preset, relative to the repository root unless absolute."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def provenance(argv) -> dict:
    """Where and how a benchmark ran: date, command, commit, machine, torch version and device."""
    import torch  # here, not at the top: symmetry and crystals work without torch

    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(argv),
            "commit": commit, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": str(torch.__version__), "device": "cuda" if torch.cuda.is_available() else "cpu"}
