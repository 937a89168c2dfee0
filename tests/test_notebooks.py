"""Every numbered notebook at the smoke preset, through papermill, and the values it records."""

import json
import time

import nbformat
import papermill
import pandas as pd
import pytest

from xtal_utils.paths import NOTEBOOKS, RUNS
from xtal_utils.study import load_preset, numbered_notebooks, run_notebook

from test_figures import assert_smoke_figures_printable  # tests/ is on sys.path under pytest

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
    """Run notebook ``stem`` at the smoke preset, check the figures it wrote, and return its metrics."""
    path = NOTEBOOKS / f"{stem}.ipynb"
    started = time.time()
    metrics = run_notebook(path, "smoke", load_preset("smoke"))
    assert_smoke_figures_printable(stem, started)
    return metrics


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
    assert 0 < m["amcsd_patterns"] <= m["amcsd_kept"]
    assert 0 < m["balanced_patterns"] <= m["balanced_crystals"]


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


@pytest.mark.notebook
def test_02_sg_vs_ext():
    m = _run("02_sg_vs_ext")
    smoke = load_preset("smoke")
    for suffix in ("", "_fresh"):
        for prefix in ("eg_model_extinction_group", "sg_model_collapsed_extinction_group", "sg_model_space_group"):
            t1, t3, t5 = (m[f"{prefix}_top{k}{suffix}"] for k in (1, 3, 5))
            assert 0.0 <= t1 <= t3 <= t5 <= 1.0
        assert m[f"collapsed_minus_eg_top1{suffix}"] == pytest.approx(
            m[f"sg_model_collapsed_extinction_group_top1{suffix}"] - m[f"eg_model_extinction_group_top1{suffix}"])
        assert m[f"eg_model_extinction_group_top1{suffix}_sweep_std"] >= 0.0
    assert m["chance_top1"] == pytest.approx(1 / 99)
    assert m["n_test"]["fresh"] == smoke["fresh_test"] and 0 < m["n_test"]["from_random"] <= 99 * smoke["test_per_group"]
    assert m["patterns_main"] == smoke["stream_steps"] * smoke["batch_size"]
    assert m["patterns_sweep"] == smoke["sweep_steps"] * smoke["batch_size"]
    # per label: one main run and n_seeds spread runs, each scored on both test sets
    assert len(m["runs"]) == 2 * (1 + smoke["n_seeds"]) * 2
    assert {r["seed"] for r in m["runs"] if r["budget"] == "sweep"} == set(range(smoke["n_seeds"]))
    assert 0.0 <= m["sg_right_given_eg_right_multi"] <= 1.0 and 0.0 < m["sg_chance_given_eg_right_multi"] <= 0.5
    for row in m["within_eg"]:
        assert row["chance"] == pytest.approx(1 / row["members"]) and 0.0 <= row["mean"] <= 1.0
    # the ceiling: the oracle's credit on a sample of each test set, and each model's share of it
    for suffix, test in (("", "from_random"), ("_fresh", "fresh")):
        assert m[f"ceiling_n{suffix}"] == min(smoke["ceiling_samples"], m["n_test"][test])
        assert 0.5 <= m[f"ceiling_extinction_group_top1{suffix}"] <= 1.0  # a clean pattern tells most groups
        assert all(0.0 <= v <= 1.0 for v in m[f"ceiling_by_family{suffix}"].values())
        assert m[f"eg_model_share_of_ceiling{suffix}"] == pytest.approx(
            m[f"eg_model_extinction_group_top1{suffix}"] / m[f"ceiling_extinction_group_top1{suffix}"])
        for by in ("family", "absences"):  # the model beside the ceiling on the oracle's sample, split two ways
            split = m[f"shortfall_by_{by}{suffix}"]
            assert sum(v["n"] for v in split.values()) == m[f"ceiling_n{suffix}"]
            assert all(0.0 <= v["eg_model"] <= 1.0 and 0.0 <= v["ceiling"] <= 1.0 for v in split.values())
        assert set(m[f"shortfall_by_absences{suffix}"]) <= {"none", "centring only", "glides or screws"}


@pytest.mark.notebook
def test_03_duplicates():
    m = _run("03_duplicates")
    for prefix in ("duplicated", "deduplicated"):
        _check_topk(m, prefix)
    assert m["leakage_deduplicated"] == 0.0
    assert 0.0 < m["leakage_duplicated"] < 1.0  # the smoke subset of AMCSD has repeat entries
    assert m["n_train_duplicated"] > m["n_train_deduplicated"]
    assert m["inflation_top1"] == pytest.approx(m["duplicated_top1"] - m["deduplicated_top1"])
    for part in ("with_twin", "without_twin"):
        assert 0.0 <= m[f"duplicated_top1_{part}"] <= 1.0


