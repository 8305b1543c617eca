"""The diffusers adapter: exact equivalence with diffusers' own sampling loops, the candidates of one step, the
refused schedulers, the image rewards, and a tiny Stable Diffusion pipeline built from configs end to end."""

import io
import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")

import svdd  # noqa: E402
from svdd.models.diffusers_adapter import DiffusersModel, StableDiffusionModel  # noqa: E402
from svdd.rewards.image import ClassifierLogProb, JPEGCompressibility  # noqa: E402


def tiny_unet(seed=0, channels=1, size=8):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval().requires_grad_(False)


SCHEDULERS = {
    "ddpm": lambda: diffusers.DDPMScheduler(num_train_timesteps=100),
    "ddim": lambda: diffusers.DDIMScheduler(num_train_timesteps=100),
    "euler-a": lambda: diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=100),
    "ddpm-v": lambda: diffusers.DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction"),
}


MEAN = svdd.reward(lambda x: x.flatten(1).mean(1), name="mean")  # any-range reward for random UNets


def diffusers_loop(unet, scheduler, steps, n, seed, eta=1.0):
    """diffusers' own sampling loop (DDPMPipeline / DDIMPipeline pattern)."""
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, unet.config.in_channels, 8, 8), generator=g)
    x = x * scheduler.init_noise_sigma
    kw = {"eta": eta} if isinstance(scheduler, diffusers.DDIMScheduler) else {}
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(out, t, x, generator=g, **kw).prev_sample
    return x


@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
@pytest.mark.parametrize("method", ["pretrained", "svdd"])
def test_m1_reproduces_the_diffusers_loop_exactly(kind, method):
    unet, sched = tiny_unet(), SCHEDULERS[kind]()
    ref = diffusers_loop(unet, sched, 6, 5, seed=3)
    model = DiffusersModel(unet, sched, num_steps=6)
    opts = {"M": 1} if method == "svdd" else {}
    res = svdd.sample(model, MEAN, method, num_samples=5, seed=3, **opts)
    assert torch.equal(res.samples, ref)


def test_candidates_come_from_one_batched_scheduler_call():
    unet, sched = tiny_unet(), SCHEDULERS["ddim"]()
    model = DiffusersModel(unet, sched, num_steps=5)
    g = torch.Generator().manual_seed(0)
    x = model.prior(3, g)
    pred = model.predict(x, 0)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    kids = model.step(x, pred, 0, g1, num_children=4)
    direct = model.scheduler.step(pred.repeat_interleave(4, 0), model.timesteps[0], x.repeat_interleave(4, 0),
                                  eta=1.0, generator=g2).prev_sample
    assert kids.shape == (12, 1, 8, 8) and torch.equal(kids, direct)
    assert not torch.equal(kids[0], kids[1])  # the children of one state differ
    # x̂0 matches the scheduler's own pred_original_sample
    out = model.scheduler.step(pred, model.timesteps[0], x, eta=1.0, generator=g2)
    assert torch.allclose(model.denoise(x, pred, 0), out.pred_original_sample, atol=1e-5)


