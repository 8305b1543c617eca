"""A seed gives the same samples whatever ``max_batch`` on every shipped task (CPU): chunking, streaming, tuned chunk
sizes and de-duplication change no random draw, and a last-bit difference in a reward computed in another batch
cannot break a tie between candidates. One documented exception: a convolutional network (the Fashion-MNIST UNet) on
CPU rounds chunks of a few rows differently in the last bits, so at max_batch 3 its samples agree to about 1e-6
(exactly from 16 rows on); the JPEG-size reward of an image that moved by 1e-6 may move by a few bytes, where a pixel
sits at a rounding boundary of its uint8 level (seen on an AVX2 CPU: 0.003 kB at the first step)."""

import pytest
import torch

import svdd
from svdd.tasks import TASKS

# task -> (task options, samples, M): a few steps of the shipped networks and rewards
SETTINGS = {
    "toy-motif": ({}, 64, 10),
    "toy-gmm": ({"num_steps": 40}, 64, 10),
    "dna-enhancer": ({"num_steps": 8}, 16, 4),
    "fashion-compress": ({"num_steps": 3}, 4, 3),
    "fashion-class": ({"num_steps": 3}, 4, 3),
    "molecule-qed": ({"num_steps": 6}, 16, 4),
    "molecule-sa": ({"num_steps": 6}, 16, 4),
    "molecule-docking-parp1": ({"num_steps": 4}, 2, 2),
    "rna-utr-mrl": ({"num_steps": 8}, 16, 4),
}
SLOW = {"molecule-docking-parp1"}  # seconds per docking call
# chunks of a few rows round differently (see the module docstring): how close the kept values must then be
ROUNDS = {"fashion-compress": {"rtol": 0.0, "atol": 0.01},  # kB: a few bytes of JPEG
          "fashion-class": {"rtol": 1e-4, "atol": 1e-8}}


def test_every_shipped_task_is_covered():
    assert set(SETTINGS) == set(TASKS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SETTINGS])
def test_max_batch_does_not_change_the_samples(name, tmp_path):
    options, n, m = SETTINGS[name]
    if name == "molecule-docking-parp1":
        options = {**options, "cache": str(tmp_path / "docking.sqlite")}
    spec = TASKS[name].make(**options)
    a, b, c = (svdd.sample(spec.model, spec.reward, "svdd", M=m, num_samples=n, seed=0, max_batch=mb)
               for mb in (3, 16, None))
    assert torch.equal(b.samples, c.samples), f"{name}: max_batch 16 and the default give different samples"
    assert torch.equal(b.rewards, c.rewards)
    if name in ROUNDS:
        assert (a.samples - c.samples).abs().max() < 1e-4
        assert all(torch.allclose(u, v, **ROUNDS[name]) for u, v in zip(a.diagnostics.kept_values, c.diagnostics.kept_values))
    else:
        assert torch.equal(a.samples, c.samples), f"{name}: max_batch 3 and the default give different samples"
        assert torch.allclose(a.rewards, c.rewards, rtol=1e-5, atol=1e-6, equal_nan=True)
