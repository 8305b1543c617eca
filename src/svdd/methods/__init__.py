"""Methods, each a config selectable by name (the registry `METHODS`) and a step kernel on one driver.

Every module of this package is imported, so a new method is one file: a dataclass of options with ``@register``,
its ``name``, its ``test_options`` (the every-method tests run it with them) and its ``init`` / ``step`` / ``finish``.
The command line, `svdd.sample`'s docstring, the budget frontier and the every-method tests read the registry."""

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


def _register_every_module() -> None:
    """Import every module of this package, so that a new method is one file with a ``@register``ed class."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_every_module()