def test_euler_ancestral_x0_and_state_follow_levels():
    unet, sched = tiny_unet(), SCHEDULERS["euler-a"]()
    model = DiffusersModel(unet, sched, num_steps=5)
    x = model.prior(2, torch.Generator().manual_seed(0))
    for i in (0, 3, 1):  # out of order: the scheduler's counter is set from the level, not from call counts
        pred = model.predict(x, i)
        model.scheduler._step_index = i
        out = model.scheduler.step(pred, model.timesteps[i], x, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(model.denoise(x, pred, i), out.pred_original_sample, atol=1e-5)
        assert torch.equal(model.step(x, pred, i, torch.Generator().manual_seed(1)), out.prev_sample)


def test_last_step_is_deterministic_and_svdd_m_gt_1_runs():
    model = DiffusersModel(tiny_unet(), SCHEDULERS["ddpm"](), num_steps=4)
    assert [model.deterministic_step(i) for i in range(4)] == [False, False, False, True]
    res = svdd.sample(model, MEAN, "svdd", M=3, num_samples=2, seed=0)
    assert res.samples.shape == (2, 1, 8, 8) and res.cost.network_evals == 2 * (1 + 3 * 3)  # 1 + (T − 1)·M per sample


@pytest.mark.parametrize("name, reason", [
    ("DDIMScheduler", "with eta=0.0 is deterministic"),
    ("EulerDiscreteScheduler", "is deterministic"),
    ("DPMSolverMultistepScheduler", "is a multistep / stateful scheduler"),
    ("UniPCMultistepScheduler", "is a multistep / stateful scheduler"),
    ("PNDMScheduler", "is a multistep / stateful scheduler"),
])
def test_unsupported_schedulers_are_named(name, reason):
    """The error opens with the refused scheduler's name and gives its own reason (whatever eta, except for DDIM,
    which is refused only when deterministic)."""
    for eta in (0.0,) if name == "DDIMScheduler" else (0.0, 1.0):
        with pytest.raises(ValueError) as e:
            DiffusersModel(tiny_unet(), getattr(diffusers, name)(num_train_timesteps=100), num_steps=4, eta=eta)
        msg = str(e.value)
        assert msg.startswith(f"{name} ") and reason in msg, msg


def test_save_load_round_trip(tmp_path):
    unet, sched = tiny_unet(), SCHEDULERS["ddpm"]()
    unet.save_pretrained(tmp_path / "unet", safe_serialization=True)
    sched.save_pretrained(tmp_path / "scheduler")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").exists()
    a = DiffusersModel(unet, diffusers.DDIMScheduler.from_config(sched.config), num_steps=5)
    b = DiffusersModel.from_pretrained(str(tmp_path), num_steps=5, scheduler="ddim")
    ra = svdd.sample(a, MEAN, "svdd", M=2, num_samples=3, seed=1)
    rb = svdd.sample(b, MEAN, "svdd", M=2, num_samples=3, seed=1)
    assert torch.equal(ra.samples, rb.samples)


# image rewards ----------------------------------------------------------------------------------------------------
def test_jpeg_reward_matches_pil_directly():
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    x = torch.rand((3, 3, 16, 16), generator=g) * 2 - 1
    x[1] = 0.2  # a flat image compresses far better
    r = JPEGCompressibility(quality=95)(x)
    for k in range(3):
        arr = ((x[k].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
        assert r[k] == -buf.tell() / 1000
    assert r[1] > r[0] and r[1] > r[2]
    grey = JPEGCompressibility()(x[:, :1])
    assert grey.shape == (3,) and bool((grey < 0).all())


@pytest.mark.parametrize("bad, err, match", [
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), TypeError, "uint8"),
    (torch.zeros(2, 8, 8), ValueError, r"\(2, 8, 8\)"),
    (torch.zeros(2, 2, 8, 8), ValueError, r"C = 1 or 3"),
    (torch.full((2, 1, 8, 8), 200.0), ValueError, "200"),
])
def test_image_rewards_reject_wrong_shape_or_range(bad, err, match):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    for r in (JPEGCompressibility(), ClassifierLogProb(net, 3)):
        with pytest.raises(err, match=match):
            r(bad)


def test_classifier_reward_is_log_softmax_and_checks_the_class():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    net.config = {"classes": 10}
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    r = ClassifierLogProb(net, 7)
    assert torch.allclose(r(x), torch.log_softmax(net(x), 1)[:, 7]) and r.differentiable
    assert torch.allclose(torch.logsumexp(torch.stack([ClassifierLogProb(net, c)(x) for c in range(10)]), 0),
                          torch.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match="12"):
        ClassifierLogProb(net, 12)


# Stable Diffusion -------------------------------------------------------------------------------------------------
def tiny_sd_pipeline(tmp_path):
    """A randomly initialised Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, tokenizer) from configs."""
    transformers = pytest.importorskip("transformers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=4)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, vocab_size=300,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1))
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 2, "!": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)
    sched = diffusers.DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.00085,
                                    beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    return diffusers.StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched,
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def test_tiny_stable_diffusion_end_to_end(tmp_path):
    pipe = tiny_sd_pipeline(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    model = StableDiffusionModel(pipe, "a cat", num_steps=4, guidance_scale=7.5, eta=1.0)
    assert model.sample_shape == (4, 8, 8)
    # M = 1: the pipeline's own loop (classifier-free guidance, DDIM eta = 1) exactly
    ref = pipe("a cat", num_inference_steps=4, guidance_scale=7.5, eta=1.0, output_type="latent",
               generator=torch.Generator().manual_seed(5), height=16, width=16).images
    res = svdd.sample(model, model.image_reward(JPEGCompressibility()), "pretrained", num_samples=1, seed=5)
    assert torch.allclose(res.samples, ref, atol=1e-6)
    # SVDD-PM: x̂0 decoded by the VAE before the JPEG reward; the kept candidate is the best of its M
    reward = model.image_reward(JPEGCompressibility())
    out = svdd.sample(model, reward, "svdd", M=4, num_samples=2, seed=0)
    assert out.samples.shape == (2, 4, 8, 8) and torch.isfinite(out.rewards).all()
    img = model.decode(out.samples)
    assert img.shape == (2, 3, 16, 16)
    assert torch.equal(out.rewards, JPEGCompressibility()(img).double())
    assert torch.equal(out.diagnostics.kept_values[-1], out.rewards)  # the last step's values ARE the final rewards
    # SD's DDIM (set_alpha_to_one=False) adds noise even at the last step: M candidates at all 4 steps, and the
    # last step's values are the final rewards (not computed again)
    assert not model.deterministic_step(3) and out.cost.reward_evals == 2 * 4 * 4


def test_tiny_stable_diffusion_save_load(tmp_path):
    pipe = tiny_sd_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "sd", safe_serialization=True)
    a = StableDiffusionModel(pipe, "a dog", num_steps=3)
    b = StableDiffusionModel.from_pretrained(str(tmp_path / "sd"), "a dog", num_steps=3)
    ra = svdd.sample(a, a.image_reward(JPEGCompressibility()), "svdd", M=2, num_samples=1, seed=2)
    rb = svdd.sample(b, b.image_reward(JPEGCompressibility()), "svdd", M=2, num_samples=1, seed=2)
    assert torch.allclose(ra.samples, rb.samples, atol=1e-6)
    with pytest.raises(ValueError, match="prompt"):
        StableDiffusionModel(pipe, "", num_steps=3)
