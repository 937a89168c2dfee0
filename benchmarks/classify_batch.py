"""xtal-classify on a folder: one process for 100 pattern files (and one malformed file), against one
process per file, measured in the same run.

    .venv/bin/python benchmarks/classify_batch.py      # output in benchmarks/results/classify_batch.txt

The files are the first 100 RRUFF dev patterns written as two-column .xy files (8,500 points each),
plus one with a NaN. The folder run writes a CSV table; it must have one row per file, an error row
for the bad file, and exit with status 2. Search-match runs for every file (the AMCSD library is
built first, outside the timing). Time per file after start-up = (folder run - one-file run) / 100.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from xtal_utils.config import provenance
from xtal_utils.paths import BENCHMARK_RESULTS as RESULTS


ROOT = Path(__file__).resolve().parents[1]
COMMAND = [str(Path(sys.executable).with_name("xtal-classify")), "--wavelength", "1.5418"]


def timed(arguments) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    run = subprocess.run(COMMAND + arguments, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t0, run


def main() -> None:
    rruff = np.load(ROOT / "data" / "rruff_dev" / "rruff_dev.npz")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for i in range(100):
            np.savetxt(folder / f"rruff_{i:03d}.xy", np.column_stack([rruff["two_theta"], rruff["intensity"][i]]),
                       fmt="%.4f", header="2theta intensity")
        bad = folder / "zz_malformed.xy"
        bad.write_text("".join(f"{10 + 0.01 * i:.2f} {'nan' if i == 50 else 100 + i % 7}\n" for i in range(300)))
        warm, run = timed([str(folder / "rruff_000.xy")])  # builds the search-match library once if missing
        assert run.returncode == 0, run.stderr
        singles = [timed([str(folder / f"rruff_{i:03d}.xy")])[0] for i in range(1, 6)]
        single = float(np.median(singles))
        table = folder.parent / f"{folder.name}.csv"
        batch, run = timed([str(folder), "--csv", str(table)])
        rows = list(csv.DictReader(open(table)))
        table.unlink()
    errors = [r for r in rows if r["error"]]
    lines = [
        f"# {provenance(sys.argv)}",
        f"# {len(rows)} rows for 101 files; exit status {run.returncode}; error rows: {len(errors)} "
        f"({errors[0]['error'] if errors else '-'})",
        f"one process per file (median of 5)   {single:8.2f} s per file",
        f"one process, 101 files               {batch:8.2f} s in all",
        f"  after start-up, per file           {1000 * (batch - single) / 100:8.1f} ms",
        f"  100 files, one process vs one each {100 * single / batch:8.1f} x faster",
    ]
    assert len(rows) == 101 and run.returncode == 2 and len(errors) == 1
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "classify_batch.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