@pytest.mark.notebook
def test_04_bias():
    m = _run("04_bias")
    smoke = load_preset("smoke")
    for trained in ("biased", "balanced", "prior"):
        for tested in ("biased", "balanced"):
            _check_topk(m, f"{trained}_on_{tested}")
    for k in (1, 3, 5):
        assert m[f"finding_margin_top{k}"] == pytest.approx(m[f"balanced_on_biased_top{k}"] - m[f"biased_on_balanced_top{k}"])
        assert m[f"finding_margin_top{k}_sweep_std"] >= 0.0
    assert m["slides_finding_holds"] == (m["biased_on_balanced_top1"] < m["balanced_on_biased_top1"])
    assert m["n_train_biased"] > 0 and m["n_test_balanced"] > 0 and m["n_test_biased"] > 0
    assert m["patterns_main"] == smoke["stream_steps"] * smoke["batch_size"]
    assert len(m["runs"]) == 2 * (1 + smoke["n_seeds"]) * 2  # two models, main and spread runs, two test sets
    # the balanced main model is notebook 02's extinction-group model (the same cache entry) when 02 ran first
    path = RUNS / "02_sg_vs_ext" / "smoke" / "metrics.json"
    if path.exists():
        assert m["balanced_on_balanced_top1"] == pytest.approx(
            json.loads(path.read_text())["eg_model_extinction_group_top1"])


@pytest.mark.notebook
def test_05_scaling():
    m = _run("05_scaling")
    smoke = load_preset("smoke")
    pools = sorted(smoke["scaling_crystals"])
    assert m["crystals"] == pools and m["pools"] == len(pools)
    assert (m["short_steps"], m["long_steps"]) == (smoke["sweep_steps"], smoke["scaling_max_steps"])
    assert (m["pool_max_steps"], m["min_delta"]) == (smoke["scaling_pool_max_steps"], smoke["scaling_min_delta"])
    for short in ("resnet", "transformer"):
        for k in (1, 5):
            for run in ("short", "long"):
                assert 0 <= m[f"{short}_stream_{run}_top{k}"] <= 1
            assert list(m[f"{short}_top{k}_by_crystals"]) == [str(n) for n in pools]
        assert m[f"{short}_parameters"] > 0
        steps_run, best = m[f"{short}_steps_run_by_crystals"], m[f"{short}_best_step_by_crystals"]
        for n in map(str, pools):
            # a run ends at the cap or after `patience` evaluations past its best; it returns its best weights
            assert best[n] <= steps_run[n] <= smoke["scaling_pool_max_steps"]
            assert steps_run[n] == smoke["scaling_pool_max_steps"] or (
                steps_run[n] - best[n] == smoke["scaling_patience"] * smoke["scaling_eval_every"])
        top1 = m[f"{short}_top1_by_crystals"]
        assert m[f"{short}_data_gain_top1"] == pytest.approx(top1[str(pools[-1])] - top1[str(pools[-2])])
        assert m[f"{short}_schedule_gain_top1"] == pytest.approx(
            m[f"{short}_stream_long_top1"] - m[f"{short}_stream_short_top1"])
        assert m[f"{short}_plateaus"] == (max(m[f"{short}_data_gain_top1"], m[f"{short}_schedule_gain_top1"])
                                          <= m["plateau_points"])
        assert m[f"{short}_plateau_crystals"] is None or m[f"{short}_plateau_crystals"] in pools[:-1]
    assert m["pools_stopped_early"] == m["resnet_pools_stopped_early"] + m["transformer_pools_stopped_early"]
    # each architecture: one early-stopped model per pool and the stream at two schedule lengths
    assert len(m["runs"]) == 2 * (len(pools) + 2)
    for r in m["runs"]:
        if r["run"] != "pool":
            assert r["steps_run"] == r["schedule_steps"] and not r["stopped_early"]
    # every run's learning curve: an evaluation every scaling_eval_every steps, up to where the run stopped
    curves = pd.DataFrame(m["curves"])
    for (architecture, run, crystals), curve in curves.groupby(["architecture", "run", "crystals"], dropna=False):
        assert curve.step.iloc[0] == smoke["scaling_eval_every"]
        assert all(0 <= v <= 1 for v in curve.top1)


