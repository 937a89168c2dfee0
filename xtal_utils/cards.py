"""Model cards (markdown) for the classifiers that notebook 08 ships, written from the classifier files and
the run's ``config.json`` and ``metrics.json``.

    write_model_cards(ROOT / "models", run_dir("08_measured", "cpu"))

writes ``MODEL_CARD.md`` (the X-ray ensemble, ``xtal-classify-xray.pt``) and ``xtal-classify-neutron.md``
(``xtal-classify-neutron.pt``) beside the classifiers. Every number comes from those files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from xtal_utils.classify import Classifier, Ensemble, load_classifier
from xtal_utils.config import atomic_path
from xtal_utils.fusion import FEATURES

XRAY_MODEL, XRAY_CARD = "xtal-classify-xray.pt", "MODEL_CARD.md"
NEUTRON_MODEL, NEUTRON_CARD = "xtal-classify-neutron.pt", "xtal-classify-neutron.md"


def _n_parameters(member: Classifier) -> int:
    return sum(p.numel() for p in member.model.parameters())


def _augmentations(augmentation: dict) -> str:
    """An augmentation preset as its Python dict, ranges as tuples (the form of ``ps.augmentation_key``)."""
    return repr({name: tuple(v) if isinstance(v, list) else v for name, v in augmentation.items()})


def _weights(values) -> str:
    """Fusion weights named by feature, e.g. 'model 0.91, shortlist 0.40'; zero weights left out."""
    return ", ".join(f"{name} {value:.2f}" for name, value in zip(FEATURES, values) if value)


def _pct(value, spec: str = ".1%") -> str:
    """A share in percent; 'n/a' where it does not apply (null or NaN, as for an empty subset)."""
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def xray_card(classifier: Ensemble, config: dict, metrics: dict) -> str:
    """The card of the shipped X-ray ensemble (markdown).

    Args:
        classifier: the ensemble as read from ``xtal-classify-xray.pt``: the member trained by notebook 08,
            then the stream member.
        config: notebook 08's ``config.json`` (preset, seed, batch size, epochs, stream member, threshold).
        metrics: notebook 08's ``metrics.json`` (scores on the RRUFF development set).
    """
    first, stream = classifier.members
    meta, fm, sm = classifier.metadata, first.metadata, stream.metadata
    recipe = sm.get("recipe", {})
    shares, fitted, plain = meta["family_shares"], meta["fusion"]["with_family"], meta["fusion"]["without_family"]
    m = metrics
    low, high = classifier.two_theta_range

    def row(name: str, prefix: str) -> str:
        return (f"| {name} | {_pct(m[f'{prefix}_eg_top1'])} | {_pct(m[f'{prefix}_eg_top5'])} | "
                f"{_pct(m[f'{prefix}_sg_top1'])} | {_pct(m[f'{prefix}_sg_top5'])} |")

    def eg_row(name: str, prefix: str) -> str:
        return f"| {name} | {_pct(m[f'{prefix}_eg_top1'])} | {_pct(m[f'{prefix}_eg_top5'])} | | |"

    return f"""# xtal-classify-xray: space group and extinction group from an X-ray powder pattern

Written by notebook `notebooks/08_measured.ipynb` at the `{config['preset']}` preset on {meta['date']} ({meta['device']}).
Re-create it with `xtal-study --preset {config['preset']} --only 08`, which reads the second member from
`{config['stream_member']}`, and the first from `models/study/` where that folder holds it (at the cpu
preset; `XTAL_RETRAIN=1` trains it again).

- **Model:** an ensemble of two ResNet1d space-group classifiers. Each prepares the pattern on its own grid and
  gives calibrated probabilities; the answer is their normalised geometric mean over the 230 space groups
  (nothing fitted to combine them), summed within each of the 99 extinction groups for the extinction-group
  answer.
- **Input:** one X-ray pattern covering {low:g} to {high:g} degrees 2-theta at {classifier.wavelength} Angstrom; other wavelengths are converted
  through d-spacing, and the pattern is scaled to a maximum of 1.

## Member 1: AMCSD with realism augmentations (trained by this notebook)

- ResNet1d, {_n_parameters(first):,} parameters, on {first.n_points} points.
- **Training data:** {fm['training_data']}. Base Gaussian FWHM {fm['fwhm']} degrees,
  augmentations {_augmentations(fm['augmentation'])}.
