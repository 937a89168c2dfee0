"""The fresh-crystal generator, the stream and training on it by a step budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from xtal_utils import crystals
from xtal_utils.datasets import CrystalStream
from xtal_utils.diffraction import PowderSimulator, laue
from xtal_utils.models import ResNet1d
from xtal_utils.symmetry import crystal_system, extinction_groups
from xtal_utils.train import StreamConfig, fit_stream, load_checkpoint, recalibrate_batchnorm


def test_sample_crystals_is_a_function_of_its_arguments():
    a = crystals.sample_crystals(32, seed=(3, 7))
    b = crystals.sample_crystals(32, seed=(3, 7))
    c = crystals.sample_crystals(32, seed=(3, 8))
    for field in a.FIELDS:
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.lattice, c.lattice)


def _spglib_agreement(batch) -> float:
    """Share of a batch's crystals in which spglib (1e-3 A) finds the drawn space group."""
    import spglib

    agree = []
    for i in range(len(batch)):
        m = batch.n_sites[i]
        cell = (batch.lattice[i], batch.frac_coords[i, :m], batch.atomic_number[i, :m, 0])
        dataset = spglib.get_symmetry_dataset(cell, symprec=1e-3)
        agree.append(dataset is not None and dataset.number == batch.space_group[i])
    return float(np.mean(agree))


def test_sample_crystals_labels_agree_with_spglib():
    batch = crystals.sample_crystals(460, seed=11, balance="space_group")
    assert len(np.unique(batch.space_group)) > 150  # 460 draws over 230 groups
    assert _spglib_agreement(batch) >= 0.98  # benchmarks/generate.py measures 20,000


def test_orbit_scale_draws_more_sites_of_the_same_groups():
    """orbit_scale 1 is the default draw; above 1 the crystals have more sites, up to the atom budget,
    and spglib still finds the drawn group."""
    plain = crystals.sample_crystals(200, seed=(4, 2), balance="space_group")
    same = crystals.sample_crystals(200, seed=(4, 2), balance="space_group", orbit_scale=1.0)
    for field in plain.FIELDS:
        assert np.array_equal(getattr(plain, field), getattr(same, field))
    rich = crystals.sample_crystals(200, seed=(4, 2), balance="space_group", orbit_scale=3.0, max_orbits=32,
                                    max_atoms=96)
    assert np.array_equal(plain.space_group, rich.space_group)
    low = np.isin([crystal_system(int(g)) for g in rich.space_group], ["triclinic", "monoclinic"])
    assert np.median(rich.n_sites[low]) >= 2 * np.median(plain.n_sites[low])
    assert _spglib_agreement(rich) >= 0.95


def test_cell_atoms_gives_every_family_cells_of_the_same_size():
    """With cell_atoms the atoms per cell are drawn alike for every group: a triclinic crystal is as
    large as an orthorhombic one (the orbit draw gives it a third as many), and spglib still finds the
    drawn group."""
    plain = crystals.sample_crystals(400, seed=(5, 1), balance="space_group")
    sized = crystals.sample_crystals(400, seed=(5, 1), balance="space_group", cell_atoms=36, max_orbits=48,
                                     max_atoms=128)
    assert np.array_equal(plain.space_group, sized.space_group)
    system = np.array([crystal_system(int(g)) for g in sized.space_group])
    low, mid = np.isin(system, ["triclinic", "monoclinic"]), system == "orthorhombic"
    assert 0.7 < np.median(sized.n_sites[low]) / np.median(sized.n_sites[mid]) < 1.4
    assert np.median(sized.n_sites[low]) >= 2 * np.median(plain.n_sites[low])
    assert 24 <= np.median(sized.n_sites[~np.isin(system, ["cubic"])]) <= 48
    assert _spglib_agreement(sized) >= 0.95


