"""Notebook 08's AMCSD member, trained with other realism augmentations, scored on RRUFF dev alone and
beside the shipped stream member.

    .venv/bin/python benchmarks/amcsd_member.py --noise-level 0.0005 0.04    # the run in docs/learning.md
    .venv/bin/python benchmarks/amcsd_member.py --epochs 2 --tag amcsd_member_smoke

The training is notebook 08's at the cpu preset (AMCSD's de-duplicated grouped split, seed 0, 2,048
points, base FWHM 0.1 degrees, ``shipped_epochs`` 75 passes of batch 64, temperature fitted on
augmented validation patterns), with ``ps.REALISTIC`` changed only as the options say. It
goes through the same model cache, so a run with no option is the member notebook 08 trains. The
pair is the shipped ensemble's recipe (``classify.Ensemble``: this member and
``models/xtal-classify-xray-stream.pt``). Every answer is scored as in ``benchmarks/ensemble.py``, and
the results go to ``benchmarks/results/<tag>.json`` with their provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS
from xtal_utils.rruff import model_eg, novel_margins, rruff_inputs, score_answers



def main() -> None:
    from xtal_utils import classify, evaluate, experiments as ex, pattern_sets as ps, symmetry
    from xtal_utils.identify import MATCH_THRESHOLD
    from xtal_utils.paths import MODELS
    from xtal_utils.train import TrainConfig, predict

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=75, help="passes over the training split (08: shipped_epochs)")
    parser.add_argument("--noise-level", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="Augmentation.noise_level: Gaussian baseline noise, relative to the strongest peak")
    parser.add_argument("--cell-strain", type=float, default=None, metavar="E",
                        help="Augmentation.cell_strain: each cell edge changed by up to E, apart (isostructural relatives)")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="seed of the training (initial weights, batches, augmentations); the split keeps seed 0")
    parser.add_argument("--save", type=Path, default=None, help="also write the member there (classify.save_classifier)")
    parser.add_argument("--tag", default="amcsd_member", help="results go to benchmarks/results/<tag>.json")
    args = parser.parse_args()

    augmentation = ps.REALISTIC
    if args.noise_level:
        augmentation = dataclasses.replace(augmentation, noise_level=tuple(args.noise_level))
    if args.cell_strain:
        augmentation = dataclasses.replace(augmentation, cell_strain=args.cell_strain)
    grid, kind, seed = ps.Grid(n_points=2048, fwhm=0.1), "space_group", 0
    data = ps.amcsd_set()
    splits, _ = ex.real_splits(data, deduplicated=True, condition="deduplicated", seed=seed, valid=data.valid(grid))
    start = time.perf_counter()
    validation = ps.augmented_patterns(data, grid, splits["validation"], augmentation, seed=seed)
    val_source = ex.PatternSource(validation, data.space_groups[splits["validation"]], kind)
    result = ex.train_and_score(
        ex.augmented_source(data, grid, splits["train"], kind, augmentation), val_source, {}, kind=kind,
        data_key=ex.data_key(data, grid, splits, augmentation=ps.augmentation_key(augmentation)),
        config=TrainConfig(epochs=args.epochs, batch_size=64, seed=args.train_seed), name="08_measured augmented space_group")
    temperature = evaluate.fit_temperature(predict(result.model, val_source),
                                           symmetry.labels_of(val_source.space_groups, kind))
    minutes = (time.perf_counter() - start) / 60
    member = classify.Classifier(result.model, kind, (grid.two_theta_min, grid.two_theta_max), grid.n_points,
                                 grid.wavelength, grid.radiation, temperature=temperature,
                                 prior=evaluate.frequency_prior(data.space_groups[splits["train"]], kind))
    if args.save:
        classify.save_classifier(args.save, result.model, kind=kind, two_theta_range=member.two_theta_range,
                                 n_points=grid.n_points, wavelength=grid.wavelength, radiation=grid.radiation,
                                 temperature=temperature, prior=member.prior,
                                 metadata={"augmentation": ps.augmentation_key(augmentation), "epochs": args.epochs,
                                           **provenance(sys.argv)})
    stream = classify.load_classifier(MODELS / "xtal-classify-xray-stream.pt", device="cpu")
    rruff = rruff_inputs(threshold=MATCH_THRESHOLD)
    answers = {"model: AMCSD member": model_eg(member, rruff, use_prior=False),
               "model: pair with the stream member": model_eg(classify.Ensemble([member, stream]), rruff, use_prior=None)}
    result_json = {"provenance": provenance(sys.argv), "augmentation": ps.augmentation_key(augmentation),
                   "epochs": args.epochs, "minutes (training, or reading the cache)": minutes,
                   "temperature": temperature, "rruff_dev": score_answers(answers, rruff),
                   "novel_margins": novel_margins(answers, rruff)}
    print(f"{args.epochs} passes, {minutes:.1f} min, temperature {temperature:.3f}")
    for name, s in result_json["rruff_dev"]["scores"].items():
        print(f"  {name:60s} {s['top1']:5.1f} / {s['top5']:5.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result_json, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
