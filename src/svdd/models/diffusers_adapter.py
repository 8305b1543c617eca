"""Hugging Face diffusers models as `svdd` models.

`DiffusersModel` wraps any ``UNet2DModel`` / ``UNet2DConditionModel`` with a DDPM, DDIM (eta > 0) or
Euler-ancestral scheduler. The scheduler's own ``step`` makes every transition, so with M = 1 and the same generator
a run reproduces the diffusers sampling loop exactly; the M candidates of a step come from ONE batched scheduler call
on the repeated rows. `StableDiffusionModel` adds text prompts, classifier-free guidance and the VAE: rewards see
decoded images (`image_reward`).

Other schedulers are refused with the reason: deterministic ones (DDIM with eta = 0, Euler, Heun, DPM-Solver ODE)
would give M identical candidates; multistep ones (DPM-Solver++, UniPC, PNDM, LMS, DEIS) keep earlier network outputs
as state, which the rows of M candidates and of resampled samples would share and corrupt.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch

from .base import DiffusionModel, Tensor
from .gaussian import x0_from_output

SUPPORTED = ("DDPMScheduler", "DDIMScheduler", "EulerAncestralDiscreteScheduler")
# scheduler config entries written into `DiffusersModel.config()`
_SCHEDULER_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type",
                   "timestep_spacing", "steps_offset", "clip_sample", "clip_sample_range", "set_alpha_to_one",
                   "variance_type", "rescale_betas_zero_snr", "thresholding", "interpolation_type")
_DETERMINISTIC = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "LCMScheduler",
                  "FlowMatchEulerDiscreteScheduler", "DDIMInverseScheduler", "TCDScheduler")
_MULTISTEP = ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
              "PNDMScheduler", "LMSDiscreteScheduler", "DEISMultistepScheduler", "KDPM2AncestralDiscreteScheduler",
              "DPMSolverSDEScheduler", "SASolverScheduler", "EDMDPMSolverMultistepScheduler")


def check_scheduler(scheduler: Any, eta: float) -> None:
    """Raise a clear error for schedulers SVDD cannot branch from."""
    name = type(scheduler).__name__
    fix = "use DDPMScheduler, DDIMScheduler with eta > 0 or EulerAncestralDiscreteScheduler " \
          "(e.g. DDIMScheduler.from_config(pipe.scheduler.config))"
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta < float("inf"):
        raise ValueError(f"eta must be a finite number >= 0 (1 = DDPM-like ancestral steps), got {eta!r}")
    if name == "DDIMScheduler" and eta <= 0:
        raise ValueError(f"DDIMScheduler with eta={eta} is deterministic: all M candidates of a step would be "
                         f"identical. Pass eta > 0 (the paper uses eta = 1), or {fix}")
    if name in _DETERMINISTIC:
        raise ValueError(f"{name} is deterministic (or takes several network calls per step): all M candidates of a "
                         f"step would be identical or its inner state would break. {fix[0].upper()}{fix[1:]}")
    if name in _MULTISTEP:
        raise ValueError(f"{name} is a multistep / stateful scheduler: it keeps earlier network outputs, which the "
                         f"M candidates and resampled samples would share and corrupt. {fix[0].upper()}{fix[1:]}")
    if name not in SUPPORTED:
        raise ValueError(f"scheduler {name} is not supported; {fix}")
    if getattr(scheduler.config, "thresholding", False):
        raise ValueError(f"{name} with thresholding=True is not supported (x̂0 would not match the scheduler's)")


class DiffusersModel(DiffusionModel):
    """A diffusers UNet + scheduler as an `svdd` model.

    Args:
        unet: ``UNet2DModel`` or ``UNet2DConditionModel`` (anything returning ``.sample``).
        scheduler: DDPM, DDIM or Euler-ancestral scheduler; it is copied, never modified.
        num_steps: number of sampling steps (``scheduler.set_timesteps``).
        eta: DDIM's stochasticity (ignored by the other schedulers); must be > 0 for DDIM.
        sample_shape: (C, H, W) of one sample; default from the UNet's config.
        encoder_hidden_states: conditioning of a ``UNet2DConditionModel``, shared by all samples: (1, seq, dim).
        unet_kwargs: further keyword arguments of every UNet call (e.g. ``class_labels`` of size 1).
    """

    def __init__(self, unet: Any, scheduler: Any, num_steps: int = 50, *, eta: float = 1.0,
                 sample_shape: Sequence[int] | None = None, encoder_hidden_states: Tensor | None = None,
                 unet_kwargs: dict[str, Any] | None = None):
        check_scheduler(scheduler, eta)
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        self.unet = unet
        self.scheduler = copy.deepcopy(scheduler)  # (from_config would drop config edits, e.g. steps_offset)
        self.kind = type(scheduler).__name__
        self.eta = float(eta)
        self.device = unet.device
        self.dtype = unet.dtype
        self.scheduler.set_timesteps(num_steps, device=self.device)
        self.timesteps = self.scheduler.timesteps
        self.num_steps = len(self.timesteps)
        self.num_train_steps = int(self.scheduler.config.num_train_timesteps)
        cfg = unet.config
        if sample_shape is None:
            size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size,) * 2
            sample_shape = (cfg.in_channels, *size)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.cond = encoder_hidden_states
        self.unet_kwargs = dict(unet_kwargs or {})
        self.prediction = self.scheduler.config.prediction_type
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)
        clip = getattr(self.scheduler.config, "clip_sample", False)
        self.clip = float(self.scheduler.config.clip_sample_range) if clip else None

    # protocol -----------------------------------------------------------------------------------------------------
    def time(self, i: int) -> float:
        return 0.0 if i >= self.num_steps else (int(self.timesteps[i]) + 1) / self.num_train_steps

    def prior(self, n: int, generator: torch.Generator) -> Tensor:
        x = torch.randn((n, *self.sample_shape), generator=generator, device=generator.device, dtype=self.dtype)
        return x.to(self.device) * self.scheduler.init_noise_sigma

    def _at(self, i: int) -> Tensor:
        if self.kind == "EulerAncestralDiscreteScheduler":
            self.scheduler._step_index = i  # its step counter must follow our level, not its own call count
        return self.timesteps[i]

    def network(self, x: Tensor, t: Tensor) -> Tensor:
        """The UNet call on model-scaled input (override for classifier-free guidance)."""
        kw = dict(self.unet_kwargs)
        if self.cond is not None:
            kw["encoder_hidden_states"] = self.cond.expand(x.shape[0], *self.cond.shape[1:])
        return self.unet(x, t, **kw).sample

    def predict(self, x: Tensor, i: int) -> Tensor:
        t = self._at(i)
        return self.network(self.scheduler.scale_model_input(x, t), t)

    def step(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, num_children: int = 1) -> Tensor:
        if num_children > 1:  # the M candidates: one batched scheduler call on repeated rows
            x, pred = x.repeat_interleave(num_children, 0), pred.repeat_interleave(num_children, 0)
        t = self._at(i)
        kw = {"eta": self.eta} if self.kind == "DDIMScheduler" else {}
        return self.scheduler.step(pred, t, x, generator=generator, **kw).prev_sample

    def renoise(self, x0: Tensor, i: int, generator: torch.Generator) -> Tensor:
        """The scheduler's forward process at the level's timestep (``add_noise``)."""
        if i >= self.num_steps:
            return x0.clone()
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
        return self.scheduler.add_noise(x0, noise, self.timesteps[i:i + 1])

    def denoise(self, x: Tensor, pred: Tensor, i: int) -> Tensor:
        """x̂0 exactly as the scheduler computes ``pred_original_sample`` (clipped where it clips)."""
        pred = pred[:, : x.shape[1]]  # learned-variance UNets output [ε, v]
        if self.kind == "EulerAncestralDiscreteScheduler":
            sigma = float(self.scheduler.sigmas[i])
            xf = x.float()
            if self.prediction == "epsilon":
                return (xf - sigma * pred).to(x.dtype)
            return (pred * (-sigma / (sigma**2 + 1) ** 0.5) + xf / (sigma**2 + 1)).to(x.dtype)
        a = float(self.alphas_cumprod[int(self.timesteps[i])])
        x0 = x0_from_output(x, pred, math.sqrt(a), math.sqrt(1 - a), self.prediction)
        return x0.clamp(-self.clip, self.clip) if self.clip is not None else x0

    def noise_std(self, i: int) -> float:
        """Standard deviation of the noise the scheduler adds at step i (0 = all children coincide)."""
        if self.kind == "EulerAncestralDiscreteScheduler":
            s_from, s_to = float(self.scheduler.sigmas[i]), float(self.scheduler.sigmas[i + 1])
            return math.sqrt(max(s_to**2 * (s_from**2 - s_to**2) / s_from**2, 0.0))
        t = int(self.timesteps[i])
        prev = int(self.scheduler.previous_timestep(t)) if hasattr(self.scheduler, "previous_timestep") else \
            t - self.num_train_steps // self.num_steps
        a_t = float(self.alphas_cumprod[t])
        if prev >= 0:
            a_p = float(self.alphas_cumprod[prev])
        elif self.kind == "DDIMScheduler":
            a_p = float(self.scheduler.final_alpha_cumprod)
        else:  # DDPM adds no noise at t = 0
            return 0.0
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        return (self.eta if self.kind == "DDIMScheduler" else 1.0) * math.sqrt(max(var, 0.0))

    def deterministic_step(self, i: int) -> bool:
        return self.noise_std(i) == 0.0

    def config(self) -> dict:
        """Scheduler class and settings, timesteps, eta, conditioning and a hash of the UNet's weights."""
        from ..io import tensor_hash, weights_hash
        from .gaussian import summarize_steps
        cfg = self.scheduler.config
        sched = {"class": self.kind, **{k: cfg[k] for k in _SCHEDULER_KEYS if k in cfg},
                 "alphas_cumprod_sha256": tensor_hash(self.alphas_cumprod)}
        kwargs = {k: tensor_hash(v) if isinstance(v, torch.Tensor) else v for k, v in self.unet_kwargs.items()}
        return {"class": type(self).__name__, "num_steps": self.num_steps, "scheduler": sched, "eta": self.eta,
                "timesteps": summarize_steps(self.timesteps.tolist()), "sample_shape": list(self.sample_shape),
                "dtype": str(self.dtype), "device": str(self.device), "unet": type(self.unet).__name__,
                "unet_weights": weights_hash(self.unet), "conditioning_sha256": tensor_hash(self.cond),
                "unet_kwargs": kwargs}

    # loading ---------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str, num_steps: int = 50, *, scheduler: str = "ddim", eta: float = 1.0,
                        device: str = "cpu", torch_dtype: torch.dtype | None = None, **kw) -> "DiffusersModel":
        """Load ``unet/`` and ``scheduler/`` saved by ``save_pretrained`` from a local folder (safetensors only).
        ``scheduler``: 'ddpm', 'ddim' or 'euler-ancestral' (built from the saved scheduler's config)."""
        from diffusers import UNet2DModel
        unet = UNet2DModel.from_pretrained(path, subfolder="unet", local_files_only=True, use_safetensors=True,
                                           torch_dtype=torch_dtype, low_cpu_mem_usage=False).to(device).eval().requires_grad_(False)
        return cls(unet, load_scheduler(path, scheduler), num_steps, eta=eta, **kw)


SCHEDULERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "euler-ancestral": "EulerAncestralDiscreteScheduler"}


def load_scheduler(path: str, kind: str = "ddim"):
    import diffusers
    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {kind!r}")
    cls = getattr(diffusers, SCHEDULERS[kind])
    config = cls.load_config(path, subfolder="scheduler", local_files_only=True)
    return cls.from_config(config)


class StableDiffusionModel(DiffusersModel):
    """A Stable Diffusion pipeline (UNet2DConditionModel + VAE + CLIP text encoder) for one text prompt.

    The model samples latents; `decode` turns latents into images in [-1, 1], and `image_reward(reward)` wraps an
    image reward so that every x̂0 and final latent is decoded by the VAE before it is scored. Classifier-free
    guidance doubles the rows of every UNet call (counted once per state by the engine).
    """

    def __init__(self, pipe: Any, prompt: str, num_steps: int = 50, *, negative_prompt: str | None = None,
                 guidance_scale: float = 7.5, eta: float = 1.0, height: int | None = None, width: int | None = None):
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt must be a non-empty string (run one sampling per prompt), got {prompt!r}")
        self.pipe = pipe
        self.guidance_scale = float(guidance_scale)
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        height = height or pipe.unet.config.sample_size * self.vae_scale
        width = width or pipe.unet.config.sample_size * self.vae_scale
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(prompt, pipe.unet.device, 1, self.guidance_scale > 1.0,
                                              negative_prompt=negative_prompt)
        super().__init__(pipe.unet, pipe.scheduler, num_steps, eta=eta, encoder_hidden_states=cond,
                         sample_shape=(pipe.unet.config.in_channels, height // self.vae_scale, width // self.vae_scale))
        self.uncond = uncond
        self.prompt = prompt
        self.negative_prompt = negative_prompt

    def network(self, x: Tensor, t: Tensor) -> Tensor:
        if self.guidance_scale <= 1.0:
            return super().network(x, t)
        n = x.shape[0]
        emb = torch.cat([self.uncond.expand(n, *self.uncond.shape[1:]), self.cond.expand(n, *self.cond.shape[1:])])
        out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample
        u, c = out.chunk(2)
        return u + self.guidance_scale * (c - u)

    def config(self) -> dict:
        """`DiffusersModel.config` plus the prompt, classifier-free guidance and hashes of the VAE and text encoder."""
        from ..io import weights_hash
        return {**super().config(), "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "guidance_scale": self.guidance_scale, "vae_weights": weights_hash(self.pipe.vae),
                "text_encoder_weights": weights_hash(getattr(self.pipe, "text_encoder", None))}

    def decode(self, latents: Tensor) -> Tensor:
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)

    def image_reward(self, reward: Any):
        """Wrap an image reward (images in [-1, 1]) so it scores latents through the VAE decoder."""
        from ..rewards import Reward, as_reward
        inner = as_reward(reward)
        return Reward(lambda z: inner(self.decode(z)), name=inner.name, differentiable=inner.differentiable)

    @classmethod
    def from_pretrained(cls, path: str, prompt: str, num_steps: int = 50, *, scheduler: str = "ddim",
                        device: str = "cpu", torch_dtype: torch.dtype | None = None, **kw) -> "StableDiffusionModel":
        """Load a Stable Diffusion folder (e.g. a local copy of SD v1.5) without network access."""
        from diffusers import StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                       torch_dtype=torch_dtype, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.scheduler = load_scheduler(path, scheduler)
        pipe = pipe.to(device)
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.eval().requires_grad_(False)
        return cls(pipe, prompt, num_steps, **kw)
