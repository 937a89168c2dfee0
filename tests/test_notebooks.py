"""Every numbered notebook at the smoke preset, through papermill, and the values it records."""

import json

import nbformat
import papermill
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
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must carry the papermill 'parameters' tag"
    # papermill must parse every assignment there, or a preset could not override it
    assigned = [line.split(":")[0].split("=")[0].strip() for line in cells[0].source.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert sorted(papermill.inspect_notebook(str(path))) == sorted(assigned)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_presets_only_name_declared_parameters(preset):
    declared = set()
    for path in NOTEBOOK_FILES:
        declared |= set(papermill.inspect_notebook(str(path)))
    unknown = set(load_preset(preset)) - declared
    assert not unknown, f"{preset}.yaml sets parameters no notebook declares: {sorted(unknown)}"


def _run(stem):
    path = NOTEBOOKS / f"{stem}.ipynb"
    return run_notebook(path, "smoke", load_preset("smoke"))


def _check_topk(metrics, prefix):
    t1, t3, t5 = (metrics[f"{prefix}_top{k}"] for k in (1, 3, 5))
    assert 0.0 <= t1 <= t3 <= t5 <= 1.0


@pytest.mark.notebook
def test_01_data():
    m = _run("01_data")
    assert m["amcsd_read"] == m["amcsd_kept"] + m["amcsd_skipped"]
    assert 0 < m["amcsd_dedup_entries"] <= m["amcsd_kept"]
    assert 0.0 <= m["duplicate_fraction"] < 1.0
    assert m["balanced_extinction_groups_present"] == 99  # every group gets its crystal
    assert m["balanced_effective_classes"] > m["amcsd_effective_classes"]  # flat against skewed
    assert m["spglib_agreement"] >= 0.9


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