def test_sample_crystals_cells_fit_their_systems():
    batch = crystals.sample_crystals(400, seed=2, balance="space_group")
    lengths = np.linalg.norm(batch.lattice, axis=2)
    for i, g in enumerate(batch.space_group):
        system = crystal_system(int(g))
        if system == "cubic":
            assert np.allclose(lengths[i], lengths[i, 0])
        if system in ("hexagonal", "trigonal"):
            cos_gamma = batch.lattice[i, 0] @ batch.lattice[i, 1] / lengths[i, 0] / lengths[i, 1]
            assert np.isclose(cos_gamma, -0.5)
    volume_per_atom = np.abs(np.linalg.det(batch.lattice)) / batch.n_sites
    assert 9 < np.median(volume_per_atom) < 17  # AMCSD's median is 12.8 A^3


def test_balance_and_weights():
    eg = extinction_groups(crystals.sample_crystals(3000, seed=0).space_group)
    assert len(np.unique(eg)) >= 95  # 99 groups, about 30 draws each
    weights = np.zeros(99)
    weights[[0, 4]] = 1.0
    eg = extinction_groups(crystals.sample_crystals(200, seed=0, weights=weights).space_group)
    assert set(np.unique(eg)) == {1, 5}
    with pytest.raises(ValueError, match="weights"):
        crystals.sample_crystals(4, seed=0, weights=np.ones(5))


def test_min_distance_redraws_close_atoms():
    from xtal_utils.crystals.sampling import shortest_distances

    plain = shortest_distances(crystals.sample_crystals(300, seed=5))
    checked = shortest_distances(crystals.sample_crystals(300, seed=5, min_distance=1.0))
    assert (checked < 1.0).mean() < (plain < 1.0).mean()


def test_known_symmetry_equals_the_detected_one():
    batch = crystals.sample_crystals(300, seed=9, balance="space_group")
    known = crystals.laue_symmetry_of(batch.space_group)
    found = laue.laue_symmetry(batch)
    for a, b in zip(known[:2] + known[3:], found[:2] + found[3:]):
        assert np.array_equal(a, b)
    assert np.array_equal(np.isnan(known[2]), np.isnan(found[2]))
    simulator = PowderSimulator(n_points=1024)
    with_known = simulator.simulate(batch, symmetry=known)
    reference = simulator.simulate(batch, symmetry=laue.no_symmetry(batch))
    assert np.abs(with_known - reference).max() < 1e-4


def _stream(seed=0):
    return CrystalStream(PowderSimulator(n_points=256, two_theta_range=(10, 60), fwhm=0.4, device="cpu"),
                         "extinction_group", seed=seed, batch_size=8)


