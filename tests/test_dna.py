"""The DNA task on real data: loader, FASTA, shipped networks, a short real run of the CLI."""

import json

import pytest
import torch

from svdd.tasks.dna.data import CELL_TYPES, decode, encode, load_dhs, read_fasta, write_fasta


@pytest.fixture(scope="module")
def dhs():
    return load_dhs()


def test_loader_counts_and_provenance(dhs):
    counts = dhs.provenance["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 47872
    assert sum(c["HepG2"] for c in counts.values()) == 11968
    assert set(dhs.chroms["validation"]) == {"chr1"} and set(dhs.chroms["test"]) == {"chr2"}
    assert "chr1" not in dhs.chroms["train"] and "chr2" not in dhs.chroms["train"]
    for split in ("train", "validation", "test"):
        x = dhs.tokens[split]
        assert x.shape[1] == 200 and x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) <= 3
        assert dhs.labels[split].shape[0] == x.shape[0]
    assert CELL_TYPES[0] == "HepG2" and dhs.hepg2("test").shape[0] == counts["test"]["HepG2"]
    assert "dnadiffusion" in dhs.provenance["source"]


def test_fasta_round_trip(tmp_path, dhs):
    x = dhs.tokens["test"][:5]
    path = tmp_path / "s.fasta"
    write_fasta(path, x, rewards={"guidance": torch.arange(5.0)})
    text = path.read_text()
    assert text.startswith(">seq0 guidance=0\n") and "guidance=4" in text
    names, y = read_fasta(path)
    assert names == [f"seq{k}" for k in range(5)] and torch.equal(x, y)
    assert decode(encode(["acgt" * 50]))[0] == "ACGT" * 50


@pytest.mark.parametrize("content,match", [
    (">a\n" + "ACGN" * 50 + "\n", r"sequence 'a' contains characters \['N'\]"),
    (">a\n" + "ACGT" * 50 + "\n>b\n" + "ACGT" * 49 + "\n", "sequence 'b' has length 196; expected 200"),
    ("", "no FASTA records found"),
    ("ACGT\n>a\nACGT\n", "sequence data before the first '>' header")])
def test_bad_fasta(tmp_path, content, match):
    path = tmp_path / "bad.fasta"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_fasta(path)


def test_encode_errors():
    with pytest.raises(ValueError, match="no sequences given"):
        encode([])
    with pytest.raises(ValueError, match=r"sequence '#1' has length 3"):
        encode(["A" * 200, "ACG"])


@pytest.fixture(scope="module")
def spec():
    from svdd.tasks.dna import build_spec
    return build_spec(num_steps=8)


def test_shipped_networks_contracts(spec, dhs):
    x = dhs.tokens["test"][:16]
    r = spec.reward(x)
    assert r.shape == (16,) and r.dtype == torch.float32 and torch.isfinite(r).all()
    assert spec.eval_reward(x).shape == (16,)
    soft = torch.nn.functional.one_hot(x, 4).float()
    assert torch.allclose(spec.reward(soft), r, atol=1e-5)  # probability input = token input at one-hot
    logits = spec.model.network(x, torch.full((16,), 0.5))
    assert logits.shape == (16, 200, 4)
    assert spec.value_net is not None  # the task ships its SVDD-MC value net
    v = spec.value_net(torch.full((16, 200), 4), torch.ones(16))
    assert v.shape == (16,) and torch.isfinite(v).all()


def test_oracles_separate_hepg2_on_chr2(spec, dhs):
    from svdd.tasks.dna.metrics import auroc
    x, y = dhs.tokens["test"], dhs.labels["test"]
    with torch.no_grad():
        for reward in (spec.reward, spec.eval_reward):
            s = torch.cat([reward(x[a:a + 512]) for a in range(0, x.shape[0], 512)])
            assert auroc(s, y == 0) > 0.8


def test_weights_save_load_round_trip(tmp_path, spec):
    from svdd.io import load_module, save_module
    from svdd.tasks.dna.networks import ConvOracle
    net = spec.reward.net
    save_module(net, tmp_path / "o", {"note": "copy"})
    back = load_module(ConvOracle, tmp_path / "o")
    x = torch.randint(0, 4, (8, 200))
    assert torch.equal(net(x), back(x))
    assert json.loads((tmp_path / "o.json").read_text())["record"] == {"note": "copy"}
    with pytest.raises(FileNotFoundError, match="not found"):
        load_module(ConvOracle, tmp_path / "missing")


def test_svdd_sample_real_run(tmp_path):
    from svdd.cli import main
    out = tmp_path / "run"
    assert main(["sample", "--task", "dna-enhancer", "--method", "svdd", "--M", "2", "--num-samples", "4",
                 "--set", "select_window=(0, 4)", "--quiet", "--out", str(out)]) == 0
    names, x = read_fasta(out / "samples.fasta")
    assert x.shape == (4, 200)
    header = (out / "samples.fasta").read_text().splitlines()[0]
    assert "hepg2-guidance=" in header and "hepg2-evaluation=" in header
    assert (out / "samples.csv").read_text().startswith("name,sequence,hepg2-guidance,hepg2-evaluation")
