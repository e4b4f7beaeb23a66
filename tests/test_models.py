"""dlcourse.models: LeNet-5 shapes, the training loop, atomic saves and clear load errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dlcourse import models

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    # These networks are tiny: one thread is fastest, and it stays fast on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    folder = tmp_path / "artifacts"
    monkeypatch.setenv("DLCOURSE_ARTIFACTS", str(folder))
    return folder



def test_lenet5_shapes_and_parameter_count():
    net = models.lenet5()
    x = torch.rand(4, 1, 28, 28)
    assert net(x).shape == (4, 10)
    assert net[:4](x).shape == (4, 6, 14, 14)            # standardize, conv1, relu1, pool1
    assert float(net.standardize(torch.full((1, 1, 28, 28), models.MNIST_MEAN)).abs().max()) < 1e-6
    assert sum(p.numel() for p in net.parameters()) == 61_706


def test_to_tensor_scales_uint8_and_adds_the_channel():
    X = np.full((3, 28, 28), 255, dtype=np.uint8)
    t = models.to_tensor(X)
    assert t.shape == (3, 1, 28, 28) and t.dtype == torch.float32
    assert float(t.max()) == 1.0
    assert models.to_tensor(t).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="must be"):
        models.to_tensor(np.zeros((28, 28)))


def test_fit_returns_one_history_value_per_epoch():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    torch.manual_seed(0)
    net = models.lenet5()
    history = models.fit(net, X, y, X[:16], y[:16], num_epochs=2, batch_size=32, lr=1e-3, progress=False)
    assert list(history) == ["train loss", "val accuracy"]
    assert len(history["train loss"]) == len(history["val accuracy"]) == 2
    assert all(0 <= a <= 1 for a in history["val accuracy"])
    probs = models.predict(net, X[:5])
    assert probs.shape == (5, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_fit_can_memorize_a_few_images():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y = np.arange(20) % 10
    torch.manual_seed(0)
    net = models.lenet5()
    models.fit(net, X, y, X, y, num_epochs=60, batch_size=20, lr=3e-3, lr_decay=False, progress=False)
    assert models.accuracy(net, X, y) == 1.0


def test_artifacts_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("DLCOURSE_ARTIFACTS", raising=False)
    assert models.artifacts_dir() == models.ROOT / "artifacts"
    monkeypatch.setenv("DLCOURSE_ARTIFACTS", str(tmp_path))
    assert models.artifacts_dir() == tmp_path
    with pytest.raises(ValueError, match="plain file name"):
        models.artifact_path("../escape")


def test_save_load_round_trip(artifacts):
    torch.manual_seed(0)
    net = models.lenet5()
    path = models.save(net, "roundtrip")
    assert path == artifacts / "roundtrip.pt"
    assert sorted(p.name for p in artifacts.iterdir()) == ["roundtrip.pt"]   # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask                     # not mkstemp's private 0600
    torch.manual_seed(1)
    other = models.load("roundtrip", models.lenet5())
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x), other(x))
    assert not other.training
    assert set(models.load("roundtrip")) == set(net.state_dict())


def test_interrupted_save_leaves_the_old_file(artifacts, monkeypatch):
    net = models.lenet5()
    models.save(net, "model")
    before = (artifacts / "model.pt").read_bytes()

    def broken_save(obj, fh):
        fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        models.save(models.lenet5(), "model")
    assert (artifacts / "model.pt").read_bytes() == before
    assert sorted(p.name for p in artifacts.iterdir()) == ["model.pt"]


def test_missing_file_gives_a_clear_message(artifacts):
    with pytest.raises(models.ArtifactError, match=r"No saved model 'nothing'.*does not exist.*notebooks/08"):
        models.load("nothing")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04" + b"\0" * 100])
def test_corrupt_file_gives_a_clear_message(artifacts, content):
    artifacts.mkdir()
    (artifacts / "broken.pt").write_bytes(content)
    with pytest.raises(models.ArtifactError, match=r"broken\.pt is damaged.*Delete it") as info:
        models.load("broken", models.lenet5())
    assert info.value.__cause__ is None and info.value.__suppress_context__   # no torch traceback


def test_truncated_file_gives_a_clear_message(artifacts):
    path = models.save(models.lenet5(), "cut")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(models.ArtifactError, match="is damaged"):
        models.load("cut", models.lenet5())


def test_weights_of_another_network_give_a_clear_message(artifacts):
    models.save(torch.nn.Linear(3, 2), "linear")
    with pytest.raises(models.ArtifactError, match="different network"):
        models.load("linear", models.lenet5())


def test_mnist_cnn_loads_the_saved_model(artifacts, capsys):
    torch.manual_seed(3)
    net = models.lenet5()
    models.save(net, models.MNIST_CNN_NAME)
    loaded = models.mnist_cnn(retrain_if_missing=False)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x), loaded(x))
    assert "loaded" in capsys.readouterr().out


def test_mnist_cnn_without_retraining_says_what_to_do(artifacts):
    with pytest.raises(models.ArtifactError, match=r"notebooks/08.*retrain_if_missing=True") as info:
        models.mnist_cnn(retrain_if_missing=False)
    assert info.value.__cause__ is None


def test_mnist_cnn_retrains_when_damaged(artifacts, monkeypatch, capsys):
    artifacts.mkdir()
    (artifacts / f"{models.MNIST_CNN_NAME}.pt").write_bytes(b"garbage")
    calls = []

    def fake_train(progress=True):
        calls.append(progress)
        net = models.lenet5()
        models.save(net, models.MNIST_CNN_NAME)
        return net

    monkeypatch.setattr(models, "train_mnist_cnn", fake_train)
    net = models.mnist_cnn()
    assert calls == [True]
    out = capsys.readouterr().out
    assert "is damaged" in out and "Retraining" in out
    assert models.load(models.MNIST_CNN_NAME, models.lenet5()) is not None
    assert net is not None
