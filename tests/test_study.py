"""The study's findings table (notebooks/findings.yaml judged on the committed runs) and the model cards."""

import copy
import json

import pytest
import yaml

from xtal_utils import cards, study
from xtal_utils.classify import load_classifier
from xtal_utils.paths import BENCHMARK_RESULTS, MODELS, RUNS


@pytest.fixture(scope="module")
def committed():
    return study.run_metrics("cpu")


@pytest.fixture(scope="module")
def findings():
    return {f["finding"]: f for f in study.load_findings()}


def _row(findings, committed, start: str, **changes) -> dict:
    """The row of the finding that starts with ``start``, its notebook's committed metrics changed by ``changes``."""
    (finding,) = [f for name, f in findings.items() if name.startswith(start)]
    metrics = {**copy.deepcopy(committed[finding["notebook"]]), **changes}
    return study.finding_row(finding, metrics)


def test_the_table_renders_every_finding_from_the_committed_runs(committed, findings):
    lines = study.findings_table("cpu").splitlines()
    assert len(lines) == 2 + len(findings)
    for line, finding in zip(lines[2:], findings.values()):
        assert line.startswith(f"| {finding['finding']} | {finding['notebook'][:2]} |")
        verdict = line.rsplit("**", 2)[1]
        assert verdict in [*finding["verdicts"], finding["otherwise"]]
        assert finding["notebook"] in committed
        assert finding["slides_say"].strip() or "beyond the slides" in finding["finding"]  # a quote, unless none can be


def test_a_verdict_follows_its_metric(committed, findings):
    start = "about a third of a structure database"
    assert _row(findings, committed, start, duplicate_fraction=0.40)["verdict"] == "reproduced"
    assert _row(findings, committed, start, duplicate_fraction=0.50)["verdict"] == "not reproduced"
    assert _row(findings, committed, start, duplicate_fraction=0.50)["ours"] == "50.0% of AMCSD"


def test_a_rule_of_three_outcomes(committed, findings):
    start = "the balanced model does better on biased data"
    spread = {"finding_margin_top1_sweep_std": 0.01}
    assert _row(findings, committed, start, finding_margin_top1=0.1, finding_margin_top1_sweep=0.05,
                **spread)["verdict"] == "reproduced"
    assert _row(findings, committed, start, finding_margin_top1=-0.1, finding_margin_top1_sweep=-0.05,
                **spread)["verdict"] == "contradicted"
    assert _row(findings, committed, start, finding_margin_top1=0.1, finding_margin_top1_sweep=0.01,
                **spread)["verdict"] == "not reproduced (within the seed spread)"


def test_a_null_metric_fails_its_condition_and_picks_the_other_text():
    finding = {"finding": "x plateaus", "slides_say": "", "notebook": "05_scaling", "slides": "yes", "nist": None,
               "ours": ["from {plateau:,} crystals", "no plateau up to {largest:,} crystals"], "rule": "r",
               "verdicts": {"reproduced": "plateau <= largest / 4"}, "otherwise": "not reproduced"}
    none = study.finding_row(finding, {"plateau": None, "largest": 64_000})
    assert none["verdict"] == "not reproduced" and none["ours"] == "no plateau up to 64,000 crystals"
    found = study.finding_row(finding, {"plateau": 1_000, "largest": 64_000})
    assert found["verdict"] == "reproduced" and found["ours"] == "from 1,000 crystals"


@pytest.mark.parametrize("data_gain, schedule_gain, stopped, verdict", [
    (0.01, 0.02, 4, "reproduced"),
    (0.01, 0.02, 3, "not reproduced"),  # a pool that reached the cap cannot show a plateau
    (0.05, 0.04, 3, "contradicted (at this scale)"),
    (0.05, 0.01, 4, "not reproduced"),
])
def test_the_scaling_rule_reads_both_gains_and_the_early_stops(committed, findings, data_gain, schedule_gain,
                                                                stopped, verdict):
    row = _row(findings, committed, "the ResNet's accuracy plateaus", resnet_data_gain_top1=data_gain,
               resnet_schedule_gain_top1=schedule_gain, resnet_pools_stopped_early=stopped, pools=4)
    assert row["verdict"] == verdict


@pytest.mark.parametrize("expression", ['__import__("os")', "a.real", "[a]", "a if a else 1", "a ** 2", "f(a)"])
def test_expressions_allow_only_arithmetic_on_metrics(expression):
    with pytest.raises(ValueError, match="not allowed"):
        study.evaluate_expression(expression, {"a": 1.0})


def test_expressions_name_what_is_wrong():
    assert study.evaluate_expression("max(a - b, -2 * a) > 0.1 and abs(b) <= 3", {"a": 0.5, "b": 0.2}) is True
    with pytest.raises(ValueError, match="no metric 'c'"):
        study.evaluate_expression("a + c", {"a": 1.0})
    with pytest.raises(ValueError, match="not a number"):
        study.evaluate_expression("a > 0", {"a": {"x": 1}})
    with pytest.raises(study.NullMetric):
        study.evaluate_expression("a > 0", {"a": None})


def test_a_finding_with_an_unknown_field_is_refused(tmp_path):
    finding = {"finding": "x", "slides_say": "x", "notebook": "01_data", "slides": "yes", "ours": "x",
               "rule": "x", "verdicts": {"reproduced": "1 > 0"}, "otherwise": "no", "verdict": "typo"}
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump([finding]))
    with pytest.raises(ValueError, match="unknown \\['verdict'\\]"):
        study.load_findings(path)


def test_the_committed_model_cards_are_the_ones_the_committed_run_gives():
    written = cards.model_cards(MODELS, RUNS / "08_measured" / "cpu")
    assert {path.name for path in written} == {"MODEL_CARD.md", "xtal-classify-neutron.md"}
    for path, text in written.items():
        assert path.read_text() == text, f"{path} is not the card of the committed run: rerun notebook 08"


def test_a_card_follows_its_metrics():
    run = RUNS / "08_measured" / "cpu"
    ensemble = load_classifier(MODELS / cards.XRAY_MODEL)
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    card = cards.xray_card(ensemble, config, {**metrics, "shipped_eg_top1": 0.123, "shipped_novel_eg_top1": None})
    assert "| this ensemble | 12.3% |" in card and "this ensemble reaches n/a top-1" in card


def test_the_reference_card_is_the_one_its_learning_curve_gives():
    result = json.loads((BENCHMARK_RESULTS / "learning_curve_reference.json").read_text())
    assert cards.reference_card(result) == (MODELS / "balanced-reference.md").read_text()
    result["saved_scores"] = {**result["saved_scores"], "rruff_eg_top1": 99.0}
    assert "| RRUFF dev (measured) | 99.0% |" in cards.reference_card(result)
