"""The committed runs are clean: strict-JSON metrics, and executed notebooks without progress bars or
the paths of the machine that ran them."""

import json
import re

import nbformat
import numpy as np
import pytest

from xtal_utils.config import write_json_atomic
from xtal_utils.paths import ROOT, RUNS
from xtal_utils.study import clean_outputs

METRICS = sorted(RUNS.glob("*/cpu/metrics.json"))
EXECUTED = sorted(RUNS.glob("*/cpu/executed.ipynb"))
# an absolute POSIX path of two or more parts, not part of a URL, a fraction or a closing HTML tag
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/<~-])/(?:[\w.-]+/)+[\w.-]*")


def _refuse(constant):
    raise ValueError(f"{constant} is not JSON")


def _texts(nb):
    """Every text an executed notebook shows: stream, text/* data, tracebacks and papermill's metadata."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.text
            for key, value in output.get("data", {}).items():
                if key.startswith("text/"):
                    yield value
            yield from output.get("traceback", [])
    yield json.dumps(nb.metadata.get("papermill", {}))


def test_runs_are_committed():
    assert METRICS and EXECUTED


@pytest.mark.parametrize("path", METRICS, ids=lambda p: p.parts[-3])
def test_metrics_are_strict_json(path):
    json.loads(path.read_text(), parse_constant=_refuse)


def test_writer_turns_non_finite_numbers_into_null(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"top1": 0.5, "nll": float("nan"), "rows": [{"ece": np.float64("inf")}],
                             "curve": np.array([1.0, np.nan])})
    data = json.loads(path.read_text(), parse_constant=_refuse)
    assert data == {"top1": 0.5, "nll": None, "rows": [{"ece": None}], "curve": [1.0, None]}


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.parts[-3])
def test_executed_notebooks_hold_no_progress_bars_or_machine_paths(path):
    for text in _texts(nbformat.read(path, as_version=4)):
        assert "\r" not in text, f"progress-bar output: {text[:80]!r}"
        assert not ABSOLUTE_PATH.search(text), f"absolute path: {ABSOLUTE_PATH.search(text).group()}"


def test_clean_outputs_drops_bars_and_relativises_paths():
    root = str(ROOT)
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"input_path": f"{root}/notebooks/x.ipynb"}})
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr",
                               text=f"{root}/.venv/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"
                                    "  from .autonotebook import tqdm as notebook_tqdm\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\rtraining:  50%|#####     | 1/2"),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote {root}/models/m.pt\nin {root}\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"PosixPath('{root}/figures/a.png')",
                                                       "image/png": "iVBORw0KGgo="}),
    ]
    nb.cells.append(cell)
    clean_outputs(nb, root)
    assert [o.output_type for o in cell.outputs] == ["stream", "execute_result"]
    assert cell.outputs[0].text == "wrote models/m.pt\nin .\n"
    assert cell.outputs[1].data == {"text/plain": "PosixPath('figures/a.png')", "image/png": "iVBORw0KGgo="}
    assert nb.metadata.papermill.input_path == "notebooks/x.ipynb"



def test_the_shipped_study_models_are_the_cpu_presets_own():
    """Every entry of models/study/ is a finished cache entry named by the hash of the config stored beside it,
    listed in models/study/README.md; the two main stream models carry the keys that notebook 02 asks for at
    the cpu preset (so that `make study` reads them rather than training them)."""
    from xtal_utils import experiments as ex, pattern_sets as ps
    from xtal_utils.config import cache_key
    from xtal_utils.paths import STUDY_MODELS
    from xtal_utils.study import load_preset
    from xtal_utils.train import StreamConfig

    listed = (STUDY_MODELS / "README.md").read_text()
    entries = [path for path in STUDY_MODELS.glob("*/*") if path.is_dir()]
    assert len(entries) == 5
    for path in entries:
        assert f"`{path.parent.name}/{path.name}`" in listed, path
        assert (path / "model.pt").exists() or (path / "done.json").exists(), path
    cpu = load_preset("cpu")
    grid = ps.Grid(n_points=cpu["stream_points"], fwhm=cpu["fwhm"])
    for kind in ("extinction_group", "space_group"):
        config = StreamConfig(kind=kind, steps=cpu["stream_steps"], batch_size=cpu["batch_size"], seed=cpu["seed"])
        key = cache_key(ex.stream_run_key(config, grid))
        assert (STUDY_MODELS / "stream_runs" / key / "model.pt").exists(), kind
