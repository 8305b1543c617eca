"""Folder tasks: a user's FASTA / CSV -> `svdd train prior|oracle|value` -> `svdd sample|compare --prior --oracle`,
every bad file a clear error with nothing written; and the synthetic RNA proxy's pieces against hand-computed values."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from svdd.tasks.folder.data import Alphabet, read_fasta, read_table, split

SVDD = shutil.which("svdd") or str(Path(sys.executable).parent / "svdd")


def cli(*args, cwd=None):
    p = subprocess.run([SVDD, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_alphabet_round_trips_and_names_bad_letters():
    fixed = Alphabet("ACGU", 4)
    x = fixed.encode(["ACGU", "UUGA"])
    assert x.tolist() == [[0, 1, 2, 3], [3, 3, 2, 0]] and fixed.decode(x) == ["ACGU", "UUGA"]
    padded = Alphabet("ACGU", 5, padded=True)
    y = padded.encode(["AC", "GUGUA"])
    assert padded.vocab_size == 5 and y[0].tolist() == [0, 1, 4, 4, 4] and padded.decode(y) == ["AC", "GUGUA"]
    with pytest.raises(ValueError, match=r"seqs.fa: record 'r2' has 'T' at position 3, not in the alphabet 'ACGU'"):
        fixed.encode(["ACGU", "ACTG"], ["r1", "r2"], source="seqs.fa")
    with pytest.raises(ValueError, match=r"record 'r1' has 3 letters; expected 4 \(a fixed-length set\)"):
        fixed.encode(["ACG"], ["r1"])
    with pytest.raises(ValueError, match="alphabet must be distinct printable letters"):
        Alphabet("AAC", 4)


@pytest.mark.parametrize("text, message", [
    ("", "no FASTA records"),
    (">a\nACGU\n>a\nACGU\n", r"record 'a' appears twice \(lines 1 and 3\)"),
    (">a\n>b\nACGU\n", r"record 'a' \(line 1\) has no sequence"),
    ("ACGU\n>a\nACGU\n", "line 1 holds sequence text before the first '>' header"),
])
def test_bad_fasta_files(tmp_path, text, message):
    f = tmp_path / "seqs.fa"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_fasta(f)


def test_fasta_reading_joins_lines_and_upper_cases(tmp_path):
    f = tmp_path / "seqs.fa"
    f.write_text(">one first\nacg\nu\n\n>two\nGG\n")
    assert read_fasta(f) == (["one", "two"], ["ACGU", "GG"])
    (tmp_path / "bin.fa").write_bytes(b"\x00\x01>x")
    with pytest.raises(ValueError, match="is a binary file, not FASTA text"):
        read_fasta(tmp_path / "bin.fa")


@pytest.mark.parametrize("rows, kwargs, message", [
    ("seq,y\nACGU,1\n", {"target": "mrl"}, r"no column\(s\) \['mrl'\]; its columns: \['seq', 'y'\]"),
    ("seq,y\nACGU,1\nACGA,high\n", {}, r"line 3: 'y' is 'high', not a number"),
    ("seq,y\nACGU,1\nACGA,nan\n", {}, r"line 3: 'y' is 'nan', not a finite number"),
    ("seq,y\nACGU,1\n,2\n", {}, r"line 3 has an empty 'seq'"),
    ("seq,y\nACGU,a\nACGA,b\nAAAA,c\n", {"kind": "classification"}, "needs exactly 2 labels in 'y', found 3"),
    ("seq,y,s\nACGU,1,train\nACGA,2,train\n", {"split_column": "s"}, "must mark some rows"),
    ("seq,y\n", {}, "no data rows"),
])
def test_bad_tables(tmp_path, rows, kwargs, message):
    f = tmp_path / "data.csv"
    f.write_text(rows)
    with pytest.raises(ValueError, match=message):
        read_table(f, "seq", kwargs.pop("target", "y"), **kwargs)


def test_too_few_rows_for_a_split():
    with pytest.raises(ValueError, match="5 rows are too few for a held-out fraction of 0.1"):
        split(5, 0.1, 0, source="data.csv")
    tr, ho = split(100, 0.1, 0)
    assert len(ho) == 10 and len(tr) == 90 and not set(tr.tolist()) & set(ho.tolist())


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A user's data: 300 RNA sequences of length 12 (G-rich at the start), and a CSV whose target counts G."""
    d = tmp_path_factory.mktemp("user")
    rng = random.Random(0)
    seqs = ["".join(rng.choice("GGGA" if j < 4 else "ACGU") for j in range(12)) for _ in range(300)]
    (d / "seqs.fa").write_text("".join(f">s{k}\n{s}\n" for k, s in enumerate(seqs)))
    (d / "data.csv").write_text("seq,gc,fold\n" + "".join(
        f"{s},{s.count('G') + 0.1 * rng.random():.3f},{'test' if k % 10 == 0 else 'train'}\n"
        for k, s in enumerate(seqs)))
    return d


