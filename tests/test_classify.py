"""The shipped-classifier file, classify(), and the xtal-classify command, on tiny untrained models."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xtal_utils import classify as classify_module
from xtal_utils import search_match, symmetry
from xtal_utils.classify import (Classifier, Ensemble, classify, load_classifier, save_classifier,
                                 save_ensemble)
from xtal_utils.evaluate import fit_prior_weight
from xtal_utils.identify import main
from xtal_utils.models import ResNet1d
from xtal_utils.paths import ROOT
from xtal_utils.patterns import to_d_spacing, to_two_theta
from xtal_utils.search_match import Library, SearchSettings, load_library, save_library

CU, MO = 1.5406, 0.7107  # Angstrom
GRID = dict(two_theta_range=(5.0, 90.0), n_points=256)
PEAK_D = (4.1, 3.05, 2.51, 2.02, 1.63, 1.37, 1.21)  # Angstrom
PEAK_SIGMA = 0.25  # degrees 2-theta at Cu; a few grid steps wide


def _network(n_classes, in_channels=1, seed=0):
    torch.manual_seed(seed)
    network = ResNet1d(n_classes, in_channels, widths=(4, 8), blocks=(1, 1), pool_size=4)
    with torch.no_grad():  # untrained logits are nearly equal; spread them so rankings mean something
        network.fc.weight.mul_(200)
    return network


def _save(path, n_classes=230, kind="space_group", **settings):
    network = _network(n_classes, 2 if settings.get("sin2theta_channel") else 1)
    return save_classifier(path, network, kind=kind, wavelength=CU, radiation="xray", **GRID, **settings)


@pytest.fixture(scope="module")
def sg_path(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("models") / "sg.pt")


@pytest.fixture(scope="module")
def sg_model(sg_path):
    return load_classifier(sg_path)


def _pattern(wavelength=CU, start=4.0, stop=95.0, step=0.02, peaks=PEAK_D):
    """Peaks at fixed d-spacings sampled on a uniform 2-theta grid at ``wavelength``.

    The intensity is a function of d alone (Gaussians of PEAK_SIGMA degrees in Cu 2-theta), so the
    same crystal measured at two wavelengths gives two samplings of one function.
    """
    two_theta = np.arange(start, stop, step)
    at_cu = to_two_theta(to_d_spacing(two_theta, wavelength), CU)
    intensity = 20.0 + sum(100 / (i + 1) * np.exp(-0.5 * ((at_cu - to_two_theta(d, CU)) / PEAK_SIGMA) ** 2)
                           for i, d in enumerate(peaks))
    return two_theta, intensity


def _write_xy(path, two_theta, intensity):
    np.savetxt(path, np.column_stack([two_theta, intensity]), header="two_theta intensity")
    return path


def test_round_trip_keeps_weights_and_settings(tmp_path):
    prior = np.arange(1, 100, dtype=float)
    path = _save(tmp_path / "eg.pt", 99, "extinction_group", temperature=1.7, prior=prior,
                 metadata={"preset": "cpu", "top1": 0.61, "accuracies": {"top5": 0.9}, "sets": ["AMCSD"]})
    state = torch.load(path, weights_only=True)  # plain values only
    assert state["kind"] == "extinction_group" and state["n_points"] == 256
    assert [p.name for p in tmp_path.iterdir()] == ["eg.pt"]  # no temporary file left behind
    loaded = load_classifier(path)
    assert (loaded.kind, loaded.two_theta_range, loaded.n_points) == ("extinction_group", (5.0, 90.0), 256)
    assert (loaded.wavelength, loaded.radiation, loaded.temperature) == (CU, "xray", 1.7)
    assert loaded.sin2theta_channel is False and not loaded.model.training
    np.testing.assert_allclose(loaded.prior, prior / prior.sum())
    assert loaded.metadata == {"preset": "cpu", "top1": 0.61, "accuracies": {"top5": 0.9}, "sets": ["AMCSD"]}
    reference = _network(99).state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value.cpu(), reference[key])
    np.testing.assert_allclose(loaded.two_theta, np.linspace(5, 90, 256))


@pytest.mark.parametrize("settings,problem", [
    (dict(kind="extinction_group"), "has 99 classes, the model 230"),
    (dict(kind="space_group", sin2theta_channel=True), "input channels"),
    (dict(kind="space_group", prior=[1.0] * 99), "prior must be 230"),
    (dict(kind="space_group", metadata={"when": object()}), "metadata.when"),
    (dict(kind="space_group", radiation="electron"), "radiation"),
])
def test_save_refuses_contradictions(tmp_path, settings, problem):
    arguments = dict(wavelength=CU, radiation="xray", **GRID) | settings
    with pytest.raises(ValueError, match=problem):
        save_classifier(tmp_path / "x.pt", _network(230), **arguments)
    assert not list(tmp_path.iterdir())


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(classify_module, "DEFAULT_MODEL", tmp_path / "models" / "xtal-classify-xray.pt")
    with pytest.raises(FileNotFoundError, match="notebook 08_measured"):
        load_classifier()
    with pytest.raises(FileNotFoundError, match="no such classifier file"):
        load_classifier(tmp_path / "none.pt")
    torch.save({"model_state": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a xtal-classifier/1 classifier file"):
        load_classifier(tmp_path / "checkpoint.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt: not a classifier file"):
        load_classifier(tmp_path / "junk.pt")


def test_default_model_path():
    assert classify_module.DEFAULT_MODEL == ROOT / "models" / "xtal-classify-xray.pt"


def test_space_group_model_table(sg_model):
    two_theta, intensity = _pattern()
    table = classify(two_theta, intensity, model=sg_model, top=4)
    assert list(table.columns) == ["kind", "rank", "label", "probability", "members", "name", "symbol",
                                   "crystal_family"]
    assert list(table["kind"]) == ["extinction_group"] * 4 + ["space_group"] * 4
    for kind, rows in table.groupby("kind"):
        assert list(rows["rank"]) == [1, 2, 3, 4]
        assert (np.diff(rows["probability"]) <= 0).all() and rows["probability"].sum() <= 1 + 1e-9
        assert rows["probability"].iloc[0] > rows["probability"].iloc[-1]  # the ranking is not a tie
    for _, row in table[table["kind"] == "extinction_group"].iterrows():
        assert row["members"] == list(symmetry.space_groups_in(row["label"]))
        assert row["symbol"] == symmetry.extinction_table()["symbol"].iloc[row["label"] - 1]
    for _, row in table[table["kind"] == "space_group"].iterrows():
        assert row["members"] == [row["label"]]
        assert row["crystal_family"] == symmetry.crystal_family(row["label"])


def test_space_group_symbols():
    assert symmetry.space_group_symbol(14) == "P2_1/c"
    assert symmetry.space_group_symbol(225) == "Fm-3m"


def test_extinction_groups_are_the_collapse_of_space_groups(sg_model):
    two_theta, intensity = _pattern()
    p_sg = sg_model.probabilities(two_theta, intensity, wavelength=CU)
    assert p_sg.shape == (230,) and p_sg.sum() == pytest.approx(1.0)
    p_eg = symmetry.collapse_to_extinction_groups(p_sg)
    table = classify(two_theta, intensity, model=sg_model, top=99)
    eg_rows = table[table["kind"] == "extinction_group"]
    np.testing.assert_allclose(eg_rows["probability"], p_eg[eg_rows["label"] - 1])
    assert list(eg_rows["label"]) == list(np.argsort(-p_eg, kind="stable") + 1)
    assert eg_rows["probability"].sum() == pytest.approx(1.0)
    sg_rows = table[table["kind"] == "space_group"]
    np.testing.assert_allclose(sg_rows["probability"], p_sg[sg_rows["label"] - 1])


def test_extinction_group_model_gives_only_extinction_groups(tmp_path):
    model = load_classifier(_save(tmp_path / "eg.pt", 99, "extinction_group"))
    two_theta, intensity = _pattern()
    table = classify(two_theta, intensity, model=model, top=3)
    assert set(table["kind"]) == {"extinction_group"} and len(table) == 3
    p = model.probabilities(two_theta, intensity, wavelength=CU)
    np.testing.assert_allclose(table["probability"], np.sort(p)[::-1][:3])
    for _, row in table.iterrows():
        assert row["members"] == list(symmetry.space_groups_in(row["label"]))


def test_model_given_as_a_path(sg_path, sg_model):
    two_theta, intensity = _pattern()
    by_path = classify(two_theta, intensity, model=sg_path)
    by_object = classify(two_theta, intensity, model=sg_model)
    np.testing.assert_allclose(by_path["probability"], by_object["probability"], rtol=1e-6)


def test_prior_reweights(tmp_path, sg_model):
    two_theta, intensity = _pattern()
    p = sg_model.probabilities(two_theta, intensity, wavelength=CU)
    unlikely = int(np.argmin(p)) + 1
    prior = np.full(230, 1e-9)  # far below p(unlikely) / p(most likely)
    prior[unlikely - 1] = 1.0
    model = load_classifier(_save(tmp_path / "prior.pt", prior=prior))
    without = classify(two_theta, intensity, model=model)
    with_prior = classify(two_theta, intensity, model=model, use_prior=True)
    assert without.query("kind == 'space_group'")["label"].iloc[0] != unlikely  # the prior is off by default
    assert with_prior.query("kind == 'space_group'")["label"].iloc[0] == unlikely
    top_group = with_prior.query("kind == 'extinction_group'")["label"].iloc[0]
    assert top_group == symmetry.extinction_group(unlikely)
    expected = p * prior / (p * prior).sum()
    np.testing.assert_allclose(model.probabilities(two_theta, intensity, wavelength=CU, use_prior=True),
                               expected, rtol=1e-5)
    with pytest.raises(ValueError, match="has no prior"):
        sg_model.probabilities(two_theta, intensity, wavelength=CU, use_prior=True)


def test_calibrated_prior_is_a_weighted_log_prior_on_by_the_files_default(tmp_path, sg_model):
    two_theta, intensity = _pattern()
    p = sg_model.probabilities(two_theta, intensity, wavelength=CU)
    prior = np.random.default_rng(0).random(230) + 0.01
    path = _save(tmp_path / "weighted.pt", prior=prior, prior_weight=0.5, prior_default=True)
    model = load_classifier(path)
    assert (model.prior_weight, model.prior_default) == (0.5, True)
    expected = p * np.sqrt(prior / prior.sum())
    expected /= expected.sum()
    np.testing.assert_allclose(model.probabilities(two_theta, intensity, wavelength=CU), expected, rtol=1e-5)
    np.testing.assert_allclose(model.probabilities(two_theta, intensity, wavelength=CU, use_prior=False), p, rtol=1e-5)
    assert (sg_model.prior_weight, sg_model.prior_default) == (1.0, False)  # files without the keys: as before
    with pytest.raises(ValueError, match="prior_default needs a prior"):
        _save(tmp_path / "bad.pt", prior_default=True)
    with pytest.raises(ValueError, match="prior_weight"):
        _save(tmp_path / "bad.pt", prior=prior, prior_weight=-1.0)


def test_fit_prior_weight_finds_the_bayes_correction():
    rng = np.random.default_rng(0)
    prior = rng.dirichlet(np.full(20, 0.3))
    # a model trained on uniform classes: logits are the log-likelihood of a noisy observation of the class
    labels = rng.choice(20, size=4000, p=prior)
    logits = 1.5 * np.eye(20)[labels] + rng.normal(size=(4000, 20))
    weight = fit_prior_weight(logits * 1.5, labels + 1, prior)  # 1.5 * 1.5 = 2.25: the exact log-likelihood
    assert 0.85 < weight < 1.15
    uniform_labels = rng.integers(0, 20, 4000)  # data not drawn from the prior: the prior does not help
    logits = 1.5 * np.eye(20)[uniform_labels] + rng.normal(size=(4000, 20))
    assert fit_prior_weight(logits * 1.5, uniform_labels + 1, prior) < 0.15
    with pytest.raises(ValueError, match="prior has shape"):
        fit_prior_weight(logits, uniform_labels + 1, prior[:5])


def test_temperature_flattens(tmp_path, sg_model):
    two_theta, intensity = _pattern()
    p1 = sg_model.probabilities(two_theta, intensity, wavelength=CU)
    hot = load_classifier(_save(tmp_path / "hot.pt", temperature=3.0))
    p3 = hot.probabilities(two_theta, intensity, wavelength=CU)

    def entropy(p):
        return -(p * np.log(p)).sum()

    assert entropy(p3) > entropy(p1) and p3.max() < p1.max()
    expected = p1 ** (1 / 3)  # softmax(z / T) is proportional to softmax(z) ** (1 / T)
    np.testing.assert_allclose(p3, expected / expected.sum(), rtol=1e-5)
    assert np.argmax(p3) == np.argmax(p1)


def test_other_wavelength_is_moved_through_d_spacing(sg_model):
    cu_two_theta, cu_intensity = _pattern(CU)
    mo_two_theta, mo_intensity = _pattern(MO, start=1.9, stop=42.0, step=0.01)
    p_cu = sg_model.probabilities(cu_two_theta, cu_intensity, wavelength=CU)
    p_mo = sg_model.probabilities(mo_two_theta, mo_intensity, wavelength=MO)
    np.testing.assert_allclose(p_mo, p_cu, atol=1e-3)
    # the same Mo pattern read at a wrong wavelength puts the peaks elsewhere, and the answer changes
    p_wrong = sg_model.probabilities(mo_two_theta, mo_intensity, wavelength=0.75)
    assert np.abs(p_wrong - p_cu).max() > 10 * np.abs(p_mo - p_cu).max()


def test_negative_intensities_are_clipped(sg_model):
    # a background-subtracted pattern dips below zero between peaks; those dips are noise, not signal
    two_theta, intensity = _pattern()
    subtracted = intensity - 60.0
    p = sg_model.probabilities(two_theta, subtracted, wavelength=CU)
    clipped = np.clip(subtracted, 0, None)
    np.testing.assert_allclose(p, sg_model.probabilities(two_theta, clipped, wavelength=CU))
    assert np.abs(p - sg_model.probabilities(two_theta, intensity, wavelength=CU)).max() > 1e-3


def test_batch_equals_one_by_one(sg_model):
    two_theta, first = _pattern()
    _, second = _pattern(peaks=PEAK_D[2:])
    batch = sg_model.probabilities(two_theta, np.stack([first, second]), wavelength=CU)
    assert batch.shape == (2, 230)
    for row, intensity in zip(batch, (first, second)):
        alone = sg_model.probabilities(two_theta, intensity, wavelength=CU)
        np.testing.assert_allclose(row, alone, rtol=1e-5)
    assert np.abs(batch[0] - batch[1]).max() > 1e-3


def test_sin2theta_channel_model(tmp_path):
    model = load_classifier(_save(tmp_path / "sin2.pt", sin2theta_channel=True))
    assert model.sin2theta_channel
    table = classify(*_pattern(), model=model)
    assert len(table) == 10 and np.isfinite(table["probability"]).all()


def test_radiation_mismatch(sg_model):
    with pytest.raises(ValueError, match="trained on xray patterns and cannot classify a neutron"):
        classify(*_pattern(), radiation="neutron", model=sg_model)


# The command.

def _lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_command_table_and_json(tmp_path, sg_path, capsys):
    path = _write_xy(tmp_path / "good.xy", *_pattern())
    main([str(path), "--model", str(sg_path), "--top", "3", "--no-match"])
    out = capsys.readouterr().out
    assert "good.xy" in out and "model (extinction groups)" in out and "model (space groups)" in out
    expected = classify(*_pattern(), model=sg_path, top=3)
    for label, probability in zip(expected["label"], expected["probability"]):
        assert f"{probability:.3f}" in out and str(label) in out
    main([str(path), "--model", str(sg_path), "--top", "3", "--json", "--no-match"])
    (report,) = _lines(capsys.readouterr().out)
    assert report["file"] == str(path) and report["error"] is None and report["matches"] == []
    assert report["trust"] == "model" and report["final"] == report["model"]
    eg = expected[expected["kind"] == "extinction_group"]
    sg = expected[expected["kind"] == "space_group"]
    np.testing.assert_allclose([r["probability"] for r in report["model"]], eg["probability"])
    np.testing.assert_allclose([r["probability"] for r in report["model_space_groups"]], sg["probability"])
    assert report["model"][0]["members"] == list(symmetry.space_groups_in(report["model"][0]["label"]))
    assert set(report["final"][0]) >= {"label", "symbol", "probability"}


def test_command_prior_follows_the_file_and_turns_off(tmp_path, sg_model, capsys):
    two_theta, intensity = _pattern()
    prior = np.random.default_rng(1).random(230) + 0.01
    model_path = _save(tmp_path / "with_prior.pt", prior=prior, prior_weight=0.7, prior_default=True)
    path = _write_xy(tmp_path / "good.xy", two_theta, intensity)

    def top_groups(*flags):
        main([str(path), "--model", str(model_path), "--json", "--no-match", "--top", "230", *flags])
        (report,) = _lines(capsys.readouterr().out)
        return np.array([r["probability"] for r in sorted(report["model_space_groups"], key=lambda r: r["label"])])

    model = load_classifier(model_path)
    on = model.probabilities(two_theta, intensity, wavelength=CU, use_prior=True)
    off = model.probabilities(two_theta, intensity, wavelength=CU, use_prior=False)
    np.testing.assert_allclose(top_groups(), on, rtol=1e-5)  # the file's default: on
    np.testing.assert_allclose(top_groups("--prior"), on, rtol=1e-5)
    np.testing.assert_allclose(top_groups("--no-prior"), off, rtol=1e-5)
    assert not np.allclose(on, off)
    with pytest.raises(SystemExit) as stop:  # a classifier without a prior cannot be asked for one
        main([str(path), "--model", str(_save(tmp_path / "no_prior.pt")), "--no-match", "--prior"])
    assert stop.value.code == 2 and "no class prior" in capsys.readouterr().err


def test_command_wavelength(tmp_path, sg_path, capsys):
    path = _write_xy(tmp_path / "mo.xy", *_pattern(MO, start=1.9, stop=42.0, step=0.01))
    main([str(path), "--model", str(sg_path), "--wavelength", str(MO), "--json", "--no-match"])
    (report,) = _lines(capsys.readouterr().out)
    expected = classify(*_pattern(), model=sg_path)
    assert [r["label"] for r in report["model_space_groups"]] == list(expected["label"][expected["kind"] == "space_group"])


_BAD = {
    "nan.xy": "".join(f"{10 + i * 0.5} {np.nan if i == 7 else i % 9}\n" for i in range(200)),
    "one_column.xy": "".join(f"{10 + i * 0.5}\n" for i in range(200)),
    "not_monotonic.xy": "".join(f"{10 + (i % 100) * 0.5} {i % 9}\n" for i in range(200)),
    "far_range.xy": "".join(f"{120 + i * 0.2} {10 + 1000 * math.exp(-((i - 100) / 3) ** 2):.3f}\n" for i in range(200)),
    "empty.xy": "",
}


@pytest.mark.parametrize("name,problem", [
    ("nan.xy", "NaN"), ("one_column.xy", "expected 2 or 3 columns"),
    ("not_monotonic.xy", "not strictly increasing"),
    ("far_range.xy", "of the model's grid"), ("empty.xy", "no numeric rows"), ("missing.xy", "no such file"),
])
def test_command_bad_file_one_line_exit_2(tmp_path, sg_path, capsys, name, problem):
    path = tmp_path / name
    if name in _BAD:
        path.write_text(_BAD[name])
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--model", str(sg_path), "--no-match"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"xtal-classify: error: {path}: ") and problem in captured.err
    assert captured.err.count("\n") == 1


def test_command_missing_model_and_radiation(tmp_path, capsys):
    path = _write_xy(tmp_path / "good.xy", *_pattern())
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--model", str(tmp_path / "none.pt"), "--no-match"])
    assert exit_.value.code == 2 and "none.pt: no such classifier file" in capsys.readouterr().err
    sg = _save(tmp_path / "sg.pt")
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--model", str(sg), "--radiation", "neutron", "--no-match"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "neutron" in err


def test_command_as_a_module(tmp_path, sg_path):
    good = _write_xy(tmp_path / "good.xy", *_pattern())
    bad = tmp_path / "bad.xy"
    bad.write_text(_BAD["nan.xy"])
    command = [sys.executable, "-m", "xtal_utils.identify", "--model", str(sg_path), "--no-match"]
    run = subprocess.run(command + [str(good), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model"][0]["probability"] > 0
    run = subprocess.run(command + [str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"xtal-classify: error: {bad}: ") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr


# Search-match and batch mode, on a library of three synthetic entries.

def _pattern_folder(tmp_path, known="a.xy", new="b.xy"):
    """A folder with two pattern files: one of the library's entry 2 (``known``) and one of no entry."""
    folder = tmp_path / "patterns"
    folder.mkdir()
    _write_xy(folder / known, *_pattern(peaks=(4.5, 3.3, 2.2, 1.8)))
    _write_xy(folder / new, *_pattern(peaks=(6.1, 3.7, 2.05)))
    return folder