def test_stream_batches_are_pure_functions_of_seed_and_step():
    x1, y1 = _stream().batch(5)
    x2, y2 = _stream().batch(5)
    x3, _ = _stream().batch(6)
    assert x1.shape == (8, 1, 256) and y1.shape == (8,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    in_order = list(_stream().batches(start=4, stop=7))
    assert torch.equal(in_order[1][0], x1)
    from_workers = list(_stream().batches(start=4, stop=7, workers=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(in_order, from_workers))


def _model():
    torch.manual_seed(0)
    return ResNet1d(99, widths=(8, 16), blocks=(1, 1), pool_size=4)


def test_resumed_training_gives_the_same_weights(tmp_path):
    config = StreamConfig(steps=6, batch_size=8, lr=1e-2)
    options = dict(checkpoint_every=2, workers=0, progress=False)
    whole = _model()
    fit_stream(whole, _stream(), config, **options)
    resumed = _model()
    fit_stream(resumed, _stream(), config, checkpoint=tmp_path / "ck.pt", stop_after=3, **options)
    partway = {k: v.clone() for k, v in resumed.state_dict().items()}
    again = _model()  # a fresh process would build the model anew and read the checkpoint
    state = fit_stream(again, _stream(), config, checkpoint=tmp_path / "ck.pt", **options)
    assert state["step"] == 6
    assert any(not torch.equal(partway[k], v) for k, v in again.state_dict().items())
    for key, value in whole.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def _scripted(values):
    """An evaluate function that reports ``values`` as top-1, one per call, and records the weights it saw."""
    seen = []

    def evaluate(model, step):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"top1": values[len(seen) - 1]}

    return evaluate, seen


def test_early_stopping_returns_to_the_best_weights_and_resumes(tmp_path):
    # top-1 rises to its best at the 2nd evaluation (step 4), then stays lower: with patience 2 training
    # stops at the 4th evaluation (step 8) of 20 steps, and the model returns to step 4's weights
    config = StreamConfig(steps=20, batch_size=8, lr=1e-2, eval_every=2, patience=2)
    options = dict(checkpoint_every=2, workers=0, progress=False)
    evaluate, seen = _scripted([0.1, 0.3, 0.2, 0.3, 0.9, 0.9])
    model = _model()
    state = fit_stream(model, _stream(), config, evaluate=evaluate, **options)
    assert (state["step"], state["best_step"], state["stopped"]) == (8, 4, True)
    assert [row["step"] for row in state["curve"]] == [2, 4, 6, 8]
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen[1][key]), key
    # interrupted after 5 steps and resumed from the checkpoint: the same stop and the same weights
    evaluate, _ = _scripted([0.1, 0.3, 0.2, 0.3, 0.9, 0.9])
    fit_stream(_model(), _stream(), config, evaluate=evaluate, checkpoint=tmp_path / "ck.pt", stop_after=5,
               **options)
    evaluate, _ = _scripted([0.2, 0.3, 0.9])  # the resumed run's evaluations: steps 6 and 8 (then stops)
    again = _model()
    resumed = fit_stream(again, _stream(), config, evaluate=evaluate, checkpoint=tmp_path / "ck.pt", **options)
    assert (resumed["step"], resumed["best_step"], resumed["stopped"]) == (8, 4, True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_early_stopping_counts_only_rises_above_min_delta():
    # rises of 0.01 are no rise at min_delta 0.02: the best stays at the first evaluation (step 2), and the
    # patience of 2 runs out at step 6; at min_delta 0 every rise counts and the run goes on to its end
    values = [0.10, 0.11, 0.12, 0.13, 0.14]
    options = dict(checkpoint_every=2, workers=0, progress=False)
    for min_delta, expected in ((0.02, (6, 2, True)), (0.0, (10, 10, False))):
        config = StreamConfig(steps=10, batch_size=8, eval_every=2, patience=2, min_delta=min_delta)
        state = fit_stream(_model(), _stream(), config, evaluate=_scripted(values)[0], **options)
        assert (state["step"], state["best_step"], state["stopped"]) == expected, min_delta


def test_moving_average_of_the_weights_is_returned_and_resumes(tmp_path):
    config = StreamConfig(steps=8, batch_size=8, lr=1e-2, ema=0.9)
    options = dict(checkpoint_every=2, workers=0, progress=False)
    plain, averaged = _model(), _model()
    fit_stream(plain, _stream(), dataclasses.replace(config, ema=0.0), **options)
    fit_stream(averaged, _stream(), config, **options)
    weights = [k for k, v in plain.state_dict().items() if v.is_floating_point() and "running" not in k]
    assert any(not torch.allclose(plain.state_dict()[k], averaged.state_dict()[k]) for k in weights)
    # interrupted after 3 steps and resumed: the same average
    fit_stream(_model(), _stream(), config, checkpoint=tmp_path / "ck.pt", stop_after=3, **options)
    again = _model()
    fit_stream(again, _stream(), config, checkpoint=tmp_path / "ck.pt", **options)
    for key, value in averaged.state_dict().items():
        assert torch.allclose(value, again.state_dict()[key]), key


def test_early_stopping_needs_evaluations():
    with pytest.raises(ValueError, match="early stopping"):
        fit_stream(_model(), _stream(), StreamConfig(steps=4, batch_size=8, patience=2), workers=0,
                   progress=False)


def test_stream_config_makes_the_stream_it_trains_on():
    config = StreamConfig(steps=6, batch_size=8, pool_batches=2, crystals=(("max_atoms", 24),))
    simulator = PowderSimulator(n_points=256, two_theta_range=(10, 60), fwhm=0.4, device="cpu")
    stream = config.stream(simulator, seed=3)
    assert (stream.kind, stream.batch_size, stream.pool_batches, stream.seed) == ("extinction_group", 8, 2, 3)
    assert stream.sample_options["max_atoms"] == 24 and stream.database is None
    assert config.patterns_seen == 48 and config.distinct_crystals == 16
    with pytest.raises(ValueError, match="batches of 64"):
        fit_stream(_model(), stream, StreamConfig(steps=6), progress=False)


def test_recalibrated_batchnorm_matches_the_batch_statistics():
    model = _model()
    x, _ = _stream().batch(0)
    recalibrate_batchnorm(model, iter([(x, None)]), n_batches=1)
    bn = model.stem[1]
    with torch.no_grad():
        h = model.stem[0](model.axis(x))
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2)), atol=1e-5)


