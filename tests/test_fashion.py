"""The Fashion-MNIST image tasks on real data: loader, shipped networks, Fréchet distance, a real CLI run."""

import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="image support needs the optional dependencies: pip install 'svdd[images]'")

import svdd  # noqa: E402
from svdd.cli import main  # noqa: E402
from svdd.rewards import JPEGCompressibility  # noqa: E402
from svdd.tasks import fashion  # noqa: E402
from svdd.tasks.fashion.data import load_split  # noqa: E402


@pytest.fixture(scope="module")
def test_split():
    return load_split("test")


def test_loader_counts_shape_range_and_padding(test_split):
    x, y = test_split
    assert x.shape == (10000, 1, 32, 32) and y.shape == (10000,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert bool((x[:, :, :2] == -1).all()) and bool((x[:, :, :, -2:] == -1).all())  # padded with background
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))
    xt, yt = load_split("train")
    assert xt.shape[0] == 60000 and torch.equal(torch.bincount(yt), torch.full((10,), 6000))


def test_missing_data_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("SVDD_FASHION_MNIST", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_split("test")
    with pytest.raises(ValueError, match="'valid'"):
        load_split("valid")


def test_class_names_and_indices():
    assert fashion.parse_class("Ankle boot") == 9 and fashion.parse_class(" sneaker ") == 7
    assert fashion.parse_class(3) == 3 and fashion.parse_class("0") == 0
    with pytest.raises(ValueError, match="'boots'.*9=Ankle boot"):
        fashion.parse_class("boots")
    with pytest.raises(ValueError, match="10"):
        fashion.parse_class(10)


def test_shipped_classifiers_reach_their_recorded_test_accuracy(test_split):
    from svdd.io import read_record
    from svdd.tasks.fashion.train import accuracy
    nets = fashion.load_networks()
    x, y = test_split
    for key, stem in (("classifier", "classifier_reward"), ("evaluator", "classifier_eval")):
        acc = accuracy(nets[key], x, y)
        assert acc > 0.88 and abs(acc - read_record(fashion.WEIGHTS / stem)["test_accuracy"]) < 2e-3


def test_frechet_distance_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov = a @ a.T + torch.eye(5, dtype=torch.float64)
    mu = torch.randn(5, generator=g, dtype=torch.float64)
    assert abs(fashion.frechet_distance(mu, cov, mu, cov)) < 1e-9
    d1, d2 = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64)
    m1, m2 = torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    # diagonal covariances: ‖μ1 − μ2‖² + Σ (√a − √b)² = 5 + (1 + 1 + 4)
    assert abs(fashion.frechet_distance(m1, torch.diag(d1), m2, torch.diag(d2)) - 11.0) < 1e-9


def test_shipped_ddpm_samples_look_like_the_data(test_split):
    model = fashion.load_model(num_steps=25)
    res = svdd.sample(model, JPEGCompressibility(), "pretrained", num_samples=48, seed=0)
    x = res.samples
    assert x.shape == (48, 1, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
    fd_model = fashion.fd_to_test(x)
    fd_real = fashion.fd_to_test(fashion.test_images(48, 0))
    fd_noise = fashion.fd_to_test(torch.rand(48, 1, 32, 32) * 2 - 1)
    # at 48 samples FD is dominated by its small-sample bias: the model must sit at the level of real test images
    assert fd_model < 1.5 * fd_real and fd_noise > 5 * fd_model
    with torch.no_grad():
        classes = fashion.load_networks()["evaluator"](x).argmax(1)
    assert len(set(classes.tolist())) >= 7  # the unconditional model covers the classes


def test_test_feature_stats_are_computed_once_per_machine(monkeypatch, tmp_path):
    """Kept in the cache folder: a second process reads them (no features computed), a damaged file is recomputed."""
    monkeypatch.setenv("SVDD_CACHE", str(tmp_path))
    monkeypatch.delitem(fashion._CACHE, "test_stats_7", raising=False)
    mean, cov = fashion.test_feature_stats(7)  # the 1,000 test sneakers
    (stored,) = tmp_path.glob("fashion-test-features-*.safetensors")
    computed = fashion._features

    def refuse(x):
        raise AssertionError("features computed again")

    monkeypatch.setattr(fashion, "_features", refuse)
    fashion._CACHE.pop("test_stats_7")  # a new process
    again = fashion.test_feature_stats(7)
    assert torch.equal(again[0], mean) and torch.equal(again[1], cov)
    stored.write_bytes(stored.read_bytes()[:50])  # torn
    monkeypatch.setattr(fashion, "_features", computed)
    fashion._CACHE.pop("test_stats_7")
    assert torch.equal(fashion.test_feature_stats(7)[1], cov)
    from svdd.io import load_tensors
    assert torch.equal(load_tensors(stored)["cov"], cov)  # written again whole


def test_value_nets_load_and_pick_the_class():
    nets = fashion.load_networks()
    x, t = torch.zeros(3, 1, 32, 32), torch.full((3,), 0.5)
    assert nets["value_compress"](x, t).shape == (3,)
    full = nets["value_class"](x, t)
    assert full.shape == (3, 10)
    assert torch.equal(fashion.ClassValue(nets["value_class"], 4)(x, t), full[:, 4])
    rec = json.loads((fashion.WEIGHTS / "value_comparison.json").read_text())
    assert set(rec) == {"compress", "class"} and set(rec["compress"]) == {"data", "rollouts"}


def test_cli_sample_writes_pngs_whose_jpeg_size_is_the_reward(tmp_path):
    from PIL import Image
    from svdd.rewards.image import jpeg_bytes
    out = tmp_path / "run"
    rc = main(["sample", "--task", "fashion-compress", "--method", "svdd", "--M", "3", "--num-samples", "4",
               "--task-option", "num_steps=6", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "rewards.csv")))
    assert len(rows) == 4 and (out / "grid.png").exists()
    for row in rows:
        img = np.array(Image.open(out / row["file"]))[..., None]
        assert abs(-jpeg_bytes(img, 95) / 1000 - float(row["jpeg-compressibility"])) < 1e-9


def test_cli_class_task_option_and_bad_class(tmp_path, capsys):
    out = tmp_path / "cls"
    rc = main(["sample", "--task", "fashion-class", "--class", "trouser", "--method", "svdd", "--M", "2",
               "--num-samples", "2", "--task-option", "num_steps=4", "--out", str(out), "--quiet"])
    assert rc == 0
    header = open(out / "rewards.csv").readline()
    assert "log p(Trouser)" in header and "held-out log p(Trouser)" in header
    rc = main(["sample", "--task", "fashion-class", "--class", "hat", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and "unknown Fashion-MNIST class 'hat'" in capsys.readouterr().err
    rc = main(["sample", "--task", "fashion-compress", "--task-option", "colour=red", "--out", str(tmp_path / "y")])
    assert rc == 2 and "colour" in capsys.readouterr().err
    if not torch.cuda.is_available():
        rc = main(["sample", "--task", "fashion-compress", "--device", "cuda", "--out", str(tmp_path / "z")])
        assert rc == 2 and "no CUDA device" in capsys.readouterr().err
