"""xtal-classify on hostile and odd pattern files, with the shipped model and the full AMCSD library.

    .venv/bin/python benchmarks/hostile.py          # exit status 1 when any case breaks a rule

Each case is a file written here and classified by the command itself (``xtal-classify --json``, in one
process through ``identify.main``). The rules, for every case:

- every similarity lies in [-1, 1];
- a file with no true group (garbage) is never a known phase, and no group gets a probability >= 0.5;
- a file with a true group never gets a probability >= 0.5 on another group;
- a file that cannot be read gets one line on stderr that names it, and an error row.

Results go to ``benchmarks/results/hostile.json`` with their provenance. The library is the user-cache one
(built on first use, a few minutes).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure
from xtal_utils import symmetry
from xtal_utils.config import provenance
from xtal_utils.diffraction import Augmentation, PowderSimulator
from xtal_utils.identify import main as command
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS
from xtal_utils.paths import DATA

RRUFF_WAVELENGTH = 1.5418


def _xy(path: Path, two_theta, intensity, header="2theta intensity") -> Path:
    np.savetxt(path, np.column_stack([two_theta, intensity]), header=header)
    return path


def cases(folder: Path) -> list[dict]:
    """The hostile files: name, path, the true extinction group (None for garbage), extra arguments, and
    whether an error is the expected answer."""
    rruff = np.load(DATA / "rruff_dev" / "rruff_dev.npz")
    two_theta, patterns = rruff["two_theta"], rruff["intensity"].astype(float)
    truth = symmetry.extinction_groups(rruff["space_group"].astype(int))
    out = []
    grid = np.arange(5.0, 90.0, 0.02)
    out.append({"name": "one Gaussian peak on a zero baseline", "truth": None, "args": [],
                "path": _xy(folder / "one_peak.xy", grid, 1000 * np.exp(-0.5 * ((grid - 31.7) / 0.08) ** 2))})
    noise = np.random.default_rng(0).poisson(50, len(grid)).astype(float)
    out.append({"name": "counting noise only", "truth": None, "args": [], "path": _xy(folder / "noise.xy", grid, noise),
                "error": True})
    for i in (0, 1, 2):
        shifted = patterns[i] - 0.5 * patterns[i].max()
        out.append({"name": f"RRUFF pattern {i}, lowered by half its maximum (negative baseline)", "truth": int(truth[i]),
                    "args": ["--wavelength", str(RRUFF_WAVELENGTH)],
                    "path": _xy(folder / f"negative_{i}.xy", two_theta, shifted)})
        stretch = patterns[i].copy()
        stretch[(two_theta > 30) & (two_theta < 55)] = 0.0
        out.append({"name": f"RRUFF pattern {i}, 30-55 degrees zeroed", "truth": int(truth[i]),
                    "args": ["--wavelength", str(RRUFF_WAVELENGTH)],
                    "path": _xy(folder / f"zero_stretch_{i}.xy", two_theta, stretch)})
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    textured = PowderSimulator(two_theta_range=(grid[0], grid[-1]), n_points=len(grid), fwhm=0.15).simulate(
        [nacl], Augmentation(march_dollase=(0.15, 0.15)), seed=0)[0]
    out.append({"name": "NaCl film, strong texture (March-Dollase r = 0.15): few peaks", "truth": int(symmetry.extinction_group(225)),
                "args": [], "path": _xy(folder / "textured_film.xy", grid, 1000 * textured + 5)})
    gsas = folder / "truncated.gsa"
    lines = ["synthetic GSAS STD pattern".ljust(80), f"BANK 1 {len(grid)} {len(grid) // 10} CONST 500.00 2.00 0 0 STD".ljust(80)]
    counts = np.round(100 + 1000 * np.exp(-0.5 * ((grid - 40) / 0.2) ** 2))
    lines += ["".join(f"{v:8.0f}" for v in counts[i:i + 10]).ljust(80) for i in range(0, len(counts) // 3, 10)]
    gsas.write_text("\n".join(lines) + "\n")
    out.append({"name": "GSAS STD file cut to a third", "truth": None, "args": [], "path": gsas, "error": True})
    d1a = (DATA / "neutron_measured" / "instrument_files" / "pbso4.dat").read_text().splitlines()
    (folder / "truncated_d1a.dat").write_text("\n".join(d1a[: len(d1a) // 2]) + "\n")
    out.append({"name": "FullProf D1A file cut in half", "truth": None, "args": [], "path": folder / "truncated_d1a.dat",
                "error": True})
    comma = folder / "decimal_commas.xy"
    comma.write_text("\n".join(f"{t:.2f} {y:.1f}".replace(".", ",") for t, y in zip(two_theta, patterns[0])) + "\n")
    out.append({"name": "decimal commas", "truth": None, "args": [], "path": comma, "error": True})
    labels = {row.split(",")[0]: int(row.split(",")[2]) for row in
              (DATA / "neutron_measured" / "labels.csv").read_text().splitlines()[1:]}
    # D1A states 1.912 A, which no X-ray tube emits (a warning: synchrotrons do too); BT-1 states 1.5403 A,
    # a Cu line, but measures to 168 degrees, which no laboratory X-ray goniometer does (an error row)
    for name, expected in (("pbso4_d1a_ill.xye", "warning"), ("al2o3_bt1_nist.xye", "error")):
        out.append({"name": f"neutron pattern {name} without --radiation neutron",
                    "truth": int(symmetry.extinction_group(labels[name])), "args": [],
                    "path": DATA / "neutron_measured" / name,
                    **({"warning": "--radiation neutron"} if expected == "warning" else {"error": True})})
    return out


def run(case: dict) -> dict:
    """The command's JSON answer and stderr for one case, and whether it keeps the rules."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            command([str(case["path"]), "--json", *case["args"]])
        except SystemExit as stop:
            code = stop.code or 0
    (answer,) = [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]
    problems = []
    errors = [line for line in stderr.getvalue().splitlines() if "error:" in line]
    if case.get("error"):
        if answer["error"] is None or code != 2 or len(errors) != 1 or str(case["path"]) not in errors[0]:
            problems.append("expected a one-line error naming the file")
    elif answer["error"] is not None:
        problems.append(f"unexpected error: {answer['error']}")
    else:
        if any(not -1 <= m["similarity"] <= 1 for m in answer["matches"]):
            problems.append("a similarity outside [-1, 1]")
        top = answer["final"][0]
        if case["truth"] is None and answer["trust"] == "match":
            problems.append("a known phase on garbage")
        if case["truth"] is None and top["probability"] >= 0.5:
            problems.append(f"probability {top['probability']:.2f} on garbage")
        if case["truth"] is not None and top["label"] != case["truth"] and top["probability"] >= 0.5:
            problems.append(f"probability {top['probability']:.2f} on a wrong group")
        if case.get("warning") and not any(case["warning"] in w for w in answer["warnings"]):
            problems.append(f"no warning naming {case['warning']}")
    top = answer["final"][0] if answer["final"] else {}
    return {"case": case["name"], "truth": case["truth"], "error": answer["error"], "trust": answer["trust"],
            "first": top.get("label"), "probability": top.get("probability"),
            "truth_rank": next((i + 1 for i, r in enumerate(answer["final"]) if r["label"] == case["truth"]), None),
            "best_similarity": answer["matches"][0]["similarity"] if answer["matches"] else None,
            "matched_peaks": answer["matched_peaks"], "warnings": answer["warnings"], "problems": problems}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(case) for case in cases(Path(folder))]
    for row in rows:
        verdict = "ok" if not row["problems"] else "FAIL: " + "; ".join(row["problems"])
        answer = (f"error: {row['error'][:70]}" if row["error"] else
                  f"{row['trust']}, first {row['first']} at {row['probability']:.2f}, truth at rank {row['truth_rank']}, "
                  f"similarity {row['best_similarity']:.3f}, {row['matched_peaks']} peaks")
        print(f"{row['case'][:58]:58s} {answer}  [{verdict}]")
    failed = sum(bool(row["problems"]) for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} cases keep every rule")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps({"provenance": provenance(sys.argv), "cases": rows}, indent=1) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
