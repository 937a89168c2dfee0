"""Run by tests/test_stream.py under torchrun: a few stream steps of a model whose norm does not depend on
the batch, each rank on its share; rank 0 saves the weights."""

import sys

import torch

from xtal_utils.datasets import CrystalStream
from xtal_utils.diffraction import PowderSimulator
from xtal_utils.models import Transformer1d
from xtal_utils.train import StreamConfig, fit_stream


def model():
    torch.manual_seed(0)
    return Transformer1d(99, patch_size=32, d_model=16, depth=1, n_heads=2, dropout=0.0)


def train(out=None, checkpoint=None, stop_after=None) -> Transformer1d:
    net = model()
    stream = CrystalStream(PowderSimulator(n_points=256, fwhm=0.3), "extinction_group", seed=3, batch_size=8)
    fit_stream(net, stream, StreamConfig(steps=4, batch_size=8, lr=1e-2, model="Transformer1d"), workers=0,
               progress=False, checkpoint=checkpoint, checkpoint_every=2, stop_after=stop_after)
    if out:
        torch.save(net.state_dict(), out)
    return net


if __name__ == "__main__":
    torch.distributed.init_process_group("gloo")
    checkpoint, out = sys.argv[1], sys.argv[2]
    train(checkpoint=checkpoint, stop_after=3)  # interrupted after 3 steps ...
    net = train(checkpoint=checkpoint)  # ... and resumed from rank 0's checkpoint
    if torch.distributed.get_rank() == 0:
        torch.save(net.state_dict(), out)
    torch.distributed.destroy_process_group()