def test_log_d_axis_puts_a_peak_at_its_d_spacing():
    from xtal_utils.models import LogDAxis

    lo, hi, n = 10.0, 80.0, 2001
    two_theta = np.linspace(lo, hi, n)
    peak = 40.0
    x = torch.as_tensor(np.exp(-0.5 * ((two_theta - peak) / 0.3) ** 2), dtype=torch.float32)[None, None]
    y = LogDAxis((lo, hi))(x)[0, 0].numpy()
    log_sin = np.linspace(np.log(np.sin(np.radians(lo / 2))), np.log(np.sin(np.radians(hi / 2))), n)
    assert abs(log_sin[np.argmax(y)] - np.log(np.sin(np.radians(peak / 2)))) < 2 * (log_sin[1] - log_sin[0])
    assert y.max() > 0.99


def test_intensity_scales_keep_zero_and_one():
    from xtal_utils.models import scale_intensity

    x = torch.tensor([[[0.0, 1e-3, 0.25, 1.0]]])
    assert torch.equal(scale_intensity(x, "linear"), x)
    assert torch.allclose(scale_intensity(x, "sqrt"), torch.tensor([[[0.0, 1e-3**0.5, 0.5, 1.0]]]))
    log = scale_intensity(x, "log")[0, 0]
    assert log[0] == 0 and abs(log[-1] - 1) < 1e-3 and 0.05 < log[1] < 0.15 * 10
    with pytest.raises(ValueError, match="intensity"):
        ResNet1d(99, intensity="cube")


def _database(n=12):
    """A small stored 'database': random crystals with their space groups (like AMCSD's training split)."""
    return crystals.sample_crystals(n, seed=(99, 1), balance="space_group")


def test_database_share_mixes_stored_structures_and_changes_nothing_when_off():
    simulator = PowderSimulator(n_points=256)
    plain = CrystalStream(simulator, "space_group", seed=4, batch_size=16)
    off = CrystalStream(simulator, "space_group", seed=4, batch_size=16, database=_database(), database_share=0.0)
    for a, b in zip(plain.batch(2), off.batch(2)):
        assert torch.equal(a, b)  # streams without the options are bit-identical to before
    database = _database()
    mixed = CrystalStream(simulator, "space_group", seed=4, batch_size=16, database=database, database_share=0.25)
    batch = mixed.crystals(2)
    assert len(batch) == 16
    stored = {tuple(np.round(row.ravel(), 6)) for row in database.lattice}
    from_database = [tuple(np.round(row.ravel(), 6)) in stored for row in batch.lattice]
    assert from_database == [False] * 12 + [True] * 4  # 25 % of the batch, after the random crystals
    x, y = mixed.batch(2)
    x2, y2 = mixed.batch(2)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # still a pure function of (seed, step)
    assert np.array_equal(y.numpy() + 1, batch.space_group)
    # the stored rows are simulated with their detected symmetry: the same patterns as without it
    rows = np.arange(12, 16)
    np.testing.assert_allclose(x[rows, 0].numpy(), simulator.simulate(batch[rows], symmetry=laue.no_symmetry(batch[rows])),
                               atol=1e-5)
    with pytest.raises(ValueError, match="database"):
        CrystalStream(simulator, "space_group", seed=4, database_share=0.5)