@pytest.mark.notebook
def test_06_resolution():
    m = _run("06_resolution")
    smoke = load_preset("smoke")
    assert sorted(map(int, m["top1_by_points"])) == sorted(smoke["resolution_points"])
    assert sorted(map(float, m["top1_by_fwhm"])) == sorted(smoke["resolution_fwhms"])
    assert sorted(m["ceiling_by_fwhm"]) == sorted(m["top1_by_fwhm"]) and 0 < m["ceiling_n"]
    for w, ceiling in m["ceiling_by_fwhm"].items():
        assert 0.3 <= ceiling <= 1.0 and m["share_of_ceiling_by_fwhm"][w] == pytest.approx(m["top1_by_fwhm"][w] / ceiling)
    for key in ("top1_by_points", "top1_by_fwhm"):
        assert all(0.0 <= v <= m[key.replace("top1", "top5")][n] <= 1.0 for n, v in m[key].items())
    assert m["top1_coarsest_grid"] == m["top1_by_points"][str(min(smoke["resolution_points"]))]
    assert m["grid_range_top1"] == pytest.approx(max(m["top1_by_points"].values()) - min(m["top1_by_points"].values()))
    assert m["n_seeds"] == smoke["n_seeds"] == len(m["spread"]) and m["seed_sd_top1"] >= 0.0
    assert m["patterns_seen"] == smoke["sweep_steps"] * smoke["batch_size"]


@pytest.mark.notebook
def test_08_measured():
    from xtal_utils.classify import load_classifier
    from xtal_utils.config import resolve
    from xtal_utils.fusion import FEATURES, Fusion

    m = _run("08_measured")
    smoke = load_preset("smoke")
    assert m["n_measured"] == smoke["rruff_limit"]
    for prefix in ("shipped_eg", "prior_eg", "shipped_sg", "prior_sg", "augmented_balanced_eg_prior_eg",
                   "amcsd_member_eg", "stream_member_eg", "amcsd_member_sg", "stream_member_sg"):
        _check_topk(m, prefix)
    assert m["margin_eg_top5"] == pytest.approx(m["shipped_eg_top5"] - m["prior_eg_top5"])
    assert m["temperature"] > 0 and 0 <= m["ece_calibrated"] <= 1 and 0 <= m["ece_shipped"] <= 1
    # the shipped ensemble: the member trained here, then the committed stream member
    classifier = load_classifier(resolve(smoke["model_dir"]) / "xtal-classify-xray.pt")
    first, second = classifier.members
    assert classifier.kind == "space_group" and first.temperature == pytest.approx(m["temperature"])
    assert first.n_points == smoke["n_points"] and second.n_points == load_classifier(resolve("models/xtal-classify-xray-stream.pt")).n_points
    assert classifier.metadata["rruff_dev_eg_top5"] == pytest.approx(m["shipped_eg_top5"])
    assert first.metadata["rruff_dev_eg_top5"] == pytest.approx(m["amcsd_member_eg_top5"])
    assert (resolve(smoke["model_dir"]) / "MODEL_CARD.md").exists()
    # search-match, the split by close twin, the final answer
    assert m["n_close_twin"] + m["n_novel"] == m["n_measured"]
    for key in ("search_eg", "final_eg", "final_types_eg", "final_mineral_eg"):
        assert 0.0 <= m[f"{key}_top1"] <= m[f"{key}_top5"] <= 1.0
    assert m["n_close_twin"] <= m["n_close_by_similarity_alone"]  # a twin needs peaks as well as a cosine
    for who in ("final", "model"):
        for subset in ("all", "close_twin", "no_close_twin"):
            assert 0.0 <= m[f"ece_{who}_{subset}"] <= 1.0 and 0.0 < m[f"ece_floor_{who}_{subset}"] <= 1.0
    # the fusion that ships is the one fitted here, with and without the family shift
    fitted = {key: Fusion.from_dict(value) for key, value in classifier.metadata["fusion"].items()}
    assert set(fitted) == {"with_family", "without_family"} and m["fusion"] == classifier.metadata["fusion"]
    assert fitted["without_family"].novel[FEATURES.index("family")] == 0.0
    assert fitted["with_family"].min_peaks == m["min_matched_peaks"]
    assert fitted["without_family"].min_share == m["min_matched_share"]
    for name in ("shortlist", "shortlist_soft", "match", "family"):  # by default a novel pattern gets the model's answer
        assert fitted["without_family"].novel[FEATURES.index(name)] == 0.0
    for shares in ("family_shares_training", "family_shares_estimated", "family_shares_true"):
        assert sum(m[shares].values()) == pytest.approx(1.0) and min(m[shares].values()) >= 0
    assert classifier.metadata["family_shares"]["measured"] == pytest.approx(
        [m["family_shares_estimated"][f] for f in classifier.metadata["family_shares"]["families"]])
    if m["n_novel"]:
        assert m["novel_margin_eg_top1"] == pytest.approx(m["shipped_novel_eg_top1"] - m["search_novel_eg_top1"])
    # the neutron classifier and the eight measured neutron patterns
    neutron = load_classifier(resolve(smoke["model_dir"]) / "xtal-classify-neutron.pt")
    assert neutron.radiation == "neutron" and neutron.n_points == smoke["neutron_n_points"]
    assert neutron.min_coverage < 0.5 and (resolve(smoke["model_dir"]) / "xtal-classify-neutron.md").exists()
    assert m["n_neutron"] == 8 == len(m["neutron_table"])
    assert {row["file"] for row in m["neutron_table"]} == {p.name for p in (resolve("data/neutron_measured")).glob("*.xye")}
    for who in ("model", "final"):
        assert 0.0 <= m[f"neutron_{who}_eg_top1"] <= m[f"neutron_{who}_eg_top5"] <= 1.0
        hits = sum(row[f"rank of truth ({who})"] == 1 for row in m["neutron_table"])
        assert m[f"neutron_{who}_eg_top1"] == pytest.approx(hits / 8)


