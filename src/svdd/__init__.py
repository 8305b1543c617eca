"""svdd: reward-guided sampling from pre-trained diffusion models by soft value-based decoding (arXiv 2408.08252)."""

from . import errors
from .api import sample
from .budget import Budget
from .guidance import GuidedModel
from .methods import BeamSearch, BestOfN, BranchSelect, DPS, METHODS, Pretrained, Refine, SMC, SVDD, SVDDR, TreeSearch, \
    get_method
from .models import DiffusersModel, DiffusionModel, GaussianDiffusion, MaskedDiffusion, StableDiffusionModel
from .result import SampleResult
from .runs import sample_run
from .rewards import Reward, WeightedSum, reward
from .values import FunctionValue, LearnedValue, PosteriorMean

__version__ = "0.1.0"
__all__ = ["sample", "Budget", "sample_run", "GuidedModel", "get_method", "METHODS", "Pretrained", "BestOfN", "SVDD", "SMC", "SVDDR", "DPS",
           "BeamSearch", "BranchSelect", "TreeSearch", "Refine",
           "DiffusionModel", "GaussianDiffusion", "MaskedDiffusion", "DiffusersModel", "StableDiffusionModel", "SampleResult", "Reward", "WeightedSum",
           "reward", "PosteriorMean", "LearnedValue", "FunctionValue"]
