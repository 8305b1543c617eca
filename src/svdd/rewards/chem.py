"""Molecule rewards: drug-likeness (QED), synthetic accessibility (SA) and AutoDock Vina docking (PARP1 by default).

Every reward exists twice: as a function of one SMILES string (what a chemist calls; NaN for None or unparsable input)
and as a `Reward` on SELFIES token rows (decoded with `svdd.tasks.molecule.data.decode`; float64, NaN where the row is
the empty molecule or the function fails).

* `qed` (RDKit's QED, in [0, 1]) and `sa_score` (Ertl & Schuffenhauer's SA score, 1 = easy .. 10 = hard, RDKit
  Contrib); `sa_reward = (10 - SA) / 9` in [0, 1], higher is better. `QED()` and `SA()` are the token-row rewards
  (SA() returns `sa_reward`); about 1 ms per molecule, so they run in-process.
* Docking: AutoDock Vina 1.2 (Python bindings) against a target shipped by the pip package ``dockstring`` (only its
  receptor PDBQT and box files are read; the package is never imported and its bundled vina binary never run).
  The ligand is built by RDKit (hydrogens, ETKDG with a fixed seed, MMFF when it converges) and prepared by meeko;
  there is no protonation at pH 7.4 as in dockstring, so scores are not dockstring's. The grid maps of every atom
  type are computed once per process (a few seconds) and reused for every ligand. The reward is max(−score, 0) as in
  the SVDD paper (score in kcal/mol, lower is better); `dock_score` gives the raw score. Docking takes ~0.4-4 s per
  molecule (exhaustiveness 1, one core), so the task runs it in worker processes: `init_docking` is the per-process
  initializer and `dock_item` the picklable per-item function of `svdd.rewards.parallel.ParallelReward`, which
  `VinaDocking.reward(workers=...)` builds. For a fixed seed (>= 1: Vina takes 0 as "draw one") a molecule's score
  is the same in every process and call.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from . import Reward

Tensor = torch.Tensor
NAN = float("nan")


def _mol(smiles: str | None):
    """RDKit molecule of a SMILES string, or None (None, empty, unparsable, no atoms)."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def _per_molecule(fn: Callable) -> Callable[[str | None], float]:
    """SMILES -> float from Mol -> number; NaN for None / unparsable input or when ``fn`` raises."""
    def wrapped(smiles: str | None) -> float:
        mol = _mol(smiles)
        if mol is None:
            return NAN
        try:
            return float(fn(mol))
        except Exception:
            return NAN
    wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = fn.__name__, fn.__name__, fn.__doc__
    return wrapped


@lru_cache(maxsize=1)
def _sascorer():
    try:
        from rdkit.Contrib.SA_Score import sascorer
    except ImportError:
        from rdkit import RDConfig
        sys.path.append(os.path.join(RDConfig.RDContribDir, "SA_Score"))
        import sascorer
    # on first use sascorer unpickles fpscores.pkl.gz, the fragment-score table shipped inside RDKit itself (part of
    # the installed rdkit package, never user input)
    return sascorer


@_per_molecule
def qed(mol) -> float:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012), RDKit's implementation; in [0, 1]."""
    from rdkit.Chem import QED
    return QED.qed(mol)


@_per_molecule
def sa_score(mol) -> float:
    """Synthetic accessibility score (Ertl & Schuffenhauer 2009), RDKit Contrib; 1 (easy) .. 10 (hard)."""
    return _sascorer().calculateScore(mol)


def sa_reward(smiles: str | None) -> float:
    """(10 − SA) / 9 in [0, 1]: higher is easier to synthesise."""
    return (10.0 - sa_score(smiles)) / 9.0


@_per_molecule
def molecular_weight(mol) -> float:
    """Average molecular weight (Da), hydrogens included."""
    from rdkit.Chem import Descriptors
    return Descriptors.MolWt(mol)


@_per_molecule
def logp(mol) -> float:
    """Crippen's octanol-water logP (Wildman & Crippen 1999)."""
    from rdkit.Chem import Crippen
    return Crippen.MolLogP(mol)


@_per_molecule
def heavy_atoms(mol) -> float:
    """Number of non-hydrogen atoms."""
    return mol.GetNumHeavyAtoms()


#: per-SMILES properties for evaluation tables
PROPERTIES: dict[str, Callable[[str | None], float]] = {
    "qed": qed, "sa": sa_score, "mw": molecular_weight, "logp": logp, "heavy_atoms": heavy_atoms}


# token-row rewards ------------------------------------------------------------------------------------------------
def _check_tokens(x: Tensor, name: str) -> Tensor:
    from svdd.tasks.molecule.data import VOCAB
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() or x.ndim != 2:
        what = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"reward {name!r} expects integer SELFIES token rows of shape (n, length), got {what} "
                        "(SMILES strings? use the per-SMILES functions of svdd.rewards.chem, or data.encode)")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= len(VOCAB)):
        raise ValueError(f"reward {name!r}: token indices must be in [0, {len(VOCAB)}), "
                         f"got values in [{int(x.min())}, {int(x.max())}]")
    return x