def _library(tmp_path):
    settings = SearchSettings(n_points=256, wavelength=CU, fwhm=0.25, background_window=21)
    rows = []
    for peaks in (PEAK_D, (4.5, 3.3, 2.2, 1.8), (5.2, 2.9, 2.6, 1.5, 1.3)):
        two_theta, intensity = _pattern(peaks=peaks)
        rows.append(np.interp(settings.two_theta, two_theta, intensity))
    table = pd.DataFrame({"entry_id": ["1", "2", "3"], "mineral": ["Testite", "", "Otherite"],
                          "formula": ["A B", "C", "D2 E"], "space_group": [225, 14, 62]})
    table["extinction_group"] = symmetry.extinction_groups(table["space_group"])
    library = Library(search_match.prepare(np.stack(rows), settings), table, settings)
    return save_library(library, tmp_path / "library.npz")


def test_search_match_finds_the_entry_and_tolerates_a_zero_shift(tmp_path):
    library = load_library(_library(tmp_path))
    assert len(library) == 3 and library.table["mineral"].tolist() == ["Testite", "", "Otherite"]
    two_theta, intensity = _pattern(peaks=(4.5, 3.3, 2.2, 1.8))
    matches = library.search(two_theta, intensity, wavelength=CU, top=3)
    assert matches["entry_id"].tolist()[0] == "2" and matches["similarity"].iloc[0] > 0.99
    assert list(matches.columns) == ["rank", "entry_id", "mineral", "formula", "space_group", "extinction_group",
                                     "similarity"]
    shifted = library.search(two_theta + 0.3, intensity, wavelength=CU, top=1)["similarity"].iloc[0]
    tolerant = dataclasses.replace(library, settings=dataclasses.replace(library.settings, zero_shifts=(-0.3, 0.0, 0.3)))
    assert tolerant.search(two_theta + 0.3, intensity, wavelength=CU, top=1)["similarity"].iloc[0] > max(shifted, 0.99)
    with pytest.raises(ValueError, match="not a search-match library"):
        bad = tmp_path / "bad.npz"
        np.savez(bad, x=np.zeros(3))
        load_library(bad)


