from .base import DiffusionModel, check_model
from .gaussian import GaussianDiffusion, make_alphas_cumprod
from .masked import MaskedDiffusion, sample_categorical

__all__ = ["DiffusionModel", "check_model", "GaussianDiffusion", "MaskedDiffusion", "make_alphas_cumprod",
           "sample_categorical"]