class MoleculeReward(Reward):
    """A per-SMILES function as a reward on SELFIES token rows: float64, NaN where the row decodes to no molecule or
    ``fn`` fails. ``of_smiles(list)`` applies it to SMILES directly."""

    def __init__(self, fn: Callable[[str], float], name: str | None = None):
        super().__init__(None, name=name or getattr(fn, "__name__", "molecule-reward"), differentiable=False)
        self.smiles_fn = fn

    def of_smiles(self, smiles: Iterable[str | None]) -> Tensor:
        out = []
        for s in smiles:
            try:
                v = NAN if s is None else float(self.smiles_fn(s))
            except Exception:
                v = NAN
            out.append(v)
        return torch.tensor(out, dtype=torch.float64)

    def __call__(self, x: Tensor) -> Tensor:
        from svdd.tasks.molecule.data import decode
        return self.of_smiles(decode(_check_tokens(x, self.name)))


class QED(MoleculeReward):
    """QED of the decoded molecule, in [0, 1]."""

    def __init__(self):
        super().__init__(qed, name="qed")


class SA(MoleculeReward):
    """`sa_reward` = (10 − SA score) / 9 of the decoded molecule, in [0, 1] (higher = easier to synthesise)."""

    def __init__(self):
        super().__init__(sa_reward, name="sa")


# docking ----------------------------------------------------------------------------------------------------------
SCORING_FUNCTIONS = ("vina", "vinardo")


def targets_dir() -> Path:
    """The ``resources/targets`` folder of the installed ``dockstring`` package (located, never imported)."""
    from importlib.util import find_spec
    spec = find_spec("dockstring")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("docking targets not found: install them with `pip install --no-deps dockstring==0.3.4`"
                                " (only its receptor files are used)")
    return Path(spec.origin).parent / "resources" / "targets"


def available_targets() -> list[str]:
    return sorted(p.name[:-len("_target.pdbqt")] for p in targets_dir().glob("*_target.pdbqt"))


@lru_cache(maxsize=None)
def target_files(target: str = "PARP1") -> tuple[str, tuple[float, float, float], tuple[float, float, float]]:
    """(receptor PDBQT path, box center, box size in Å) of a dockstring target. Raises ValueError for unknown names."""
    names = available_targets()
    match = {n.upper(): n for n in names}.get(str(target).upper())
    if match is None:
        raise ValueError(f"unknown docking target {target!r}; available ({len(names)}): {', '.join(names)}")
    d = targets_dir()
    conf: dict[str, float] = {}
    for line in (d / f"{match}_conf.txt").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = float(value)
    try:
        center = tuple(conf[f"center_{a}"] for a in "xyz")
        size = tuple(conf[f"size_{a}"] for a in "xyz")
    except KeyError as exc:
        raise ValueError(f"{d / f'{match}_conf.txt'} has no {exc.args[0]} entry") from None
    return str(d / f"{match}_target.pdbqt"), center, size


def _check_settings(sf_name: str, seed: int) -> None:
    if sf_name not in SCORING_FUNCTIONS:
        raise ValueError(f"scoring function must be one of {SCORING_FUNCTIONS}, got {sf_name!r}")
    if int(seed) < 1:  # Vina draws a random seed for 0: scores would change from process to process
        raise ValueError(f"docking seed must be >= 1 (Vina takes 0 as 'random'), got {seed}")


#: per-process docking state: (target, sf_name, cpu, seed) -> Vina object with the receptor's maps computed
_DOCKING: dict[tuple, Any] = {}


def init_docking(target: str = "PARP1", sf_name: str = "vina", cpu: int = 1, seed: int = 1):
    """Prepare (once per process) a Vina object for ``target`` with the grid maps of all atom types; return it.
    The initializer of docking worker processes."""
    key = (str(target).upper(), sf_name, int(cpu), int(seed))
    if key not in _DOCKING:
        _check_settings(sf_name, seed)
        receptor, center, size = target_files(target)
        try:
            from vina import Vina
        except ImportError:
            raise ImportError("docking needs AutoDock Vina's Python bindings: pip install 'vina>=1.2.5'") from None
        v = Vina(sf_name=sf_name, cpu=int(cpu), seed=int(seed), verbosity=0)
        v.set_receptor(receptor)
        v.compute_vina_maps(center=list(center), box_size=list(size))  # before any ligand: maps of all atom types
        _DOCKING[key] = v
    return _DOCKING[key]