def test_a_partly_covered_pattern_is_compared_over_its_window(tmp_path):
    library = load_library(_library(tmp_path))
    two_theta, intensity = _pattern(peaks=(4.5, 3.3, 2.2, 1.8))
    part = (two_theta > 30) & (two_theta < 75)  # about half of the 5-90 degree grid, two of its peaks
    query = np.interp(library.settings.two_theta, two_theta[part], intensity[part], left=np.nan, right=np.nan)
    similarity = library.similarities(query[None])[0]
    assert similarity.argmax() == 1 and similarity[1] > 0.98  # over the full grid the cosine would be far lower
    full = library.similarities(np.interp(library.settings.two_theta, two_theta, intensity)[None])[0]
    assert similarity[1] == pytest.approx(full[1], abs=0.02)


def test_a_rescaled_library_is_the_library_prepared_with_that_scale(tmp_path):
    library = load_library(_library(tmp_path))
    raw = np.stack([np.interp(library.settings.two_theta, *_pattern(peaks=peaks))
                    for peaks in (PEAK_D, (4.5, 3.3, 2.2, 1.8), (5.2, 2.9, 2.6, 1.5, 1.3))])
    view = library.rescaled("sqrt")
    assert view.settings.intensity == "sqrt" and library.rescaled("sqrt") is view and library.rescaled("linear") is library
    np.testing.assert_allclose(view.patterns, search_match.prepare(raw, view.settings), atol=1e-5)
    two_theta, intensity = _pattern(peaks=(4.5, 3.3, 2.2, 1.8))
    assert view.search(two_theta, intensity, wavelength=CU, top=1)["entry_id"].iloc[0] == "2"
    with pytest.raises(ValueError, match="only a linear library"):
        Library(view.patterns, view.table, dataclasses.replace(view.settings)).rescaled("log")


