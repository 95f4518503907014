"""fastconv.save / fastconv.load: round trips, damaged files, atomic writes."""
import os
from collections import OrderedDict

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.optim as optim
from fastconv.optim import lr_scheduler


def model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
        np.testing.assert_array_equal(a[key], b[key])


def test_model_state_dict_round_trip(tmp_path):
    fastconv.manual_seed(0)
    source = model()
    source(np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32))
    path = tmp_path / "model.npz"
    fastconv.save(source.state_dict(), path)
    loaded = fastconv.load(path)
    assert isinstance(loaded, OrderedDict)
    assert_same_state(loaded, source.state_dict())
    target = model()
    target.load_state_dict(loaded)
    assert_same_state(target.state_dict(), source.state_dict())
    with np.load(path) as raw:  # an ordinary .npz, readable without fastconv
        np.testing.assert_array_equal(raw["0.weight"], source[0].weight.data)


def test_optimizer_and_scheduler_state_round_trip(tmp_path):
    params = list(model().parameters())
    optimizer = optim.Adam(params, lr=0.01, amsgrad=True)
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    for param in params:
        param.grad = np.ones_like(param.data)
    optimizer.step()
    scheduler.step()
    checkpoint = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  "epoch": 3, "note": None, "metrics": [0.5, (1, 2.5)]}
    fastconv.save(checkpoint, tmp_path / "checkpoint.npz")
    loaded = fastconv.load(tmp_path / "checkpoint.npz")
    assert loaded["epoch"] == 3 and loaded["note"] is None
    assert loaded["metrics"] == [0.5, (1, 2.5)]
    saved_state = checkpoint["optimizer"]["state"]
    assert list(loaded["optimizer"]["state"]) == list(saved_state)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][2]["exp_avg"],
                                  saved_state[2]["exp_avg"])
    assert loaded["optimizer"]["param_groups"] == checkpoint["optimizer"]["param_groups"]
    assert loaded["scheduler"] == checkpoint["scheduler"]
    fresh = optim.Adam(params, lr=0.01, amsgrad=True)
    fresh.load_state_dict(loaded["optimizer"])
    assert fresh.param_groups[0]["betas"] == optimizer.param_groups[0]["betas"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_file_raises_clearly_and_model_is_unchanged(tmp_path, damage):
    path = tmp_path / "model.npz"
    fastconv.save(model().state_dict(), path)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        middle = len(data) // 3
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    elif damage == "garbage":
        data = b"not a checkpoint at all" * 10
    else:
        data = b""
    path.write_bytes(data)
    target = model()
    before = target.state_dict()
    with pytest.raises(ValueError, match="model.npz"):
        target.load_state_dict(fastconv.load(path))
    assert_same_state(target.state_dict(), before)


def test_mismatched_file_leaves_model_unchanged(tmp_path):
    path = tmp_path / "other.npz"
    other = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(),
                          nn.Linear(5 * 4 * 4, 3))
    fastconv.save(other.state_dict(), path)
    target = model()
    before = target.state_dict()
    with pytest.raises(ValueError, match='size mismatch for "0.weight"'):
        target.load_state_dict(fastconv.load(path))
    assert_same_state(target.state_dict(), before)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        fastconv.load("/nonexistent/model.npz")


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    first = model().state_dict()
    fastconv.save(first, path)
    original = path.read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"partial data")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        fastconv.save(model().state_dict(), path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    assert_same_state(fastconv.load(path), first)


def test_unsaveable_values_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        fastconv.save({"bad": np.array([object()])}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="cannot save"):
        fastconv.save({"bad": {1, 2}}, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_plain_npz_of_a_pytorch_state_dict_loads(tmp_path):
    """np.savez(path, **{k: v.numpy() for k, v in torch_model.state_dict().items()})."""
    target = model()
    exported = OrderedDict((key, np.full(value.shape, 0.5, value.dtype))
                           for key, value in target.state_dict().items())
    np.savez(tmp_path / "torch.npz", **exported)
    loaded = fastconv.load(tmp_path / "torch.npz")
    assert list(loaded) == list(exported)
    target.load_state_dict(loaded)
    np.testing.assert_array_equal(target[4].bias.data, 0.5)