def ligand_pdbqt(smiles: str | None, seed: int = 1) -> str | None:
    """3-D ligand PDBQT for Vina: RDKit hydrogens + ETKDG (fixed seed; random starting coordinates if that fails),
    MMFF when it converges, meeko preparation. None when any step fails."""
    mol = _mol(smiles)
    if mol is None:
        return None
    from rdkit import Chem
    from rdkit.Chem import AllChem
    try:
        mol = Chem.AddHs(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed)
        if AllChem.EmbedMolecule(mol, params) != 0:
            params.useRandomCoords = True
            if AllChem.EmbedMolecule(mol, params) != 0:
                return None
        if AllChem.MMFFHasAllMoleculeParams(mol):
            trial = Chem.Mol(mol)
            if AllChem.MMFFOptimizeMolecule(trial, maxIters=1000) == 0:
                mol = trial
        from meeko import MoleculePreparation, PDBQTWriterLegacy
        # rigid macrocycles: no flexible-ring pseudo-atoms (G0/CG0), which the precomputed maps do not cover
        setups = MoleculePreparation(rigid_macrocycles=True).prepare(mol)
        text, ok, _ = PDBQTWriterLegacy.write_string(setups[0])
        return text if ok else None
    except Exception:
        return None


def dock_score(smiles: str | None, target: str = "PARP1", *, exhaustiveness: int = 1, sf_name: str = "vina",
               cpu: int = 1, seed: int = 1, num_modes: int = 1) -> float:
    """Vina score (kcal/mol, lower = tighter binding) of the best pose of ``smiles`` in ``target``; NaN on failure."""
    ligand = ligand_pdbqt(smiles, seed)
    if ligand is None:
        return NAN
    v = init_docking(target, sf_name, cpu, seed)
    try:
        v.set_ligand_from_string(ligand)
        v.dock(exhaustiveness=int(exhaustiveness), n_poses=int(num_modes))
        return float(v.energies(n_poses=1)[0][0])
    except Exception:
        return NAN


def docking_reward(smiles: str | None, target: str = "PARP1", **kwargs) -> float:
    """max(−`dock_score`, 0) (the SVDD paper's docking reward); NaN on failure."""
    score = dock_score(smiles, target, **kwargs)
    return NAN if math.isnan(score) else max(-score, 0.0)


@dataclass(frozen=True)
class VinaDocking:
    """Docking settings. ``exhaustiveness=1`` by default: on PARP1 and 5 MOSES test molecules, exhaustiveness 8
    took 8.5x the time of 1 for a 0.05 kcal/mol lower mean score (−8.07 vs −8.02; 2 and 4 changed nothing;
    benchmarks/docking_tradeoff.py), and guidance needs many calls. ``cpu`` is Vina's thread count per docking
    (parallelism comes from worker processes); ``num_modes`` the poses Vina keeps (the score is the best one's)."""

    target: str = "PARP1"
    exhaustiveness: int = 1
    sf_name: str = "vina"
    seed: int = 1
    cpu: int = 1
    num_modes: int = 1

    def __post_init__(self):
        target_files(self.target)  # unknown target -> ValueError listing the available ones
        _check_settings(self.sf_name, self.seed)
        for k in ("exhaustiveness", "cpu", "num_modes"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")

    @property
    def name(self) -> str:
        return f"docking-{self.target}-{self.sf_name}-ex{self.exhaustiveness}-seed{self.seed}"

    @property
    def init_args(self) -> tuple:
        """Arguments of `init_docking` for worker processes."""
        return (self.target, self.sf_name, self.cpu, self.seed)

    def score(self, smiles: str | None) -> float:
        return dock_score(smiles, self.target, exhaustiveness=self.exhaustiveness, sf_name=self.sf_name,
                          cpu=self.cpu, seed=self.seed, num_modes=self.num_modes)

    def reward_of(self, smiles: str | None) -> float:
        s = self.score(smiles)
        return NAN if math.isnan(s) else max(-s, 0.0)

    def to_item(self, x: Tensor) -> list[tuple[str | None, "VinaDocking"]]:
        """Token rows -> picklable `dock_item` items."""
        from svdd.tasks.molecule.data import decode
        return [(s, self) for s in decode(_check_tokens(x, self.name))]

    def reward(self, workers: int = 2, timeout: float | None = None) -> Reward:
        """The docking reward on token rows: in-process for ``workers == 0`` (no timeout), else a pool of ``workers``
        processes (`ParallelReward`, per-molecule ``timeout``)."""
        if workers == 0:
            return MoleculeReward(self.reward_of, name=self.name)
        from .parallel import ParallelReward
        return ParallelReward(dock_item, to_item=self.to_item, workers=workers, timeout=timeout, init=init_docking,
                              init_args=self.init_args, name=self.name)


def dock_item(item: tuple[str | None, VinaDocking]) -> float:
    """(SMILES, settings) -> docking reward max(−score, 0): the picklable item function of worker pools."""
    smiles, settings = item
    return settings.reward_of(smiles)


def dock_score_item(item: tuple[str | None, VinaDocking]) -> float:
    """(SMILES, settings) -> raw Vina score (kcal/mol)."""
    smiles, settings = item
    return settings.score(smiles)
