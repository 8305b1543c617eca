"""`svdd.testing.check_model_contract` passes the built-in models and names what a broken model gets wrong."""

import pytest
import torch

import svdd
from conftest import TinyDenoiser, TinyMLP
from svdd.tasks.toy import build_toy_gmm, build_toy_motif
from svdd.testing import check_model_contract


def gauss(**kw):
    return svdd.GaussianDiffusion(TinyMLP(), (3,), **{"num_steps": 12, "eta": 1.0, **kw})


def masked():
    return svdd.MaskedDiffusion(TinyDenoiser(), seq_len=10, vocab_size=4, num_steps=16)


@pytest.mark.parametrize("build", [
    gauss, lambda: gauss(eta=0.0), lambda: gauss(prediction="v_prediction", schedule="cosine", num_steps=8), masked,
    lambda: build_toy_motif(num_steps=8)[0], lambda: build_toy_gmm(num_steps=20)[0]],
    ids=["gauss", "ddim-eta0", "gauss-v-cosine", "masked", "toy-motif", "toy-gmm"])
def test_built_in_models_keep_the_contract(build):
    check_model_contract(build())


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "DDPMScheduler", "EulerAncestralDiscreteScheduler"])
def test_diffusers_model_keeps_the_contract(scheduler):
    diffusers = pytest.importorskip("diffusers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval().requires_grad_(False)
    sched = getattr(diffusers, scheduler)(num_train_timesteps=100)
    check_model_contract(svdd.DiffusersModel(unet, sched, num_steps=4), n=3, num_children=2)


class UserDDPM(svdd.DiffusionModel):
    """A model written from scratch along the README's skeleton: DDPM ancestral steps on its own schedule."""

    def __init__(self, net, num_steps=10):
        self.net, self.num_steps = net, num_steps
        self.abar = torch.cumprod(1 - torch.linspace(1e-3, 0.2, num_steps), 0).flip(0)  # level 0 = most noise
        self.abar = torch.cat([self.abar, torch.ones(1)])

    def prior(self, n, generator):
        return torch.randn(n, 3, generator=generator)

    def predict(self, x, i):
        return self.net(x, torch.full((x.shape[0],), i))

    def x0(self, x, pred, i):
        return (x - (1 - self.abar[i]).sqrt() * pred) / self.abar[i].sqrt()

    def step(self, x, pred, i, generator, num_children=1):
        a_t, a_s = self.abar[i], self.abar[i + 1]
        std = ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
        mean = a_s.sqrt() * self.x0(x, pred, i) + (1 - a_s - std**2).clamp_min(0).sqrt() * pred
        mean = mean.repeat_interleave(num_children, dim=0)
        return mean + std * torch.randn(mean.shape, generator=generator)

    def denoise(self, x, pred, i):
        return self.x0(x, pred, i)

    def deterministic_step(self, i):
        return i == self.num_steps - 1


def test_a_user_model_keeps_the_contract():
    check_model_contract(UserDDPM(TinyMLP()))


# deliberately broken models -------------------------------------------------------------------------------------------
class ChildMajor(svdd.GaussianDiffusion):
    """Children in child-major order (repeat instead of repeat_interleave)."""

    def step(self, x, pred, i, generator, num_children=1):
        out = super().step(x, pred, i, generator, num_children)
        n = x.shape[0]
        return out.view(n, num_children, *out.shape[1:]).transpose(0, 1).reshape(out.shape)


class NoisyPredict(svdd.GaussianDiffusion):
    def predict(self, x, i):
        return super().predict(x, i) + 1e-3 * torch.randn(x.shape)


class BatchMean(svdd.GaussianDiffusion):
    def predict(self, x, i):
        out = super().predict(x, i)
        return out - out.mean(0, keepdim=True)


class OneChild(svdd.GaussianDiffusion):
    def step(self, x, pred, i, generator, num_children=1):
        return super().step(x, pred, i, generator, 1)


class AlwaysRandom(svdd.GaussianDiffusion):
    def deterministic_step(self, i):
        return False  # wrong at the last step, which lands on x̂0


class Overwrites(svdd.MaskedDiffusion):
    """Changes tokens that were already unmasked."""

    def step(self, x, pred, i, generator, num_children=1):
        out = super().step(x, pred, i, generator, num_children)
        return torch.where(out == self.mask_index, out, (out + 1) % self.vocab_size)


def _g(cls):
    return lambda: cls(TinyMLP(), (3,), num_steps=6, eta=1.0)


@pytest.mark.parametrize("build,message", [
    (_g(ChildMajor), "sample-major"),
    (_g(NoisyPredict), r"predict\(x, 0\) is not deterministic"),
    (_g(BatchMean), "must not depend on the other rows"),
    (_g(OneChild), r"must return shape \(12, 3\), got \(4, 3\)"),
    (_g(AlwaysRandom), r"deterministic_step\(5\) is False, but step with two different generator seeds gave identical"),
    (lambda: Overwrites(TinyDenoiser(), seq_len=10, vocab_size=4, num_steps=8), "unmasked tokens"),
], ids=["child-major", "noisy-predict", "batch-dependent", "one-child", "deterministic-step", "overwrites-tokens"])
def test_broken_models_fail_with_a_clear_message(build, message):
    with pytest.raises(AssertionError, match=message) as err:
        check_model_contract(build())
    assert "breaks the svdd model protocol" in str(err.value)


def test_missing_methods_and_bad_arguments():
    class Half:
        num_steps = 3

        def prior(self, n, generator):
            return torch.zeros(n, 2)

    with pytest.raises(AssertionError, match="missing predict, step, denoise"):
        check_model_contract(Half())
    with pytest.raises(ValueError, match="n must be an int >= 2, got 1"):
        check_model_contract(gauss(), n=1)
    with pytest.raises(ValueError, match="num_children must be an int >= 2, got 1"):
        check_model_contract(gauss(), num_children=1)
