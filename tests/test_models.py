"""Models, the training loop, checkpoints and resumption, on the CPU."""

import numpy as np
import pytest
import torch

from xtal_utils.datasets import PatternSource
from xtal_utils.models import ResNet1d, Transformer1d, add_sin2theta_channel, build_model, model_spec
from xtal_utils.train import TrainConfig, fit, load_checkpoint, load_model, predict

SMALL = {
    ResNet1d: dict(widths=(8, 16), blocks=(1, 1)),
    Transformer1d: dict(d_model=32, depth=1, n_heads=2, patch_size=64, dropout=0.0),
}


@pytest.mark.parametrize("cls", [ResNet1d, Transformer1d])
@pytest.mark.parametrize("n_classes", [230, 99])
@pytest.mark.parametrize("n_points", [1024, 4096, 8192, 3000])
def test_output_shape(cls, n_classes, n_points):
    model = cls(n_classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, n_points)).shape == (2, n_classes)


@pytest.mark.parametrize("cls", [ResNet1d, Transformer1d])
def test_two_input_channels(cls):
    intensity = torch.rand(3, 2048)
    x = add_sin2theta_channel(intensity, torch.linspace(5, 90, 2048))
    assert x.shape == (3, 2, 2048)
    assert cls(99, in_channels=2).eval()(x).shape == (3, 99)


def test_group_norm_resnet_does_not_depend_on_the_batch():
    model = ResNet1d(99, norm="group", widths=(8, 16), blocks=(1, 1)).train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.rand(4, 1, 1024)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))  # in training mode too
    assert build_model(model_spec(model)).config.norm == "group"
    with pytest.raises(ValueError, match="norm"):
        ResNet1d(99, norm="layer")


def _toy_patterns(n_per_class: int, space_groups, n_points=512, seed=0):
    """Distinct synthetic 'patterns': one Gaussian peak per class at a class-specific position."""
    rng = np.random.default_rng(seed)
    grid = np.arange(n_points)
    labels = np.repeat(space_groups, n_per_class)
    centres = 40 + (np.searchsorted(np.unique(space_groups), labels) * 37) % (n_points - 80)
    patterns = np.exp(-0.5 * ((grid[None] - centres[:, None] - rng.normal(0, 2, (len(labels), 1))) / 4) ** 2)
    return patterns.astype(np.float32), labels


@pytest.mark.parametrize("cls", [ResNet1d, Transformer1d])
def test_overfits_one_batch(cls):
    torch.manual_seed(0)
    space_groups = [14, 2, 62, 225, 194, 15, 19, 139]  # eight different extinction groups
    x, sg = _toy_patterns(4, space_groups)
    source = PatternSource(x, sg, "extinction_group")
    model = cls(99, **SMALL[cls])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xb, yb = next(source.batches(len(source)))
    for _ in range(150):
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    model.eval()
    assert (model(xb).argmax(1) == yb).float().mean().item() == 1.0


def test_checkpoint_round_trip(tmp_path):
    x, sg = _toy_patterns(4, [14, 2, 62, 225])
    train = PatternSource(x, sg, "space_group")
    model = ResNet1d(230, **SMALL[ResNet1d])
    fit(model, train, train, TrainConfig(epochs=1, batch_size=8, progress=False), checkpoint=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    assert state["epoch"] == 1 and len(state["history"]) == 1
    again = load_model(tmp_path / "c.pt", device="cpu")
    np.testing.assert_allclose(predict(again, train), predict(model, train), rtol=1e-5, atol=1e-5)
    assert model_spec(build_model(model_spec(model))) == model_spec(model)


@pytest.mark.parametrize("cls", [ResNet1d, Transformer1d])
def test_resume_equals_uninterrupted(tmp_path, cls):
    x, sg = _toy_patterns(6, [14, 2, 62, 225, 194])
    train = PatternSource(x, sg, "extinction_group")
    config = TrainConfig(epochs=4, batch_size=8, deterministic=True, progress=False, seed=3)

    torch.manual_seed(0)
    straight = cls(99, **SMALL[cls])
    fit(straight, train, train, config, checkpoint=tmp_path / "straight.pt")

    torch.manual_seed(0)
    first = cls(99, **SMALL[cls])
    fit(first, train, train, config, checkpoint=tmp_path / "resumed.pt", stop_after_epochs=2)
    assert load_checkpoint(tmp_path / "resumed.pt")["epoch"] == 2
    torch.manual_seed(123)  # a fresh process would start from other weights: the checkpoint must win
    second = cls(99, **SMALL[cls])
    history = fit(second, train, train, config, checkpoint=tmp_path / "resumed.pt")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for (name, a), b in zip(straight.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_early_stopping_restores_best(tmp_path):
    x, sg = _toy_patterns(4, [14, 2])
    train = PatternSource(x, sg, "extinction_group")
    noise = PatternSource(np.random.default_rng(1).random(x.shape, dtype=np.float32), sg[::-1], "extinction_group")
    history = fit(ResNet1d(99, **SMALL[ResNet1d]), train, noise,
                  TrainConfig(epochs=30, batch_size=4, patience=2, progress=False))
    assert len(history) < 30


def test_bad_patterns_rejected():
    x, sg = _toy_patterns(2, [14])
    x[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PatternSource(x, sg, "space_group")
    with pytest.raises(ValueError, match="labels"):
        PatternSource(x[:1], sg, "space_group")


@pytest.mark.slow
def test_distributed_data_parallel_with_torchrun(tmp_path):
    """Two processes on the CPU (gloo backend), launched by torch's own torchrun."""
    import subprocess
    import sys

    x, sg = _toy_patterns(8, [14, 2, 62, 225])
    split = np.array(["train", "val"] * (len(sg) // 2))
    np.savez(tmp_path / "p.npz", patterns=x, space_group=sg, split=split)
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "xtal_utils.train", str(tmp_path / "p.npz"), "--epochs", "2", "--batch-size", "4",
         "--out", str(tmp_path / "ddp.pt")],
        capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state = load_checkpoint(tmp_path / "ddp.pt")
    assert state["epoch"] == 2
    # each rank saw half of the 16 training patterns per epoch; throughput counts both ranks
    assert "trained 2 epochs" in out.stdout


def test_train_cached_reuses_the_model(tmp_path, monkeypatch):
    import xtal_utils.config as config_module
    from xtal_utils.train import train_cached

    monkeypatch.setattr(config_module, "CACHE", tmp_path)
    x, sg = _toy_patterns(4, [14, 2])
    train = PatternSource(x, sg, "extinction_group")
    config = TrainConfig(epochs=2, batch_size=4, progress=False)
    torch.manual_seed(0)
    first, history = train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 1})
    torch.manual_seed(1)
    again, history_again = train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 1})
    assert history_again == history
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    other, _ = train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 2})
    assert len(list(tmp_path.glob("models/*/done.json"))) == 2


