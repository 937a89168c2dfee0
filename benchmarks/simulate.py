"""Powder patterns per second: xtal_utils.diffraction against pymatgen's XRDCalculator, same run.

    .venv/bin/python benchmarks/simulate.py                      # 256 AMCSD cells of 4-24 sites, 4096 points
    .venv/bin/python benchmarks/simulate.py --n 512 --repeats 20

pymatgen is timed on get_pattern() alone, which returns peak lists (no profile, no grid), so the
comparison flatters pymatgen a little. Ours is timed on simulate(): peaks, Gaussian profile and the
4096-point grid, from a StructureBatch (the cached arrays the study feeds it) and, separately, from
the list of pymatgen Structures (packing included). The median of ``--repeats`` calls is reported.
The simulator remembers each structure's Laue symmetry (sign changes, axis permutations, hexagonal
groups, centre of symmetry) and each element's form-factor table, so repeated calls (training epochs, these repeats)
skip that work; the "caches cleared" line times a first call on structures it has not seen, and the
"no symmetry" line sums every hkl of the half-sphere over every atom.
Our simulator is timed with 1 torch thread and with torch's default (all cores): on a shared
machine another busy process makes multi-threaded torch stall, and the 1-thread line is the fair
per-core comparison. A CUDA line is added when torch sees a GPU.
"""

from __future__ import annotations

import argparse
import time
import warnings
from unittest import mock

import numpy as np
import torch

from xtal_utils.crystals import sample_amcsd
from xtal_utils.diffraction import PowderSimulator, simulator
from xtal_utils.diffraction.laue import no_symmetry
from xtal_utils.structures import StructureBatch


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="structures in the batch")
    parser.add_argument("--min-sites", type=int, default=4)
    parser.add_argument("--max-sites", type=int, default=24)
    parser.add_argument("--n-points", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5, help="calls of ours per round (median)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating pymatgen / ours rounds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                        help="torch CPU thread counts to time (pymatgen always uses one core)")
    args = parser.parse_args()

    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures, _, _ = sample_amcsd(args.n, min_sites=args.min_sites, max_sites=args.max_sites, seed=args.seed)
    batch = StructureBatch.from_structures(structures)
    sites = np.array([len(s) for s in structures])
    print(f"{len(structures)} AMCSD structures, {sites.min()}-{sites.max()} sites (mean {sites.mean():.1f}); "
          f"2-theta 5-90 deg, {args.n_points} points, Cu K-alpha1; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    calc = XRDCalculator(wavelength=1.5406)
    sim = PowderSimulator("xray", 1.5406, (5.0, 90.0), args.n_points, fwhm=0.1, device="cpu")
    # The CPU is shared, so its speed drifts: time pymatgen and ours in alternating rounds and take
    # the median of the per-round ratios, so both see the same conditions.
    print(f"{args.rounds} alternating rounds of pymatgen and ours; medians over rounds")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        rounds = []
        for _ in range(args.rounds):
            t_pmg = median_seconds(lambda: [calc.get_pattern(s, two_theta_range=(5, 90)) for s in structures], 1)
            t_batch = median_seconds(lambda: sim.simulate(batch), args.repeats)
            t_list = median_seconds(lambda: sim.simulate(structures), args.repeats)
            t_cold = median_seconds(lambda: (simulator.clear_caches(), sim.simulate(batch)), args.repeats)
            with mock.patch.object(simulator, "laue_symmetry", no_symmetry):
                t_plain = median_seconds(lambda: sim.simulate(batch), args.repeats)
            rounds.append([len(structures) / t for t in (t_pmg, t_batch, t_list, t_cold, t_plain)])
        rates = np.array(rounds)  # (rounds, 5) patterns/s
        pmg_rate, rate_batch, rate_list, rate_cold, rate_plain = np.median(rates, axis=0)
        ratio_batch = np.median(rates[:, 1] / rates[:, 0])
        ratio_list = np.median(rates[:, 2] / rates[:, 0])
        ratio_cold = np.median(rates[:, 3] / rates[:, 0])
        ratio_plain = np.median(rates[:, 4] / rates[:, 0])
        print(f"torch threads = {threads}  (per-round ratios, StructureBatch: "
              f"{', '.join(f'{r:.0f}' for r in rates[:, 1] / rates[:, 0])})")
        print(f"  pymatgen XRDCalculator.get_pattern (peaks only): {pmg_rate:8.0f} patterns/s")
        print(f"  ours, cpu, from StructureBatch:                  {rate_batch:8.0f} patterns/s   "
              f"ratio {ratio_batch:6.1f}x")
        print(f"  ours, cpu, from pymatgen Structures:             {rate_list:8.0f} patterns/s   "
              f"ratio {ratio_list:6.1f}x")
        print(f"  ours, cpu, from StructureBatch, caches cleared:  {rate_cold:8.0f} patterns/s   "
              f"ratio {ratio_cold:6.1f}x")
        print(f"  ours, cpu, from StructureBatch, no symmetry:     {rate_plain:8.0f} patterns/s   "
              f"ratio {ratio_plain:6.1f}x")

    if torch.cuda.is_available():
        gpu = PowderSimulator("xray", 1.5406, (5.0, 90.0), args.n_points, fwhm=0.1, device="cuda")
        t_gpu = median_seconds(lambda: gpu.simulate(batch, as_tensor=True), args.repeats, torch.cuda.synchronize)
        rate_gpu = len(structures) / t_gpu
        print(f"ours, cuda ({torch.cuda.get_device_name()}), from StructureBatch: {rate_gpu:8.0f} patterns/s   "
              f"ratio {rate_gpu / pmg_rate:6.1f}x (against the median pymatgen rate)")
    else:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