@pytest.fixture(scope="module")
def trained(user_files):
    d = user_files
    rc, out, err = cli("train", "prior", "--fasta", d / "seqs.fa", "--alphabet", "acgu", "--minutes", "0.1",
                       "--num-steps", 12, "--out", d / "prior", "--quiet")
    assert rc == 0, err
    assert "held-out NELBO" in out
    for seed, col in ((0, "--split-column"), (1, None)):
        extra = [col, "fold"] if col else []
        rc, out, err = cli("train", "oracle", "--csv", d / "data.csv", "--sequence-column", "seq", "--target", "gc",
                           "--prior", d / "prior", "--epochs", 15, "--seed", seed, *extra,
                           "--out", d / f"oracle{seed}", "--quiet")
        assert rc == 0, err
    rc, out, err = cli("train", "value", "--prior", d / "prior", "--oracle", d / "oracle0", "--rollouts", 64,
                       "--epochs", 3, "--out", d / "value", "--quiet")
    assert rc == 0, err
    return d


def test_three_commands_write_complete_folders(trained):
    d = trained
    prior = json.loads((d / "prior" / "svdd.json").read_text())
    assert prior["kind"] == "prior" and prior["alphabet"] == {"letters": "ACGU", "length": 12, "padded": False}
    rec = json.loads((d / "prior" / "prior.json").read_text())["record"]
    assert rec["val_nelbo_nats_per_seq"] < rec["val_nelbo_uniform_nats_per_seq"]  # it learned something
    assert rec["sample_kmers"]["1mer_corr_samples_vs_heldout"] > 0.9  # the G-rich start shows in the samples
    assert "svdd train prior" in rec["command"] and not (d / "prior" / "checkpoint.safetensors").exists()
    oracle = json.loads((d / "oracle0" / "svdd.json").read_text())
    assert oracle["heldout"]["spearman"] > 0.8 and oracle["target"] == "gc"
    assert json.loads((d / "oracle0" / "oracle.json").read_text())["record"]["data"].endswith(
        "(rows marked held out in 'fold')")
    value = json.loads((d / "value" / "value.json").read_text())["record"]
    assert len(value["val_corr_by_time"]) >= 3


def test_folder_round_trip_gives_identical_outputs(trained):
    from svdd.tasks.folder import FolderTask
    a, b = (FolderTask(trained / "prior", trained / "oracle0", value=trained / "value")() for _ in range(2))
    x = torch.randint(0, 5, (6, 12))
    assert torch.equal(a.model.network(x), b.model.network(x)) and torch.equal(a.reward(x % 4), b.reward(x % 4))
    assert torch.equal(a.value_net(x, torch.full((6,), 0.5)), b.value_net(x, torch.full((6,), 0.5)))
    assert a.config == b.config and a.config["weights"]["denoiser"] is not None


def test_sample_and_compare_on_the_folders(trained, tmp_path):
    d = trained
    folders = ["--prior", d / "prior", "--oracle", d / "oracle0", "--eval-oracle", d / "oracle1", "--value", d / "value"]
    rc, out, err = cli("sample", *folders, "--method", "svdd", "--set", "value=task", "--num-samples", 16,
                       "--out", tmp_path / "s", "--quiet")
    assert rc == 0, err
    csv = (tmp_path / "s" / "samples.csv").read_text().splitlines()
    assert len(csv) == 17 and csv[0].startswith("name,sequence,gc (oracle0),gc (evaluation: oracle1)")
    assert all(set(line.split(",")[1]) <= set("ACGU") for line in csv[1:])
    rc, out, err = cli("compare", *folders, "--methods", "pretrained,svdd-pm,svdd-mc", "--num-samples", 16,
                       "--seeds", 0, "--out", tmp_path / "c", "--quiet")
    assert rc == 0, err
    table = (tmp_path / "c" / "table.md").read_text()
    assert "svdd-mc" in table and "svdd-pm" in table
    summary = {r["method"]: r for r in json.loads((tmp_path / "c" / "summary.json").read_text())["summary"]}
    assert summary["svdd-pm"]["reward_median"] > summary["pretrained"]["reward_median"]