def test_impurity_adds_a_second_phase_to_some_patterns():
    simulator = PowderSimulator(n_points=256)
    plain = CrystalStream(simulator, "extinction_group", seed=6, batch_size=32)
    dirty = CrystalStream(simulator, "extinction_group", seed=6, batch_size=32, impurity=(0.5, (0.2, 0.4)))
    (x, y), (xd, yd) = plain.batch(1), dirty.batch(1)
    assert torch.equal(y, yd)  # the label stays the main phase's
    changed = ~torch.isclose(x, xd, atol=1e-6).all(dim=2)[:, 0]
    assert 6 <= int(changed.sum()) <= 26  # about half of 32
    assert torch.allclose(xd.amax(dim=2), torch.ones(32, 1))
    assert torch.equal(xd, dirty.batch(1)[0])
    with pytest.raises(ValueError, match="impurity"):
        CrystalStream(simulator, "extinction_group", seed=6, impurity=(1.5, (0.1, 0.2)))


def test_a_crystal_without_reflections_is_replaced_not_fatal():
    from xtal_utils.structures import StructureBatch

    database = _database(2)
    database.lattice[0] = np.eye(3) * 0.9  # every d-spacing below the 1.09 A that 2-theta <= 90 deg reaches
    simulator = PowderSimulator(n_points=256)
    with pytest.raises(ValueError, match="no reflection"):
        simulator.simulate(database[[0]])
    stream = CrystalStream(simulator, "space_group", seed=1, batch_size=8, database=StructureBatch.concatenate(
        [database[[0]]] * 3), database_share=0.5)
    x, y = stream.batch(0)
    assert torch.isfinite(x).all() and torch.allclose(x.amax(dim=2), torch.ones(8, 1))
    assert np.array_equal(y.numpy()[4:] + 1, [database.space_group[0]] * 4)  # same space group, a new crystal
    assert torch.equal(x, stream.batch(0)[0])


def test_a_pool_cycles_a_fixed_set_of_crystals_in_a_new_order_each_pass():
    simulator = PowderSimulator(n_points=256)
    pool = CrystalStream(simulator, "extinction_group", seed=5, batch_size=8, pool_batches=3)
    used = [pool.crystal_batch(step) for step in range(12)]
    for start in range(0, 12, 3):  # every pass uses each pool batch once
        assert sorted(used[start: start + 3]) == [0, 1, 2]
    assert len({tuple(used[s: s + 3]) for s in range(0, 12, 3)}) > 1  # and the order changes between passes
    # a pool batch is batch c of the endless stream with the same seed, whichever step draws it
    endless = CrystalStream(simulator, "extinction_group", seed=5, batch_size=8)
    for step in range(6):
        a, b = pool.crystals(step), endless.crystals(used[step])
        assert np.array_equal(a.lattice, b.lattice) and np.array_equal(a.space_group, b.space_group)
    x, y = pool.batch(0)
    step = next(s for s in range(3, 6) if used[s] == used[0])
    x2, y2 = pool.batch(step)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # clean patterns: the same crystals give the same batch
    assert all(endless.crystal_batch(s) == s for s in range(5))  # without a pool nothing changes
    with pytest.raises(ValueError, match="pool_batches"):
        CrystalStream(simulator, "extinction_group", seed=5, pool_batches=0)


def test_a_database_share_of_one_streams_only_the_database():
    simulator = PowderSimulator(n_points=256)
    database = _database()
    stream = CrystalStream(simulator, "space_group", seed=2, batch_size=16, database=database, database_share=1.0)
    batch = stream.crystals(0)
    stored = {tuple(np.round(row.ravel(), 6)) for row in database.lattice}
    assert all(tuple(np.round(row.ravel(), 6)) in stored for row in batch.lattice)
    x, y = stream.batch(0)
    assert x.shape == (16, 1, 256) and np.array_equal(y.numpy() + 1, batch.space_group)


