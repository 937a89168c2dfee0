"""The classifier that ships in models/: the command on a measured and on a simulated pattern file.

The model is written by notebook 08_measured at the cpu preset and committed; these tests read it.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xtal_utils import symmetry
from xtal_utils.classify import DEFAULT_MODEL, load_classifier
from xtal_utils.diffraction import PowderSimulator
from xtal_utils.paths import DATA, MODELS

RRUFF = DATA / "rruff_dev" / "rruff_dev.npz"
STREAM_MEMBER = MODELS / "xtal-classify-xray-stream.pt"  # written by benchmarks/stream_classifier.py


def _classify(path, *args):
    done = subprocess.run([sys.executable, "-m", "xtal_utils.identify", str(path), "--json", "--no-match", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_shipped_model_is_small_and_described():
    assert DEFAULT_MODEL.exists(), "models/xtal-classify-xray.pt is missing: run notebook 08 at the cpu preset"
    assert DEFAULT_MODEL.stat().st_size < 5e6  # a few MB, to live in git
    classifier = load_classifier()
    assert classifier.kind == "space_group" and classifier.radiation == "xray"
    assert classifier.prior is not None and len(classifier.members) == 2
    for key in ("members", "combination", "preset", "date", "device", "rruff_dev_eg_top5", "prior_eg_top5"):
        assert key in classifier.metadata
    for member in classifier.members:  # each says how it was trained and calibrated
        assert member.temperature > 0 and member.prior is not None and "training_data" in member.metadata
    assert (DEFAULT_MODEL.parent / "MODEL_CARD.md").exists()


def test_the_stream_member_is_the_one_in_the_shipped_ensemble():
    stream = load_classifier(STREAM_MEMBER, device="cpu")
    member = load_classifier(device="cpu").members[1]
    assert stream.n_points == member.n_points and stream.temperature == member.temperature
    for key, value in stream.model.state_dict().items():
        assert torch.equal(value, member.model.state_dict()[key]), key
    for key in ("recipe", "command", "commit", "training_minutes", "patterns_seen"):
        assert key in stream.metadata


def test_a_measured_rruff_pattern_file(tmp_path):
    data = np.load(RRUFF)
    path = tmp_path / "rruff_0.xy"
    np.savetxt(path, np.column_stack([data["two_theta"], data["intensity"][0]]),
               header="2theta intensity (RRUFF development pattern 0, Cu K-alpha 1.5418 A)")
    out = _classify(path, "--wavelength", "1.5418", "--top", "5")
    eg_rows, sg_rows = out["model"], out["model_space_groups"]
    assert len(eg_rows) == 5 and len(sg_rows) == 5 and out["error"] is None and out["trust"] == "model"
    probabilities = [r["probability"] for r in eg_rows]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-9


@pytest.mark.parametrize("name, structure", [
    ("NaCl", Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])),
    # diamond Si (Fd-3m, extinction group 97, F d - -): a strict expected failure of the single AMCSD model
    # of 25 passes (F d - - outside its top 5). The shipped AMCSD member of 75 passes ranks F - - - first
    # (47%) and F d - - second (16%); the stream member ranks F d - - first (66%): it learned the d-glide's
    # extra absences (200, 420, ...) from random crystals. The ensemble ranks it second (43.1%), just below
    # F - - - (46.1%)
    ("Si", Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])),
])
def test_a_simulated_pattern_of_a_known_structure(tmp_path, name, structure):
    true_eg = symmetry.extinction_group(structure.get_space_group_info()[1])
    two_theta = np.arange(10.0, 80.0, 0.02)
    simulator = PowderSimulator(two_theta_range=(two_theta[0], two_theta[-1]), n_points=len(two_theta), fwhm=0.12)
    path = tmp_path / f"{name}.xy"
    np.savetxt(path, np.column_stack([two_theta, 1000 * simulator.simulate([structure])[0] + 20]))
    out = _classify(path)
    top5 = [r["label"] for r in out["model"]]
    assert true_eg in top5, f"{name}: true extinction group {true_eg} not in the top 5 {top5}"