@pytest.mark.parametrize("args, message", [
    (["sample", "--prior", "{d}/prior"], "a folder task needs both --prior DIR and --oracle DIR"),
    (["sample", "--prior", "{d}/nowhere", "--oracle", "{d}/oracle0"], r"nowhere: no svdd prior folder here"),
    (["sample", "--prior", "{d}/oracle0", "--oracle", "{d}/oracle0"], "is a .oracle. folder, not a .prior. folder"),
    (["sample", "--task", "toy-motif", "--prior", "{d}/prior", "--oracle", "{d}/oracle0"], "name two tasks"),
    (["train", "prior", "--fasta", "{d}/seqs.fa", "--alphabet", "ACG"], "has 'U' at position"),
    (["train", "oracle", "--csv", "{d}/data.csv", "--sequence-column", "sequence", "--target", "gc", "--alphabet",
      "ACGU"], r"no column\(s\) \['sequence'\]"),
    (["train", "oracle", "--csv", "{d}/data.csv", "--sequence-column", "seq", "--target", "gc"],
     "needs --alphabet LETTERS"),
])
def test_bad_input_writes_nothing(trained, tmp_path, args, message):
    import re
    out = tmp_path / "new"
    rc, _, err = cli(*[a.format(d=trained) for a in args], "--out", out, "--quiet")
    assert rc == 2 and re.search(message, err), err
    assert not out.exists()


def test_an_existing_folder_needs_overwrite(trained):
    rc, _, err = cli("train", "oracle", "--csv", trained / "data.csv", "--sequence-column", "seq", "--target", "gc",
                     "--alphabet", "ACGU", "--out", trained / "prior", "--quiet")
    assert rc == 2 and "is not empty: pass --overwrite" in err
    rc, _, err = cli("train", "oracle", "--csv", trained / "data.csv", "--sequence-column", "seq", "--target", "gc",
                     "--alphabet", "ACGU", "--out", trained / "prior", "--overwrite", "--quiet")
    assert rc == 2 and "holds no svdd oracle folder" in err
    assert (trained / "prior" / "svdd.json").exists()


def test_rna_proxy_pieces_by_hand():
    from svdd.tasks.rna_utr.proxy import PROXY_A, closed, in_frame, kozak, mfe, uaugs
    s = "GAUGAAUGCUAA"  # AUGs at 1 and 5; length 12
    assert uaugs(s) == [1, 5]
    assert not in_frame(s, 1) and not in_frame(s, 5) and in_frame("AUGCCC", 0)
    assert closed("AUGUAAC", 0) and not closed("AUGCUAA", 0)  # UAA in frame at 3; UAA at 4 is out of frame
    assert kozak("UUUUGCCACC") == pytest.approx(2.0) and kozak("UUUUUUUUUU") == 0.0
    assert kozak("UUUUUUUAUU") == pytest.approx(1.0)  # only the purine at -3
    pytest.importorskip("RNA", reason="the RNA proxy's folding energy needs ViennaRNA (pip install viennarna)")
    assert mfe("GGGGAAAACCCC") == pytest.approx(-5.4, abs=0.01)  # a 4-bp GC stem with a GAAA loop (Turner 2004)
    assert mfe("AAAAAAAAAA") == 0.0
    # proxy A by hand: one open out-of-frame uAUG, a purine at -3 (Kozak 1), no structure -> 6 - 1.5 + 0.5 = 5
    u = "AAAAAUGAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert len(u) == 50 and uaugs(u) == [4] and not in_frame(u, 4) and not closed(u, 4) and kozak(u) == 1.0
    assert mfe(u) == 0.0 and PROXY_A(u) == pytest.approx(5.0)