- **Training:** {fm['epochs']} epochs, batch {config['batch_size']}, seed {config['seed']}, on {meta['device']}.
- **Calibration:** temperature {first.temperature:.3f}, fitted on augmented validation patterns (never on measured data).
  The AMCSD space-group prior is stored but off by default: the member learned those frequencies from its data.

## Member 2: the fresh-crystal stream with AMCSD (`{config['stream_member']}`)

- ResNet1d, {_n_parameters(stream):,} parameters, on {stream.n_points} points,
  intensities scaled `{recipe.get('intensity', '?')}` inside the model.
- **Training data:** {sm.get('training_data', '?')}; {sm.get('patterns_seen', 0):,} patterns; a random crystal is never
  seen twice, an AMCSD structure many times with new augmentations. Random crystals drawn by `sample_crystals` with
  {', '.join(f'{k}={v}' for k, v in recipe.get('crystals', [])) or 'its defaults'}.
- **Training:** {recipe.get('steps', '?')} AdamW steps, batch {recipe.get('batch_size', '?')}, seed {recipe.get('seed', '?')},
  {sm.get('training_minutes', float('nan')):.1f} minutes on {sm.get('machine', '?')} ({sm.get('device', '?')}), commit
  {sm.get('commit', '?')}, by `{sm.get('command', '?')}`.