def test_a_shipped_model_seeds_the_cache_instead_of_training(tmp_path, monkeypatch):
    """config.ship_cached writes a finished entry to models/study/; a checkout without that cache entry
    then reads the model from there (the same weights and history, no training), unless XTAL_RETRAIN=1."""
    import xtal_utils.config as config_module
    import xtal_utils.train as train_module
    from xtal_utils.train import train_cached

    monkeypatch.setattr(config_module, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(config_module, "STUDY_MODELS", tmp_path / "study")
    monkeypatch.delenv("XTAL_RETRAIN", raising=False)
    x, sg = _toy_patterns(4, [14, 2])
    train = PatternSource(x, sg, "extinction_group")
    config = TrainConfig(epochs=2, batch_size=4, progress=False)
    torch.manual_seed(0)
    first, history = train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 1})
    (entry,) = (tmp_path / "cache" / "models").iterdir()
    shipped = config_module.ship_cached("models", entry.name)
    assert "optimizer" not in load_checkpoint(shipped / "checkpoint.pt")  # weights and history only
    for file in entry.iterdir():  # a fresh checkout: no cache
        file.unlink()
    entry.rmdir()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although models/study ships this model")

    monkeypatch.setattr(train_module, "fit", no_training)
    seeded, seeded_history = train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 1})
    assert seeded_history == history
    for a, b in zip(first.state_dict().values(), seeded.state_dict().values()):
        assert torch.equal(a, b)
    # XTAL_RETRAIN=1 ignores what models/study ships: the empty cache trains
    monkeypatch.setattr(config_module, "CACHE", tmp_path / "other-cache")
    monkeypatch.setenv("XTAL_RETRAIN", "1")
    with pytest.raises(AssertionError, match="trained although"):
        train_cached(ResNet1d(99, **SMALL[ResNet1d]), train, train, config, data={"toy": 1})


def test_ship_cached_refuses_an_unfinished_entry(tmp_path, monkeypatch):
    import xtal_utils.config as config_module

    monkeypatch.setattr(config_module, "CACHE", tmp_path)
    (tmp_path / "models" / "abc").mkdir(parents=True)
    (tmp_path / "models" / "abc" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no finished model"):
        config_module.ship_cached("models", "abc")


def test_train_and_score_does_not_depend_on_what_ran_before(tmp_path, monkeypatch):
    """The initial weights come from the run's seed, not from the global generator's state (a notebook's
    first model once differed between a run that simulated its patterns and one that read them)."""
    import xtal_utils.config as config_module
    from xtal_utils.experiments import train_and_score

    x, sg = _toy_patterns(4, [14, 2])
    train = PatternSource(x, sg, "extinction_group")
    config = TrainConfig(epochs=1, batch_size=4, progress=False, seed=5)
    weights = []
    for i, before in enumerate((0, 123)):
        monkeypatch.setattr(config_module, "CACHE", tmp_path / str(i))  # no cache shared between the two
        torch.manual_seed(before)
        torch.rand(10)
        trained = train_and_score(train, train, {}, kind="extinction_group", data_key={"toy": 1}, config=config,
                                  model_options=SMALL[ResNet1d])
        weights.append(trained.model.state_dict())
    for a, b in zip(weights[0].values(), weights[1].values()):
        assert torch.equal(a, b)


def test_simulated_source_draws_new_augmentations_each_epoch():
    from xtal_utils.datasets import SimulatedSource
    from xtal_utils.diffraction import Augmentation, PowderSimulator
    from xtal_utils.structures import StructureBatch
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5],
                      [.5, .5, .5], [0, 0, .5], [0, .5, 0], [.5, 0, 0]])
    batch = StructureBatch.from_structures([nacl, nacl], space_groups=[225, 225])
    simulator = PowderSimulator(n_points=1024)
    augmentation = Augmentation(zero_shift=0.1, poisson_counts=(1e3, 1e4))
    source = SimulatedSource(batch, "extinction_group",
                             lambda b, g: simulator.simulate(b, augmentation=augmentation, generator=g, as_tensor=True))
    x0, y0 = next(source.batches(2, epoch=0, seed=1))
    x0_again, _ = next(source.batches(2, epoch=0, seed=1))
    x1, _ = next(source.batches(2, epoch=1, seed=1))
    assert x0.shape == (2, 1, 1024) and y0.tolist() == [93, 93]  # Fm-3m is extinction group 94
    assert torch.equal(x0, x0_again)  # same (seed, epoch): same patterns, as a resume needs
    assert not torch.equal(x0, x1)  # a new epoch: new augmentations
