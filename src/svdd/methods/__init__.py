"""Methods, each a config selectable by name: pretrained, best-of-n, svdd, smc, svdd-r, dps."""

from .base import METHODS, Method, get_method
from .best_of_n import BestOfN
from .dps import DPS
from .pretrained import Pretrained
from .smc import SMC
from .svdd import SVDD
from .svdd_r import SVDDR

__all__ = ["METHODS", "Method", "get_method", "Pretrained", "BestOfN", "SVDD", "SMC", "SVDDR", "DPS"]
