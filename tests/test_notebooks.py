"""Every numbered notebook at the smoke preset, through papermill, and the values it records."""

import json

import nbformat
import pytest

from xtal_utils.paths import NOTEBOOKS
from xtal_utils.study import load_preset, numbered_notebooks, run_notebook

NOTEBOOK_FILES = numbered_notebooks()


def test_there_are_notebooks():
    assert NOTEBOOK_FILES, "no numbered notebooks found"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), "no parameters cell"


def _run(stem):
    path = NOTEBOOKS / f"{stem}.ipynb"
    return run_notebook(path, "smoke", load_preset("smoke"))


def _check_topk(metrics, prefix):
    t1, t3, t5 = (metrics[f"{prefix}_top{k}"] for k in (1, 3, 5))
    assert 0.0 <= t1 <= t3 <= t5 <= 1.0


@pytest.mark.notebook
def test_00_labels():
    metrics = _run("00_labels")
    assert metrics["n_space_groups"] == 230
    assert metrics["n_extinction_groups"] == 99
    assert metrics["n_extinction_groups_by_system"] == 101
    assert metrics["matches_reference"] is True
    assert metrics["largest_group_size"] == 16
    assert 0 < metrics["n_single_member_groups"] < 99
    assert metrics["environment"]["device"] in ("cpu", "cuda")


def test_every_notebook_has_a_smoke_test():
    missing = [p.stem for p in NOTEBOOK_FILES if f"test_{p.stem}" not in globals()]
    assert not missing, f"notebooks without a smoke test of their metrics: {missing}"
