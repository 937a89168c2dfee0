"""Crystal data: AMCSD reading, bad-input counting, de-duplication, leak-free splits, random crystals."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

from xtal_utils import crystals
from xtal_utils.crystals import databases, generation
from xtal_utils.symmetry import crystal_system, extinction_group

AMCSD_LIMIT = 60  # entries parsed in tests; benchmarks/amcsd_counts.py parses all 9,275

NACL_CIF = """data_NaCl
_symmetry_space_group_name_H-M 'F m -3 m'
_space_group_IT_number 225
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
Cl1 Cl 0.5 0.5 0.5
"""


@pytest.fixture(scope="module")
def amcsd():
    return crystals.load_amcsd(limit=AMCSD_LIMIT, progress=False, return_report=True)


def test_amcsd_table_offline(amcsd):
    table, report = amcsd
    print("AMCSD subset report:", report)
    assert report["read"] == AMCSD_LIMIT
    assert report["kept"] + sum(report["skipped"].values()) == report["read"]
    assert len(table) == report["kept"] > 0.9 * AMCSD_LIMIT
    assert set(crystals.COLUMNS) <= set(table.columns) and "structure" in table
    galena = table[table.entry_id == "3"].iloc[0]  # AMCSD 3: galena PbS, Fm-3m, a = 5.93 A
    assert (galena.reduced_formula, galena.space_group, galena.crystal_system) in {
        ("PbS", 225, "cubic"), ("SPb", 225, "cubic")}
    assert galena.a == pytest.approx(5.93)
    for _, row in table.iterrows():
        assert row.structure.properties["space_group"] == row.space_group
        assert row.crystal_system == crystal_system(row.space_group)
        assert len(row.structure) == row.n_sites
        # occupancies are float32 in the cache: compare compositions, not formula strings
        assert row.structure.composition.fractional_composition.almost_equals(
            Composition(row.reduced_formula).fractional_composition, rtol=1e-5)
    # spglib's re-detection agrees with the stored group for most measured structures
    assert (table.space_group == table.space_group_spglib).mean() > 0.8


def test_amcsd_cache_is_reused(amcsd, monkeypatch):
    table, _ = amcsd
    monkeypatch.setattr(databases, "_table_from_jobs",
                        lambda *a, **k: pytest.fail("re-parsed a cached table"))
    again = crystals.load_amcsd(limit=AMCSD_LIMIT, progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="structure"), table.drop(columns="structure"))
    assert again.structure.iloc[0] == table.structure.iloc[0]


def test_bad_cifs_are_skipped_and_counted(tmp_path):
    (tmp_path / "good.cif").write_text(NACL_CIF)
    (tmp_path / "setting.cif").write_text(NACL_CIF.replace("_space_group_IT_number 225\n", ""))
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 5\nloop_\n_atom_site_label\n")
    (tmp_path / "element.cif").write_text(NACL_CIF.replace("Cl1 Cl", "Xq1 Xq"))
    no_group = NACL_CIF.replace("_symmetry_space_group_name_H-M 'F m -3 m'\n", "").replace(
        "_space_group_IT_number 225\n", "")
    (tmp_path / "nogroup.cif").write_text(no_group)
    table, report = crystals.load_cif_folder(tmp_path, return_report=True)
    assert report["read"] == 5 and report["kept"] == 2
    assert report["skipped"] == {"malformed_cif": 1, "unknown_element": 1, "missing_space_group": 1,
                                 "missing_cif": 0}
    assert sorted(table.entry_id) == ["good", "setting"]
    assert set(table.space_group) == {225} and set(table.space_group_spglib) == {225}
    with pytest.raises(crystals.BadEntry, match="element.*Xq|Xq.*element|unknown_element"):
        crystals.parse_entry((tmp_path / "element.cif").read_text(), source="test", entry_id="element")


def test_icsd_export(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "ICSD_CollCode1001.cif").write_text(NACL_CIF)
    pd.DataFrame({"Formula": ["Na Cl", "K Cl"], "Collection Code": [1001, 1002], "Year": [1990, 1991],
                  "Crystal System": ["cubic", "cubic"], "Space Group": ["F m -3 m", "F m -3 m"],
                  "a": [5.64, 6.29], "b": [5.64, 6.29], "c": [5.64, 6.29], "alpha": [90, 90],
                  "beta": [90, 90], "gamma": [90, 90], "Volume": [179.4, 248.9]}
                 ).to_csv(tmp_path / "export.csv", index=False)
    table, report = crystals.load_icsd_export(tmp_path / "export.csv", folder, return_report=True)
    assert report["read"] == 2 and report["kept"] == 1 and report["skipped"]["missing_cif"] == 1
    row = table.iloc[0]
    assert (row.entry_id, row.formula, row.space_group, row.source) == ("1001", "Na Cl", 225, "icsd")


def _planted_table(rng, n_unique=40, n_twins=25):
    """n_unique distinct (formula, space group) entries, then n_twins copies of some of them."""
    unique = pd.DataFrame({"entry_id": [f"u{i}" for i in range(n_unique)],
                           "reduced_formula": [f"X{i}O{i % 3 + 1}" for i in range(n_unique)],
                           "space_group": rng.integers(1, 231, n_unique)})
    twins = unique.iloc[rng.integers(0, n_unique, n_twins)].copy()
    twins["entry_id"] = [f"t{i}" for i in range(n_twins)]
    # same formula in another space group is a different entry, not a twin
    other = unique.iloc[:5].copy()
    other["space_group"] = (other["space_group"] % 230) + 1
    other["entry_id"] = [f"o{i}" for i in range(5)]
    table = pd.concat([unique, other, twins]).sample(frac=1.0, random_state=0).reset_index(drop=True)
    return table, set(twins.entry_id)


def test_deduplicate_removes_exactly_the_planted_twins():
    rng = np.random.default_rng(0)
    table, twins = _planted_table(rng)
    # keep every planted twin after its original so the original is the one kept
    table["is_twin"] = table.entry_id.isin(twins)
    table = table.sort_values("is_twin", kind="stable").reset_index(drop=True)
    out = crystals.deduplicate(table)
    assert set(table.entry_id) - set(out.entry_id) == twins
    assert out.attrs["dedupe"] == {"entries_before": 70, "entries_after": 45,
                                   "groups_before": 45, "groups_after": 45}


def test_group_split_has_no_leak_and_random_split_leaks():
    rng = np.random.default_rng(1)
    table, twins = _planted_table(rng, n_unique=200, n_twins=300)
    grouped = crystals.split(table, seed=3, condition="deduplicated")
    leaky = crystals.split(table, seed=3, condition="duplicated")
    assert crystals.leakage(table, grouped) == 0.0
    assert crystals.leakage(table, leaky) > 0.2
    keys = list(zip(table.reduced_formula, table.space_group))
    for key in set(keys):  # no group straddles two splits
        assert len({s for k, s in zip(keys, grouped) if k == key}) == 1
    assert np.array_equal(grouped, crystals.split(table, seed=3))  # seeded
    shares = pd.Series(grouped).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.07)
    # the leak the random split created is exactly the twins: removing them removes the leak
    unique = crystals.deduplicate(table)
    assert crystals.leakage(unique, crystals.split(unique, seed=3, condition="duplicated")) == 0.0


def test_structure_matcher_keeps_different_structures_of_one_group():
    rocksalt = Structure.from_spacegroup(225, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bigger = rocksalt.copy()
    bigger.scale_lattice(rocksalt.volume * 1.02)  # same structure, 0.7% larger cell: a twin
    zincblende = Structure.from_spacegroup(216, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.25] * 3])
    fake = zincblende.copy()  # same formula and (wrongly) same group label, different structure
    table = pd.DataFrame({"reduced_formula": ["NaCl"] * 3, "space_group": [225] * 3,
                          "structure": [rocksalt, bigger, fake]})
    assert len(crystals.deduplicate(table)) == 1
    assert len(crystals.deduplicate(table, structure_matcher=True)) == 2


# --------------------------------------------------------------------------------------- generation

ONE_PER_SYSTEM = (1, 14, 62, 141, 167, 194, 225)  # triclinic ... cubic


def test_random_crystals_have_their_space_group_and_are_seeded():
    structures = crystals.random_crystals(ONE_PER_SYSTEM, 2, seed=5)
    assert len(structures) >= 0.9 * 2 * len(ONE_PER_SYSTEM)
    assert {crystal_system(s.properties["space_group"]) for s in structures} == {
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
    for s in structures:
        assert crystals.detect_space_group(s) == s.properties["space_group"]
        assert len(s.composition.elements) >= 2
        assert 3.0 < s.volume / len(s) < 100.0  # Angstrom^3 per atom
    again = crystals.random_crystals(ONE_PER_SYSTEM, 2, seed=5, workers=2)
    assert [s.properties["slot"] for s in again] == [s.properties["slot"] for s in structures]
    assert all(_same_crystal(a, b) for a, b in zip(again, structures))
    other = crystals.random_crystals(ONE_PER_SYSTEM[:2], 2, seed=6)
    assert not any(_same_crystal(a, b) for a, b in zip(other, structures[:len(other)]))


def test_crystal_depends_only_on_seed_and_slot():
    config = crystals.RandomCrystalConfig(space_groups=(14, 62), n_per_group=3, seed=2, shard_size=4)
    both = crystals.random_crystals((14, 62), 3, seed=2)
    big = {s.properties["slot"]: s for s in both}
    assert list(big) == crystals.slots(config)
    for s in crystals.random_crystals((62,), 3, seed=2, shard_size=1):
        assert _same_crystal(s, big[s.properties["slot"]])


def test_extinction_group_balance():
    config = crystals.RandomCrystalConfig(space_groups=(3, 4, 5, 10, 11), n_per_group=4,
                                          balance="extinction_group")
    labels = [extinction_group(g) for g, _ in crystals.slots(config)]
    counts = pd.Series(labels).value_counts()
    assert set(counts) == {4} and len(counts) == len({extinction_group(g) for g in (3, 4, 5, 10, 11)})


def _same_crystal(a, b) -> bool:
    """Same lattice, species and coordinates, site by site (properties are not compared)."""
    return (len(a) == len(b) and np.allclose(a.lattice.matrix, b.lattice.matrix)
            and [str(x.species) for x in a] == [str(x.species) for x in b]
            and np.allclose(a.frac_coords, b.frac_coords))


def _crystal_set(batch):
    return sorted((int(g), round(float(batch.lattice[i].sum()), 8),
                   round(float(batch.frac_coords[i].sum()), 8)) for i, g in enumerate(batch.space_group))


def test_generation_resumes_after_a_crash(tmp_path, monkeypatch):
    config = crystals.RandomCrystalConfig(space_groups=ONE_PER_SYSTEM[:4], n_per_group=2, seed=9,
                                          shard_size=2)
    assert generation.n_shards(config) == 4
    crystals.generate(config, workers=1, root=tmp_path / "ref", progress=False)
    reference = crystals.load_generated(config, root=tmp_path / "ref")

    written = []
    real_write = generation._write_shard

    def crash_after_two(folder, shard, batch, meta):
        if len(written) == 2:
            raise KeyboardInterrupt("injected crash")
        real_write(folder, shard, batch, meta)
        written.append(shard)

    monkeypatch.setattr(generation, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        crystals.generate(config, workers=1, root=tmp_path / "run", progress=False)
    folder = generation.output_dir(config, tmp_path / "run")
    assert generation.done_shards(folder) == {0, 1}
    with pytest.raises(FileNotFoundError, match="missing"):
        crystals.load_generated(config, root=tmp_path / "run")
    monkeypatch.setattr(generation, "_write_shard", real_write)

    made = []
    real_make = generation.make_shard
    monkeypatch.setattr(generation, "make_shard",
                        lambda c, s, shard: made.append(shard) or real_make(c, s, shard))
    crystals.generate(config, workers=1, root=tmp_path / "run", progress=False)
    assert made == [2, 3]  # finished shards are not made again
    resumed, slots = crystals.load_generated(config, root=tmp_path / "run")
    assert _crystal_set(resumed) == _crystal_set(reference[0])
    assert np.array_equal(slots, reference[1]) and len(np.unique(slots, axis=0)) == len(slots)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["kept"] == len(resumed) and summary["shards"] == 4


def test_generation_resumes_after_sigkill(tmp_path):
    """A separate process is killed with SIGKILL mid-run; a parallel run finishes it."""
    config = crystals.RandomCrystalConfig(space_groups=(2, 14, 62, 141, 194), n_per_group=4, seed=4,
                                          shard_size=1)
    script = textwrap.dedent(f"""
        from xtal_utils import crystals
        config = crystals.RandomCrystalConfig(**{config.__dict__!r})
        crystals.generate(config, workers=1, root={str(tmp_path / 'run')!r}, progress=False)
    """)
    folder = generation.output_dir(config, tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    deadline = time.time() + 60
    while len(generation.done_shards(folder)) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = generation.done_shards(folder)
    if len(done) == generation.n_shards(config):
        pytest.skip("the run finished before it could be killed")
    assert len(done) >= 3
    crystals.generate(config, workers=2, root=tmp_path / "run", progress=False)
    resumed, slots = crystals.load_generated(config, root=tmp_path / "run")
    reference = crystals.random_crystals((2, 14, 62, 141, 194), 4, seed=4, shard_size=1)
    assert [tuple(s) for s in slots] == [s.properties["slot"] for s in reference]
    assert all(_same_crystal(a, b) for a, b in zip(resumed.to_structures(), reference))
    assert not list(folder.glob(".*.tmp"))
