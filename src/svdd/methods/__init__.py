"""Methods, each a config selectable by name and a step kernel on one driver: pretrained, best-of-n, svdd, smc,
svdd-r, dps, beam,
branch-select, refine, tree."""

from .base import METHODS, Final, Method, State, StepInfo, drive, get_method
from .beam import BeamSearch, BranchSelect
from .best_of_n import BestOfN
from .dps import DPS
from .pretrained import Pretrained
from .refine import Refine
from .particles import ParticleMethod
from .smc import SMC
from .svdd import SVDD
from .svdd_r import SVDDR
from .tree import TreeSearch

__all__ = ["METHODS", "Method", "State", "StepInfo", "Final", "drive", "ParticleMethod", "get_method", "Pretrained", "BestOfN", "SVDD", "SMC", "SVDDR", "DPS", "BeamSearch",
           "BranchSelect", "Refine", "TreeSearch"]
