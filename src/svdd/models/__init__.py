from .base import DiffusionModel, check_model
from .diffusers_adapter import DiffusersModel, StableDiffusionModel
from .gaussian import GaussianDiffusion, make_alphas_cumprod
from .masked import MaskedDiffusion, sample_categorical

__all__ = ["DiffusionModel", "check_model", "DiffusersModel", "StableDiffusionModel", "GaussianDiffusion", "MaskedDiffusion", "make_alphas_cumprod",
           "sample_categorical"]
