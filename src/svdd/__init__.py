"""svdd: reward-guided sampling from pre-trained diffusion models by soft value-based decoding (arXiv 2408.08252)."""

from . import errors
from .api import sample
from .budget import Budget
from .guidance import GuidedModel
from .methods import BeamSearch, BestOfN, BranchSelect, DPS, METHODS, Method, Pretrained, Refine, SMC, SVDD, SVDDR, \
    TreeSearch, get_method
from .models import DiffusersModel, DiffusionModel, GaussianDiffusion, MaskedDiffusion, StableDiffusionModel
from .result import SampleResult
from .distributed import Backend
from .runs import execute, rerun, sample_run
from .spec import RunSettings, RunSpec
from .rewards import Reward, WeightedSum, reward
from .values import FunctionValue, LearnedValue, PosteriorMean

__version__ = "0.1.0"
__all__ = ["sample", "Budget", "sample_run", "RunSpec", "RunSettings", "execute", "rerun", "Backend", "GuidedModel", "get_method", "METHODS", "Method", "Pretrained", "BestOfN", "SVDD", "SMC", "SVDDR", "DPS",
           "BeamSearch", "BranchSelect", "TreeSearch", "Refine",
           "DiffusionModel", "GaussianDiffusion", "MaskedDiffusion", "DiffusersModel", "StableDiffusionModel", "SampleResult", "Reward", "WeightedSum",
           "reward", "PosteriorMean", "LearnedValue", "FunctionValue"]
