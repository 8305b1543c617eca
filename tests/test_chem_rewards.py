"""Molecule rewards (svdd.rewards.chem): RDKit's own numbers, token rows = SMILES, one real Vina docking."""

import math
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip("rdkit", reason="molecule rewards need RDKit (pip install 'svdd[molecules]')")
pytest.importorskip("selfies", reason="molecule rewards need selfies (pip install 'svdd[molecules]')")

from svdd.rewards import chem  # noqa: E402
from svdd.tasks.molecule.data import SEQ_LEN, encode, moses_smiles  # noqa: E402

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
BENZAMIDE = "NC(=O)c1ccccc1"  # the nicotinamide-like fragment of PARP1 inhibitors


@pytest.fixture(scope="module")
def molecules():
    return list(moses_smiles("test")[:5]) + [ASPIRIN]


def test_smiles_functions_equal_rdkit(molecules):
    from rdkit import Chem
    from rdkit.Chem import QED, Crippen, Descriptors
    from rdkit.Contrib.SA_Score import sascorer
    for s in molecules:
        mol = Chem.MolFromSmiles(s)
        assert chem.qed(s) == QED.qed(mol)
        assert chem.sa_score(s) == sascorer.calculateScore(mol)
        assert chem.sa_reward(s) == pytest.approx((10 - sascorer.calculateScore(mol)) / 9)
        assert chem.molecular_weight(s) == Descriptors.MolWt(mol)
        assert chem.logp(s) == Crippen.MolLogP(mol)
        assert chem.heavy_atoms(s) == mol.GetNumHeavyAtoms()
    assert chem.qed(ASPIRIN) == pytest.approx(0.550, abs=1e-3)
    assert chem.heavy_atoms(ASPIRIN) == 13
    for bad in (None, "", "not a smiles", "C1CC"):
        assert all(math.isnan(f(bad)) for f in chem.PROPERTIES.values())


def test_token_rewards_equal_smiles_functions(molecules):
    x = torch.cat([encode(molecules), torch.zeros(1, SEQ_LEN, dtype=torch.long)])  # last row: all padding
    for reward, fn in ((chem.QED(), chem.qed), (chem.SA(), chem.sa_reward)):
        out = reward(x)
        assert out.dtype == torch.float64 and out.shape == (len(molecules) + 1,)
        assert out[:-1].tolist() == [fn(s) for s in molecules]  # encode/decode keeps the molecule (canonical)
        assert math.isnan(out[-1])
        assert torch.equal(reward.of_smiles(molecules), out[:-1])
    assert (chem.QED().name, chem.SA().name) == ("qed", "sa")
    with pytest.raises(TypeError, match="token rows"):
        chem.QED()(torch.rand(2, SEQ_LEN))
    with pytest.raises(ValueError, match=r"\[0, 26\)"):
        chem.QED()(torch.full((1, SEQ_LEN), 99))


def test_docking_real_vina_call():
    pytest.importorskip("vina", reason="docking needs AutoDock Vina (pip install 'svdd[molecules]')")
    pytest.importorskip("meeko", reason="docking needs meeko (pip install 'svdd[molecules]')")
    settings = chem.VinaDocking("PARP1", exhaustiveness=1, seed=1)
    score = settings.score(BENZAMIDE)
    assert math.isfinite(score) and -12 < score < -3
    assert settings.score(BENZAMIDE) == score  # same seed, same score (maps reused)
    other = subprocess.run([sys.executable, "-c", "from svdd.rewards.chem import dock_score; "
                            f"print(repr(dock_score({BENZAMIDE!r}, seed=1)))"], capture_output=True, text=True)
    assert float(other.stdout) == score, other.stderr  # and in another process
    assert chem.dock_score(BENZAMIDE, "parp1", exhaustiveness=1, seed=1) == score
    assert chem.dock_item((BENZAMIDE, settings)) == max(-score, 0.0) == settings.reward_of(BENZAMIDE)
    assert math.isnan(chem.dock_item((None, settings))) and math.isnan(settings.score("C1CC"))
    assert settings.name == "docking-PARP1-vina-ex1-seed1"
    # pieces handed to worker processes pickle; the in-process token reward agrees with the SMILES function
    assert pickle.loads(pickle.dumps((BENZAMIDE, settings)))[1] == settings
    x = encode([BENZAMIDE])
    assert settings.to_item(x) == [(BENZAMIDE, settings)]
    assert settings.reward(workers=1)(x).tolist() == [max(-score, 0.0)]


def test_unknown_target_and_bad_settings():
    with pytest.raises(ValueError, match="unknown docking target 'NOPE'.*PARP1"):
        chem.VinaDocking("NOPE")
    with pytest.raises(ValueError, match="unknown docking target"):
        chem.init_docking("NOPE")
    with pytest.raises(ValueError, match="vinardo"):
        chem.VinaDocking(sf_name="ad4")
    with pytest.raises(ValueError, match="seed must be >= 1"):
        chem.VinaDocking(seed=0)
    with pytest.raises(ValueError, match="exhaustiveness"):
        chem.VinaDocking(exhaustiveness=0)
    assert "PARP1" in chem.available_targets() and len(chem.available_targets()) > 50
    receptor, center, size = chem.target_files("PARP1")
    assert receptor.endswith("PARP1_target.pdbqt") and center == (26.835, 11.332, 27.744) and size == (30.0,) * 3