- **Calibration:** temperature {stream.temperature:.3f}, fitted on stream patterns of another seed. The class prior
  (AMCSD's training split, smoothed) is a separate term, `prior ** {stream.prior_weight:.3f}`, its exponent fitted
  on AMCSD's augmented validation split: the NIST recipe of uniform training and an external log-prior. It is on
  by default; `xtal-classify --no-prior` turns it off for a sample unlike the database's usual minerals.

## Accuracy on measured data (RRUFF development set, {m['n_measured']} patterns)

| | extinction group top-1 | top-5 | space group top-1 | top-5 |
|---|---|---|---|---|
{row("this ensemble", "shipped")}
{row("member 1 alone", "amcsd_member")}
{row("member 2 alone", "stream_member")}
{row("frequency prior (AMCSD), never looks at the pattern", "prior")}
{eg_row("search-match against AMCSD (no learning)", "search")}
{eg_row("final answer with AMCSD's structure types for novel patterns, no family shift", "final_types")}
{eg_row("final answer with the mineral prior (`--mineral-prior`: structure types and family shift)", "final_mineral")}
{eg_row("final answer: this ensemble with search-match (`xtal-classify`)", "final")}

The final answers' numbers are cross-validated: each pattern answered by fusion weights fitted on the others.

**How the final answer is made** (`xtal_utils.fusion`): a conditional logit over the 99 extinction groups
whose features are the ensemble's log-probabilities and ranks, the log-scores of the nearest AMCSD entries' groups
in the square-root and linear views, and each crystal family's log (share among measured minerals / share in
AMCSD's training split). Its weights, one set for patterns with a twin (similarity at least {fitted['threshold']:g},
at least {fitted['min_peaks']} peaks explained and {fitted['min_share']:.0%} of them) and one for the others, were fitted by
maximum likelihood on the RRUFF development patterns and are stored in this file (the default: for a novel pattern
the ensemble's ranking alone, calibrated, novel {_weights(plain['novel'])}; twin {_weights(plain['known'])}). The family shares ({", ".join(shares['families'])})
are {", ".join(f"{v:.3f}" for v in shares['training'])} in training and {", ".join(f"{v:.3f}" for v in shares['measured'])}
estimated for measured minerals, from this ensemble's answers on the RRUFF development patterns without their
labels (Saerens et al. 2002, by crystal family). The family shift and, for novel patterns, the structure types are
a prior for minerals, applied only with `--mineral-prior` (a second fusion, fitted with them, then answers).

Calibration of the final answer (expected calibration error, cross-validated; in brackets the 95th percentile of
what a perfectly calibrated answer shows by chance on as many patterns): all {m['ece_final_all']:.3f}
({m['ece_floor_final_all']:.3f}), with a twin {m['ece_final_close_twin']:.3f} ({m['ece_floor_final_close_twin']:.3f}),
without one {m['ece_final_no_close_twin']:.3f} ({m['ece_floor_final_no_close_twin']:.3f}).

On the {m['n_novel']} patterns without a twin, this ensemble reaches {_pct(m['shipped_novel_eg_top1'])} top-1 and
{_pct(m['shipped_novel_eg_top5'])} top-5, the final answer {_pct(m['final_novel_eg_top1'])} and {_pct(m['final_novel_eg_top5'])},
search-match {_pct(m['search_novel_eg_top1'])} top-1.

Margin over the prior in extinction-group top-5: {100 * m['margin_eg_top5']:+.1f} percentage points.

Caveat: RRUFF and AMCSD cover many of the same minerals, and both members learned from AMCSD structures, so
these numbers are an upper bound for a mineral absent from AMCSD. The two members, the geometric mean in
space groups and the first member's {config['shipped_epochs']} passes were chosen with these RRUFF development
scores in view (`benchmarks/ensemble.py`); the held-out half of RRUFF was not used.
"""


def neutron_card(classifier: Classifier, config: dict, metrics: dict) -> str:
    """The card of the shipped neutron classifier (markdown).

    Args:
        classifier: the classifier as read from ``xtal-classify-neutron.pt``.
        config: notebook 08's ``config.json`` (preset, seed, batch size).
        metrics: notebook 08's ``metrics.json`` (scores on the eight measured neutron patterns).
    """
    meta, m = classifier.metadata, metrics
    low, high = classifier.two_theta_range
    d_min = classifier.wavelength / (2 * np.sin(np.deg2rad(high / 2)))  # Angstrom, at the grid's end
    return f"""# xtal-classify-neutron: space group and extinction group from a constant-wavelength neutron pattern

Written by notebook `notebooks/08_measured.ipynb` at the `{config['preset']}` preset on {meta['date']}.
Re-create it with `xtal-study --preset {config['preset']} --only 08` (which reads the trained model from `models/study/`
where that folder holds it, at the cpu preset; `XTAL_RETRAIN=1` trains it again). Used by `xtal-classify --radiation neutron`.

- **Model:** ResNet1d, {_n_parameters(classifier):,} parameters; 230 space-group outputs,
  summed within each extinction group for the extinction-group answer.
- **Input:** {classifier.n_points} points from {low} to
  {high} degrees 2-theta at {classifier.wavelength} Angstrom (d from
  {d_min:.2f} Angstrom up);
  a pattern at another wavelength is moved there through d and must cover at least
  {classifier.min_coverage:.0%} of the grid. Give the wavelength (`--wavelength`) unless the file states it.
- **Training data:** {meta['training_data']}. Neutron scattering lengths, no polarisation factor,
  base Gaussian FWHM {meta['fwhm']} degrees, augmentations {_augmentations(meta['augmentation'])}.
- **Training:** {meta['epochs']} epochs, batch {config['batch_size']}, seed {config['seed']}.
- **Calibration:** temperature {classifier.temperature:.3f}, fitted on augmented validation patterns (never on measured data).

## The eight measured patterns of `data/neutron_measured/`

| | extinction group top-1 | top-5 |
|---|---|---|
| this model | {_pct(m['neutron_model_eg_top1'], '.0%')} | {_pct(m['neutron_model_eg_top5'], '.0%')} |
| final answer with search-match against AMCSD | {_pct(m['neutron_final_eg_top1'], '.0%')} | {_pct(m['neutron_final_eg_top5'], '.0%')} |
| frequency prior (AMCSD) | | {_pct(m['neutron_prior_eg_top5'], '.0%')} |

Eight patterns are a case study, not a benchmark: one more hit moves top-1 by 12.5 points.
"""


def model_cards(model_dir: Path, run: Path) -> dict[Path, str]:
    """The cards of the classifiers in ``model_dir``, by the path each is written to, from the run folder
    ``run`` (``runs/08_measured/<preset>/``) that trained them."""
    config = json.loads((Path(run) / "config.json").read_text())
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    model_dir = Path(model_dir)
    return {model_dir / XRAY_CARD: xray_card(load_classifier(model_dir / XRAY_MODEL), config, metrics),
            model_dir / NEUTRON_CARD: neutron_card(load_classifier(model_dir / NEUTRON_MODEL), config, metrics)}


def write_model_cards(model_dir: Path, run: Path) -> list[Path]:
    """Write :func:`model_cards` beside the classifiers, each atomically; returns the paths written."""
    cards = model_cards(model_dir, run)
    for path, text in cards.items():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return list(cards)


# The test sets of a learning-curve result, in the card's order, with their names in the card
REFERENCE_TEST_SETS = {"from_random": "held-out from_random", "fresh": "held-out fresh",
                       "amcsd": "AMCSD test (de-dup.)", "rruff": "RRUFF dev (measured)"}


def reference_card(result: dict) -> str:
    """The model card of a model saved by ``benchmarks/learning_curve.py``, every number taken from its
    learning-curve result (the scores of the saved file itself where they were measured, else the curve's
    last evaluation)."""
    a, last = result["args"], result.get("saved_scores") or result["curve"][-1]
    rows = "\n".join(f"| {REFERENCE_TEST_SETS[t]} | {last[f'{t}_eg_top1']:.1f}% | {last[f'{t}_eg_top5']:.1f}% |"
                     for t in REFERENCE_TEST_SETS if f"{t}_eg_top1" in last)
    p = result["provenance"]
    return f"""# balanced-reference: extinction group from a clean simulated X-ray pattern, learned from random crystals

Written by `benchmarks/learning_curve.py` on {p['date']} ({p['machine']}, torch {p['torch']}, {p['device']},
commit {p['commit']}):

    {p['command']}

- **What it is for:** the study's reference for learning from balanced random crystals (issue: fresh
  random crystals for every batch). It is not the shipped classifier of `xtal-classify`: it never saw a
  measured pattern, background or noise, and scores near chance on RRUFF (below).