def test_batch_folder_json_csv_and_a_bad_file(tmp_path, sg_path, capsys):
    library = _library(tmp_path)
    folder = _pattern_folder(tmp_path, "a_known.xy", "b_new.xy")
    (folder / "c_bad.xy").write_text(_BAD["nan.xy"])
    (folder / "notes.md").write_text("not a pattern")
    with pytest.raises(SystemExit) as exit_:
        main([str(folder), "--model", str(sg_path), "--library", str(library), "--json"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    known, new, bad = _lines(captured.out)
    assert [Path(r["file"]).name for r in (known, new, bad)] == ["a_known.xy", "b_new.xy", "c_bad.xy"]
    assert known["trust"] == "match" and known["matches"][0]["entry_id"] == "2"
    assert known["final"][0]["label"] == symmetry.extinction_group(14)  # the match's group leads
    assert new["trust"] == "model" and new["error"] is None
    # no twin, and a classifier file without a fitted fusion: the final answer is the model's own
    assert [r["label"] for r in new["final"]] == [r["label"] for r in new["model"]]
    np.testing.assert_allclose([r["probability"] for r in new["final"]], [r["probability"] for r in new["model"]])
    assert bad["error"].startswith(str(folder / "c_bad.xy")) and "NaN" in bad["error"] and bad["final"] == []
    assert "1 of 3 files failed" in captured.err
    table = tmp_path / "table.csv"
    with pytest.raises(SystemExit):
        main([str(folder), "--model", str(sg_path), "--library", str(library), "--csv", str(table)])
    rows = pd.read_csv(table, keep_default_na=False)
    assert rows["trust"].tolist() == ["match", "model", ""] and rows["error"].astype(bool).tolist() == [False, False, True]
    assert rows["match_mineral"].tolist()[0] == ""  # entry 2 has no mineral name


def test_classifier_is_a_plain_object(sg_model):
    assert isinstance(sg_model, Classifier) and sg_model.n_classes == 230
    assert sg_model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


# --- an ensemble of classifiers in one file ---------------------------------------------------


def _member(n_points, kind="space_group", seed=0, **settings):
    network = _network(symmetry.n_classes(kind), seed=seed)
    return Classifier(network.eval(), kind, (5.0, 90.0), n_points, CU, "xray", **settings)


def test_ensemble_is_the_geometric_mean_of_its_members_each_on_its_own_grid(tmp_path):
    prior = np.linspace(1.0, 2.0, 230)
    coarse = _member(256, temperature=1.5, metadata={"name": "coarse"})
    fine = _member(512, seed=1, prior=prior / prior.sum(), prior_weight=0.5, prior_default=True)
    path = save_ensemble(tmp_path / "pair.pt", [coarse, fine], metadata={"combination": "geometric mean"})
    assert [p.name for p in tmp_path.iterdir()] == ["pair.pt"]  # written atomically
    ensemble = load_classifier(path)
    assert isinstance(ensemble, Ensemble) and ensemble.path == path
    assert ensemble.kind == "space_group" and ensemble.n_points == 256  # the first member's grid
    assert ensemble.metadata == {"combination": "geometric mean"} and ensemble.members[0].metadata == {"name": "coarse"}
    assert [m.n_points for m in ensemble.members] == [256, 512] and ensemble.members[1].prior_weight == 0.5
    two_theta, intensity = _pattern()
    for use_prior in (None, False, True):
        p = [m.probabilities(two_theta, intensity, wavelength=CU, use_prior=use_prior if m.prior is not None else False)
             for m in (coarse, fine)]
        expected = np.sqrt(p[0] * p[1])
        got = ensemble.probabilities(two_theta, intensity, wavelength=CU, use_prior=use_prior)
        np.testing.assert_allclose(got, expected / expected.sum(), rtol=1e-5, atol=1e-12)
    assert ensemble.uses_prior() and not ensemble.uses_prior(False)
    assert ensemble.prepare(two_theta, intensity, wavelength=CU).shape == (1, 256 + 512)
    # the table and the command take an ensemble as they take one classifier
    table = classify(two_theta, intensity, model=path, top=3)
    assert table["kind"].tolist() == ["extinction_group"] * 3 + ["space_group"] * 3
    np.testing.assert_allclose(table["probability"].iloc[3], ensemble.probabilities(
        two_theta, intensity, wavelength=CU).max(), rtol=1e-6)


def test_ensemble_of_mixed_kinds_answers_in_extinction_groups(tmp_path):
    ensemble = Ensemble([_member(256), _member(256, "extinction_group", seed=2)])
    assert ensemble.kind == "extinction_group" and ensemble.n_classes == 99
    two_theta, intensity = _pattern()
    p_sg = ensemble.members[0].probabilities(two_theta, intensity, wavelength=CU)
    p_eg = ensemble.members[1].probabilities(two_theta, intensity, wavelength=CU)
    expected = np.sqrt(symmetry.collapse_to_extinction_groups(p_sg[None])[0] * p_eg)
    np.testing.assert_allclose(ensemble.probabilities(two_theta, intensity, wavelength=CU),
                               expected / expected.sum(), rtol=1e-5, atol=1e-12)


def test_a_class_that_one_member_rules_out_stays_out():
    prior = np.ones(230)
    prior[:5] = 0.0  # P1 ... C2 impossible for the second member
    ensemble = Ensemble([_member(256), _member(256, seed=1, prior=prior / prior.sum(), prior_default=True)])
    p = ensemble.probabilities(*_pattern(), wavelength=CU)
    assert (p[:5] == 0).all() and p.sum() == pytest.approx(1.0)


def test_ensemble_refuses_what_cannot_answer_together(tmp_path):
    with pytest.raises(ValueError, match="two or more"):
        save_ensemble(tmp_path / "one.pt", [_member(256)])
    neutron = dataclasses.replace(_member(256), radiation="neutron")
    with pytest.raises(ValueError, match="radiations differ"):
        save_ensemble(tmp_path / "mixed.pt", [_member(256), neutron])
    with pytest.raises(ValueError, match="one radiation"):
        Ensemble([_member(256), neutron])
    torch.save({"format": "xtal-classifier-ensemble/1", "members": [], "metadata": {}}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="empty.pt"):
        load_classifier(tmp_path / "empty.pt")
    state = torch.load(save_ensemble(tmp_path / "pair.pt", [_member(256), _member(256, seed=1)]), weights_only=True)
    del state["members"][1]["state_dict"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"broken.pt \(member 2\)"):
        load_classifier(tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="columns"):
        Ensemble([_member(256), _member(256, seed=1)]).probabilities_of(np.zeros((1, 256)))


def test_command_with_an_ensemble_file(tmp_path, capsys):
    path = save_ensemble(tmp_path / "pair.pt", [_member(256), _member(512, seed=1)])
    pattern = _write_xy(tmp_path / "good.xy", *_pattern())
    main([str(pattern), "--model", str(path), "--no-match"])
    out = capsys.readouterr().out
    assert "geometric mean of 2" in out and "model (space groups)" in out
    main([str(pattern), "--model", str(path), "--no-match", "--json", "--top", "2"])
    (report,) = _lines(capsys.readouterr().out)
    expected = classify(*_pattern(), model=path, top=2)
    np.testing.assert_allclose([r["probability"] for r in report["model"]],
                               expected[expected["kind"] == "extinction_group"]["probability"])