def test_bf16_falls_back_to_float32_where_the_cpu_lacks_it(monkeypatch):
    import xtal_utils.train as train_module

    monkeypatch.setattr(train_module, "_cpu_flags", lambda: {"avx2", "fma"})
    assert not train_module.bf16_supported("cpu")
    assert train_module.autocast_device("auto", "cpu") is None and train_module.autocast_device("float32", "cpu") is None
    config = StreamConfig(steps=3, batch_size=8, lr=1e-2)
    plain = _model()
    fit_stream(plain, _stream(), config, workers=0, progress=False)
    asked = _model()
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        fit_stream(asked, _stream(), dataclasses.replace(config, precision="bf16"), workers=0, progress=False)
    for key, value in plain.state_dict().items():  # the fallback is float32 exactly
        assert torch.equal(value, asked.state_dict()[key]), key


def test_bf16_runs_on_a_cpu_that_has_it(monkeypatch):
    import xtal_utils.train as train_module

    monkeypatch.setattr(train_module, "_cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert train_module.autocast_device("bf16", "cpu") == "cpu"
    config = StreamConfig(steps=3, batch_size=8, lr=1e-2)
    plain, mixed = _model(), _model()
    fit_stream(plain, _stream(), config, workers=0, progress=False)
    fit_stream(mixed, _stream(), dataclasses.replace(config, precision="bf16"), workers=0, progress=False)
    differs = [not torch.equal(v, mixed.state_dict()[k]) for k, v in plain.state_dict().items()
               if v.is_floating_point()]
    assert any(differs)  # bfloat16 arithmetic, not float32
    with pytest.raises(ValueError, match="precision must be one of"):
        train_module.autocast_device("fp8", "cpu")


def _torchrun(*args, timeout=300):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_two_processes_under_torchrun_find_the_weights_of_one_on_the_whole_batch(tmp_path):
    """Each rank makes and trains on half of every batch (a pure function of seed, step, rank and world
    size); averaged gradients give one process's weights on the whole batch, through an interrupted and
    resumed run, with rank 0's checkpoint."""
    import _stream_ddp

    _torchrun("_stream_ddp.py", tmp_path / "ck.pt", tmp_path / "ddp.pt")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    single = _stream_ddp.train()
    width = single.encoder.layers[0].self_attn.embed_dim
    for key, value in single.state_dict().items():
        if key.endswith("self_attn.in_proj_bias"):
            # the key bias has no gradient (softmax ignores a shift shared by every key): only rounding noise,
            # which Adam scales up to full steps, so it is not compared
            value, other = torch.cat([value[:width], value[2 * width:]]), torch.cat([ddp[key][:width], ddp[key][2 * width:]])
        else:
            other = ddp[key]
        torch.testing.assert_close(other, value, rtol=1e-4, atol=1e-5, msg=key)
    x, _ = CrystalStream(PowderSimulator(n_points=256, fwhm=0.3), "extinction_group", seed=9, batch_size=8).batch(0)
    trained = _stream_ddp.model()
    trained.load_state_dict(ddp)
    with torch.no_grad():  # and the two models give the same outputs
        torch.testing.assert_close(trained.eval()(x), single.eval()(x), rtol=1e-4, atol=1e-4)


def test_a_rank_gets_its_slice_of_the_clean_batch():
    whole_x, whole_y = _stream().batch(5)
    halves = [_stream().batch(5, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([h[1] for h in halves]), whole_y)
    torch.testing.assert_close(torch.cat([h[0] for h in halves]), whole_x)
    with pytest.raises(ValueError, match="equal shares"):
        _stream().batch(5, rank=0, world_size=3)


def test_the_stream_command_trains_under_torchrun(tmp_path):
    out = _torchrun("-m", "xtal_utils.train", "--stream", "--steps", "2", "--batch-size", "8", "--n-points", "256",
                    "--workers", "0", "--out", tmp_path / "run.pt")
    assert "trained 2 steps of 8" in out.stdout
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 2
