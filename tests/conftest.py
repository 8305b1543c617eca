import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import svdd  # noqa: E402
from svdd.tasks.toy import build_toy_gmm, build_toy_motif  # noqa: E402


class TinyMLP(torch.nn.Module):
    """A small epsilon network with a time embedding, built in code (weights fixed by the seed)."""

    def __init__(self, dim=3, hidden=32, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float().unsqueeze(-1) / 1000], dim=-1))


class TinyDenoiser(torch.nn.Module):
    """A small masked-diffusion denoiser: embedding + 1-D convolution."""

    def __init__(self, vocab=4, hidden=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(vocab + 1, hidden)
        self.conv = torch.nn.Conv1d(hidden, hidden, 3, padding=1)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x, t):
        h = self.emb(x).transpose(1, 2)
        h = torch.relu(self.conv(h)).transpose(1, 2) + t.view(-1, 1, 1)
        return self.out(h)


@pytest.fixture
def children():
    """Child processes a test starts: killed at its end whatever happened (an ignored signal must not leave a run
    going)."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_until(p, done, seconds=120.0):
    """Poll until ``done()`` or the child ``p`` ended or ``seconds`` passed."""
    import time
    deadline = time.time() + seconds
    while time.time() < deadline and p.poll() is None and not done():
        time.sleep(0.1)


@pytest.fixture(params=["checks-at-call", "checks-per-step"])
def check_timing(request, monkeypatch):
    """Both ways the engine checks network, value-net and reward outputs: at each call (CPU), and queued on the
    device and read once per step (``Engine.few_syncs``, a GPU's way, forced here on CPU)."""
    if request.param == "checks-per-step":
        monkeypatch.setattr(svdd.engine.Engine, "FEW_SYNCS_DEVICES", ("cuda", "cpu"))
    return request.param


@pytest.fixture
def gauss_model():
    return svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=12, eta=1.0)


@pytest.fixture
def masked_model():
    return svdd.MaskedDiffusion(TinyDenoiser(), seq_len=10, vocab_size=4, num_steps=16)


@pytest.fixture
def motif():
    return build_toy_motif(num_steps=16)


@pytest.fixture
def gmm():
    return build_toy_gmm(num_steps=40)


def gauss_reward(x):
    return -((x - 1.0) ** 2).sum(dim=1)


def token_reward(x):
    return (x == 2).float().sum(dim=1) + 0.1 * (x == 1).float().sum(dim=1)
