"""The prepared GPU run (benchmarks/gpu.py) at a tiny size on the CPU, so that it cannot rot unseen."""

import importlib.util
import json

from xtal_utils.paths import ROOT


def test_the_gpu_script_runs_every_step_at_a_tiny_size(tmp_path, monkeypatch):
    import xtal_utils.config as config_module

    monkeypatch.setattr(config_module, "CACHE", tmp_path / "cache")  # the slice's model stays out of data/cache
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    result = gpu.main(["--tiny", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert json.loads((tmp_path / "out" / "gpu.json").read_text()) == json.loads(json.dumps(result))
    for step in ("simulate", "train", "slice"):
        assert "error" not in result[step], result[step]
    assert {"date", "commit", "command", "device", "device_name", "bf16"} <= set(result["provenance"])
    assert result["simulate"]["device"] > 0 and result["simulate"]["cpu"] > 0
    assert set(result["train"]) == {"float32", "bf16"} and min(result["train"].values()) > 0
    assert result["slice"]["patterns"] == 4 * 8 and 0 <= result["slice"]["scores"]["fresh"][1] <= 1