- **Model:** ResNet1d, {result['parameters']:,} parameters, {a['kind'].replace('_', ' ')} outputs (99), intensities
  scaled `{a['intensity']}` inside the model{', resampled onto a ln d axis inside the model' if a['log_d'] else ''}. The file is in the
  shipped-classifier format (`xtal_utils.classify.load_classifier`), so `Classifier.probabilities` takes a
  plain 2-theta pattern: {a['n_points']} points from {a['two_theta_min']} to {a['two_theta_max']} degrees at 1.5406 Angstrom;
  other wavelengths are converted through d.
- **Training data:** a fresh batch of {a['batch_size']} random crystals at every step
  (`xtal_utils.crystals.sample_crystals`: PyXtal's Wyckoff tables as arrays, uniform over the 99
  extinction groups, AMCSD's element and size statistics{f", points redrawn where two atoms were closer than {a['min_distance']} Angstrom" if a.get('min_distance') else ", no distance check"}),
  {a['steps'] * a['batch_size']:,} patterns in all, none seen twice.
  Clean patterns: Gaussian peaks of FWHM {a['fwhm']} degrees (`metadata['fwhm']`){', with realism augmentations' if a['augment'] else ', no augmentation'}.
- **Training:** {a['steps']:,} AdamW steps (peak learning rate {a['lr']}, linear warm-up, cosine decay, weight decay
  {a['weight_decay']}{f", label smoothing {a['label_smoothing']}" if a.get('label_smoothing') else ''}), seed {a['seed']}, {result['seconds'] / 60:.1f} minutes on the 2 CPU cores at {result['patterns_per_second']:.0f} patterns/s
  (waiting for data {100 * result['data_share']:.1f}% of the time). BatchNorm statistics re-estimated on 32 fresh batches at the end.
- **Calibration:** temperature {result.get('temperature', float('nan')):.3f}, fitted on 2,048 fresh validation crystals (another seed).
- **Scores below:** {'of this file, read back with `load_classifier`' if result.get('saved_scores') else "the run's last evaluation (BatchNorm re-estimated on 16 batches)"}.

## Accuracy (extinction groups, clean patterns)

| test set | top-1 | top-5 |
|---|---|---|
{rows}

Chance is 1% (top-1) and 5% (top-5). The test sets: 1,980 held-out crystals of the same generator;
990 PyXtal `from_random` crystals (10 per extinction group, a different generator, spglib-checked);
the de-duplicated AMCSD test split (real mineral structures, simulated); the 454 measured RRUFF
development patterns. The curve is in `benchmarks/results/learning_curve.png`.
"""


def write_reference_card(result: dict, path) -> Path:
    """Write :func:`reference_card` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(reference_card(result))
    return path
