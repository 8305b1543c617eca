"""The molecule task: SELFIES tokens on real MOSES molecules, validity by construction, set metrics with exact
answers, the shipped denoiser, and a CLI run that writes canonical SMILES."""

import csv
import json

import pytest
import torch

pytest.importorskip("rdkit", reason="the molecule task needs RDKit (pip install 'svdd[molecules]')")
pytest.importorskip("selfies", reason="the molecule task needs selfies (pip install 'svdd[molecules]')")

from svdd.tasks.molecule import data, metrics  # noqa: E402
from svdd.tasks.molecule.data import MoleculeError, canonical, decode, encode  # noqa: E402


def test_round_trip_on_real_moses_molecules():
    smiles = data.moses_smiles("test")[:300]
    fits = []
    for s in smiles:
        try:
            fits.append((s, encode([s])))
        except MoleculeError:
            pass
    assert len(fits) >= 295  # the vocabulary and length cover MOSES (221 of 1,584,663 train molecules do not fit)
    for s, x in fits:
        assert x.shape == (1, data.SEQ_LEN) and x.dtype == torch.long
        assert decode(x) == [canonical(s)]


@pytest.mark.parametrize("bad, words", [("C1CC", "cannot parse"), ("", "not a SMILES"), ("C[Si](C)(C)C", "[Si]"),
                                        ("C" * 80, "80 SELFIES tokens")])
def test_bad_smiles_are_named(bad, words):
    with pytest.raises(MoleculeError) as e:
        encode(["CCO", bad])
    assert words in str(e.value) and repr(bad) in str(e.value)


def test_every_token_row_decodes_to_a_valid_molecule():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, len(data.VOCAB), (200, data.SEQ_LEN), generator=g)
    x[:, 0] = 1  # at least one atom: an all-padding row is the empty molecule
    smiles = decode(x)
    assert all(s is not None and canonical(s) == s for s in smiles)
    assert decode(torch.zeros(1, data.SEQ_LEN, dtype=torch.long)) == [None]  # all padding: the empty molecule
    # padding anywhere is skipped by the decoder
    a = encode(["c1ccccc1O"])
    spaced = torch.zeros_like(a)
    spaced[0, ::2] = a[0, : data.SEQ_LEN // 2]
    assert decode(spaced) == decode(a)


def test_set_metrics_exact():
    smi = ["CCO", "CCO", "c1ccccc1", None]
    assert metrics.validity(smi) == 0.75
    assert metrics.uniqueness(smi) == pytest.approx(2 / 3)
    assert metrics.internal_diversity(["CCO", "CCO"]) == pytest.approx(0.0)
    from rdkit import DataStructs
    fa, fb = metrics.fingerprints(["CCO", "c1ccccc1"])
    assert metrics.internal_diversity(["CCO", "c1ccccc1"]) == pytest.approx(1 - DataStructs.TanimotoSimilarity(fa, fb))


def test_shipped_denoiser_loads_and_round_trips(tmp_path):
    from svdd.io import load_module, save_module
    from svdd.tasks.molecule import load_denoiser
    from svdd.tasks.molecule.networks import TransformerDenoiser
    net = load_denoiser()
    x = encode(["CCO", "c1ccccc1C(=O)N"])
    x[:, 3:10] = len(data.VOCAB)  # some masks
    save_module(net, tmp_path / "d")
    again = load_module(TransformerDenoiser, tmp_path / "d")
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    from svdd.tasks.molecule import WEIGHTS
    record = json.loads((WEIGHTS / "denoiser.json").read_text())["record"]
    assert record["command"].startswith("python -m svdd.tasks.molecule.train denoiser")


def test_cli_sample_writes_smiles_csv(tmp_path):
    from svdd.cli import main
    out = tmp_path / "run"
    rc = main(["sample", "--task", "molecule-qed", "--method", "svdd", "--M", "2", "--num-samples", "4",
               "--task-option", "num_steps=8", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert len(rows) == 4
    for r in rows:
        assert r["smiles"] and canonical(r["smiles"]) == r["smiles"]  # canonical SMILES out, every one valid
        assert float(r["reward_qed"]) == float(r["qed"])  # the guidance reward is RDKit's QED of that molecule
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["task"] == "molecule-qed"


def test_docking_reward_pool_and_cache(tmp_path):
    """The task's docking reward: a real Vina call in a worker process, then a cache hit (no second call), also
    for another token row of the same molecule and for a new reward object reading the same SQLite file."""
    pytest.importorskip("vina", reason="docking needs AutoDock Vina (pip install 'svdd[molecules]')")
    from svdd.tasks.molecule import docking_reward
    x = encode(["NC(=O)c1ccccc1"])  # benzamide: a PARP1 fragment, docks in well under a second
    with docking_reward(workers=1, cache=tmp_path / "dock.sqlite") as reward:
        first = reward(x)
        spaced = torch.zeros_like(x)  # the same molecule spelled with padding in between: same key
        spaced[0, ::2] = x[0, : data.SEQ_LEN // 2]
        again = reward(torch.cat([x, spaced]))
        assert (reward.stats.calls, reward.stats.hits) == (1, 2)
        assert reward.reward.stats.calls == 1  # the worker pool docked once
    assert 3.0 < float(first) < 12.0 and torch.equal(again, first.repeat(2))
    with docking_reward(workers=1, cache=tmp_path / "dock.sqlite") as other:
        assert torch.equal(other(x), first) and other.stats.calls == 0


def test_shipped_value_nets_load_and_take_one_hot_rows(tmp_path):
    """Every shipped SVDD-MC value net: save -> load gives identical outputs, and one-hot rows (what DPS through the
    value net differentiates) give the same values as tokens."""
    import torch.nn.functional as F
    from svdd.io import load_module, save_module
    from svdd.tasks.molecule import REWARDS, WEIGHTS, load_value
    from svdd.tasks.molecule.networks import ValueNet
    shipped = [r for r in REWARDS if (WEIGHTS / f"value_{r}.safetensors").exists()]
    assert "qed" in shipped
    x = encode(["CCO", "c1ccccc1C(=O)N"])
    x[:, 2:9] = len(data.VOCAB)
    t = torch.tensor([0.5, 0.2])
    for r in shipped:
        net = load_value(r)
        save_module(net, tmp_path / r)
        again = load_module(ValueNet, tmp_path / r)
        with torch.no_grad():
            v = net(x, t)
            assert torch.equal(v, again(x, t))
            assert torch.allclose(net(F.one_hot(x, len(data.VOCAB) + 1).float(), t), v, atol=1e-5)
