"""Model and task configs: enough to reproduce a run, JSON-able, and a weight hash that follows the weights."""

import copy
import json

import pytest
import torch

import svdd
from conftest import TinyDenoiser, TinyMLP
from svdd.io import tensor_hash, weights_hash
from svdd.tasks import get_task

GAUSS_KEYS = {"class", "num_steps", "sample_shape", "prediction", "schedule", "alphas_cumprod_sha256",
              "num_train_steps", "beta_start", "beta_end", "timesteps", "eta", "clip_denoised", "network",
              "network_weights"}
MASKED_KEYS = {"class", "num_steps", "seq_len", "vocab_size", "eps", "network", "network_weights"}
DIFFUSERS_KEYS = {"class", "num_steps", "scheduler", "eta", "timesteps", "sample_shape", "unet", "unet_weights"}


def _bump(module):
    """Change one weight of a module in place."""
    with torch.no_grad():
        next(module.parameters()).view(-1)[0] += 1e-3


def test_weights_hash_follows_every_weight():
    net = TinyMLP()
    h = weights_hash(net)
    assert isinstance(h, str) and len(h) == 16 and int(h, 16) >= 0
    assert weights_hash(copy.deepcopy(net)) == h == weights_hash(TinyMLP())  # same weights, same hash
    _bump(net)
    assert weights_hash(net) != h
    assert weights_hash(TinyMLP(seed=1)) != h
    assert weights_hash(lambda x, t: x) is None and weights_hash(None) is None
    assert weights_hash(torch.nn.ReLU()) is None  # no state to hash
    z = torch.zeros(3)
    assert tensor_hash(z) != tensor_hash(z.double()) != tensor_hash(z.view(1, 3)) != tensor_hash(z)


def test_default_config_of_a_user_model():
    class Mine(svdd.DiffusionModel):
        num_steps = 7
        prior = predict = step = denoise = None

    assert Mine().config() == {"class": "Mine", "num_steps": 7}


def test_gaussian_config():
    net = TinyMLP()
    model = svdd.GaussianDiffusion(net, (3,), num_steps=12, eta=0.5, clip_denoised=2.0)
    cfg = model.config()
    assert GAUSS_KEYS <= set(cfg)
    assert cfg["schedule"] == "linear" and (cfg["beta_start"], cfg["beta_end"]) == (1e-4, 0.02)
    assert cfg["timesteps"] == model.timesteps and cfg["num_steps"] == 12 and cfg["eta"] == 0.5
    assert cfg["clip_denoised"] == 2.0 and cfg["network"] == "TinyMLP" and cfg["network_weights"] == weights_hash(net)
    json.dumps(cfg)
    _bump(net)
    assert model.config()["network_weights"] != cfg["network_weights"]
    # a custom schedule is named 'custom' and identified by its hash; long timestep lists are summarised
    abar = svdd.models.make_alphas_cumprod("cosine", 1000)
    custom = svdd.GaussianDiffusion(lambda x, t: x, (3,), schedule=abar).config()
    assert custom["schedule"] == "custom" and custom["beta_start"] is None and custom["network_weights"] is None
    assert custom["alphas_cumprod_sha256"] == svdd.GaussianDiffusion(lambda x, t: x, (3,), schedule="cosine").config()[
        "alphas_cumprod_sha256"] != cfg["alphas_cumprod_sha256"]
    assert {k: custom["timesteps"][k] for k in ("first", "last", "count")} == {"first": 999, "last": 0, "count": 1000}


def test_masked_config():
    net = TinyDenoiser()
    cfg = svdd.MaskedDiffusion(net, seq_len=10, vocab_size=4, num_steps=16, eps=1e-4).config()
    assert MASKED_KEYS <= set(cfg)
    assert (cfg["seq_len"], cfg["vocab_size"], cfg["num_steps"], cfg["eps"]) == (10, 4, 16, 1e-4)
    assert cfg["network_weights"] == weights_hash(net)
    json.dumps(cfg)
    _bump(net)
    assert weights_hash(net) != cfg["network_weights"]


def test_diffusers_and_stable_diffusion_config(tmp_path):
    diffusers = pytest.importorskip("diffusers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")
    from test_diffusers import tiny_sd_pipeline, tiny_unet
    unet = tiny_unet()
    model = svdd.DiffusersModel(unet, diffusers.DDIMScheduler(num_train_timesteps=100), num_steps=5, eta=0.8)
    cfg = model.config()
    assert DIFFUSERS_KEYS <= set(cfg)
    assert cfg["scheduler"]["class"] == "DDIMScheduler" and cfg["scheduler"]["num_train_timesteps"] == 100
    assert cfg["scheduler"]["prediction_type"] == "epsilon" and cfg["eta"] == 0.8 and cfg["num_steps"] == 5
    assert cfg["timesteps"] == model.timesteps.tolist() and cfg["unet_weights"] == weights_hash(unet)
    json.dumps(cfg)
    _bump(unet)
    assert model.config()["unet_weights"] != cfg["unet_weights"]

    pipe = tiny_sd_pipeline(tmp_path)
    sd = svdd.StableDiffusionModel(pipe, "a cat", num_steps=3, guidance_scale=5.0, negative_prompt="blurry")
    cfg = sd.config()
    assert DIFFUSERS_KEYS <= set(cfg)
    assert (cfg["prompt"], cfg["negative_prompt"], cfg["guidance_scale"]) == ("a cat", "blurry", 5.0)
    assert cfg["vae_weights"] and cfg["text_encoder_weights"] and cfg["conditioning_sha256"]
    other = svdd.StableDiffusionModel(pipe, "a dog", num_steps=3, guidance_scale=5.0).config()
    assert other["conditioning_sha256"] != cfg["conditioning_sha256"] and other["unet_weights"] == cfg["unet_weights"]
    json.dumps(cfg)


def test_task_configs_name_task_options_and_weights():
    cfg = get_task("toy-motif").make().config
    assert cfg["task"] == "toy-motif" and cfg["options"] == {} and cfg["reward"] == "tata-pwm"
    spec = get_task("dna-enhancer").make()  # the weights ship with the package
    cfg = spec.config
    assert cfg["task"] == "dna-enhancer" and cfg["options"] == {"num_steps": 128}  # the builder's defaults
    assert cfg["reward"] == "hepg2-guidance" and cfg["eval_reward"] == "hepg2-evaluation"
    w = cfg["weights"]
    assert {"denoiser", "reward_oracle", "eval_oracle", "value_net"} <= set(w)
    assert w["denoiser"] == spec.model.config()["network_weights"] == weights_hash(spec.model.network)
    assert w["reward_oracle"] == weights_hash(spec.reward.net) != w["eval_oracle"]
    json.dumps(cfg)


def test_fashion_task_config():
    pytest.importorskip("diffusers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")
    spec = get_task("fashion-class").make(target="sneaker", num_steps=4)
    cfg = spec.config
    assert cfg["task"] == "fashion-class" and cfg["options"]["target"] == 7 and cfg["options"]["num_steps"] == 4
    assert {"unet", "reward_oracle", "eval_oracle", "value_net"} <= set(cfg["weights"])
    assert cfg["weights"]["unet"] == spec.model.config()["unet_weights"]
    json.dumps(cfg)