@pytest.mark.notebook
def test_07_interpretability():
    m = _run("07_interpretability")
    assert 0 < m["n_attributed"] <= m["n_test"]
    assert m["n_marked"] + m["n_mark_failures"] == m["n_attributed"]
    assert m["n_marked"] >= 0.9 * m["n_attributed"]  # spglib handles nearly every AMCSD structure
    assert m["spglib_label_agreement"] >= 0.8
    assert 0.0 <= m["eg_model_extinction_group_top1"] <= 1.0
    assert 0.0 <= m["sg_model_collapsed_extinction_group_top1"] <= 1.0
    # Integrated Gradients' completeness: attributions sum to logit(x) - logit(0)
    assert m["ig_completeness_error"] == max(m["ig_completeness_error_eg"], m["ig_completeness_error_sg"])
    for name in ("eg", "sg", "untrained"):
        assert m[f"ig_completeness_error_{name}_median"] <= m[f"ig_completeness_error_{name}"] < 0.05
    assert 0.0 < m["allowed_window_coverage"] < 1.0 and 0.0 < m["absent_window_coverage"] < 1.0
    for name in ("eg", "sg", "untrained"):
        for suffix in ("", "_saliency"):
            # an enrichment times its windows' coverage is a share of |attribution|: within [0, 1]
            assert 0.0 <= m[f"peak_enrichment_{name}{suffix}"] * m["allowed_window_coverage"] <= 1.0 + 1e-9
            assert 0.0 <= m[f"absent_enrichment_{name}{suffix}"] * m["absent_window_coverage"] <= 1.0 + 1e-9
        # zero-baseline IG is the input times an averaged gradient: it follows the peaks and is ~0 at
        # empty absent positions, as the pattern itself is
        assert m[f"peak_enrichment_{name}"] > 1.0
        assert m[f"absent_enrichment_{name}"] < 0.5
    assert m["pattern_peak_enrichment"] > 1.0 and m["pattern_absent_enrichment"] < 0.5
    # the causal test: a peak at an absent position against one where the lattice has none
    assert 0 < m["insertion_n"] <= m["n_marked"]
    for name in ("eg", "sg", "untrained"):
        d = {c: m[f"insertion_{name}_{c}"] for c in ("absent", "random", "difference", "se", "share_more")}
        assert d["difference"] == pytest.approx(d["absent"] - d["random"], abs=1e-9)
        assert d["se"] >= 0 and 0.0 <= d["share_more"] <= 1.0
    # the same main extinction-group model and AMCSD test split as notebook 04's balanced model
    path = RUNS / "04_bias" / "smoke" / "metrics.json"
    if path.exists():
        assert m["eg_model_extinction_group_top1"] == pytest.approx(
            json.loads(path.read_text())["balanced_on_biased_top1"])


def test_readme_findings_table_is_the_one_the_committed_runs_give():
    """Every number of the README's findings table comes from runs/*/cpu/metrics.json: regenerate it with
    ``xtal-study --findings`` after a run, and this test fails until the README is updated."""
    from xtal_utils.paths import ROOT
    from xtal_utils.study import findings_table

    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- findings: start -->", "<!-- findings: end -->"
    assert start in readme and end in readme, "the README lost its findings markers"
    block = readme.split(start)[1].split(end)[0].strip()
    assert block == findings_table("cpu")
