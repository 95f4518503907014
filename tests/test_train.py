"""The training command end to end on the real CIFAR-10 copy beside the repository."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import cli, train

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar-10-batches-py")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason="CIFAR-10 copy not present")


def config(out, **overrides):
    base = {"data": DATA, "model": "lenet5", "epochs": 2, "batch_size": 100, "lr": 0.05,
            "momentum": 0.9, "weight_decay": 5e-4, "label_smoothing": 0.0, "threads": 2,
            "seed": 3, "out": str(out), "resume": False, "val_size": 200, "subset": 1200,
            "tta": False}
    base.update(overrides)
    return base


def quiet(message):
    pass


class Interrupted(Exception):
    pass


def stop_after_first_epoch(message):
    if message.startswith("epoch 1/"):
        raise Interrupted


@needs_data
def test_one_epoch_on_a_subset_learns(tmp_path):
    result = train.train(config(tmp_path, model="fastnet", epochs=1, batch_size=50, lr=0.05,
                                subset=5000, val_size=1000, label_smoothing=0.2), log=quiet)
    history = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert len(history) == 1
    assert history[0]["val_accuracy"] > 0.25, history  # chance is 0.10
    assert result["test_accuracy"] > 0.25
    assert (tmp_path / "curves.png").stat().st_size > 0


@needs_data
def test_val_size_0_trains_on_every_image_without_validation(tmp_path):
    train.train(config(tmp_path, epochs=1, val_size=0), log=quiet)
    saved = fastconv.load(str(tmp_path / "checkpoint.npz"))
    row = saved["history"][0]
    assert "val_loss" not in row and "val_accuracy" not in row
    assert row["train_loss"] > 0 and (tmp_path / "curves.png").stat().st_size > 0
    images = train.prepare_data(DATA, 0, 1200, 3)["train"][0]
    assert len(images) == 1200
    np.testing.assert_allclose(saved["mean"], fastconv.data.channel_stats(images)[0])


@needs_data
def test_resume_continues_bit_for_bit(tmp_path):
    train.train(config(tmp_path / "straight"), log=quiet)
    with pytest.raises(Interrupted):
        train.train(config(tmp_path / "resumed"), log=stop_after_first_epoch)
    train.train(config(tmp_path / "resumed", resume=True), log=quiet)
    expected = fastconv.load(str(tmp_path / "straight" / "checkpoint.npz"))
    resumed = fastconv.load(str(tmp_path / "resumed" / "checkpoint.npz"))
    assert resumed["epoch"] == expected["epoch"] == 1
    for key, value in expected["model"].items():
        np.testing.assert_array_equal(resumed["model"][key], value, err_msg=key)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert resumed["history"][1][key] == expected["history"][1][key]
    lines = open(tmp_path / "resumed" / "metrics.jsonl").read().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_refuses_a_checkpoint_with_one_optimizer(tmp_path):
    fastconv.save({"optimizer": {}, "config": {}}, str(tmp_path / "checkpoint.npz"))
    with pytest.raises(ValueError, match="older fastconv"):
        train.train(config(tmp_path, resume=True), log=quiet)


@needs_data
def test_failure_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = fastconv.save
    calls = []

    def failing_save(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(obj, path)
    monkeypatch.setattr(fastconv, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train.train(config(tmp_path), log=quiet)
    saved = fastconv.load(str(tmp_path / "checkpoint.npz"))
    assert saved["epoch"] == 0
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "metrics.jsonl"]


@needs_data
def test_evaluate_reports_per_class_accuracy_and_confusion(tmp_path):
    train.train(config(tmp_path, epochs=1), log=quiet)
    result = train.evaluate(DATA, str(tmp_path / "checkpoint.npz"), tta=True)
    confusion = result["confusion"]
    assert confusion.shape == (10, 10) and confusion.sum() == 10000
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / 10000)
    np.testing.assert_allclose(result["per_class"], confusion.diagonal() / confusion.sum(axis=1))


@needs_data
@pytest.mark.parametrize("recipe", [None, "airbench-muon"])
def test_airnet_resumes_bit_for_bit_through_the_command_line(tmp_path, monkeypatch, recipe):
    # The whitening bias freezes after epoch 1, so the resumed epochs skip the stem.
    monkeypatch.setitem(train.RECIPES, "airnet", {**train.RECIPES["airnet"], "whiten_epochs": 1})
    monkeypatch.setitem(train.NAMED_RECIPES, "airbench-muon",
                        {**train.NAMED_RECIPES["airbench-muon"], "whiten_epochs": 1})
    def run(out, *extra):
        argv = ["train", "--data", DATA, "--model", "airnet", "--epochs", "3",
                "--batch-size", "100", "--lr", "0.2", "--threads", "2", "--seed", "5",
                "--subset", "900", "--val-size", "100", "--out", str(out), *extra]
        if recipe:
            argv += ["--recipe", recipe]
        assert cli.main(argv) == 0
    run(tmp_path / "straight")
    real_save, saves = fastconv.save, []

    def killed_in_epoch_2(obj, path):
        saves.append(path)
        if len(saves) == 2:
            raise Interrupted
        real_save(obj, path)
    monkeypatch.setattr(fastconv, "save", killed_in_epoch_2)
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed")
    monkeypatch.setattr(fastconv, "save", real_save)
    run(tmp_path / "resumed", "--resume")
    expected = fastconv.load(str(tmp_path / "straight" / "checkpoint.npz"))
    resumed = fastconv.load(str(tmp_path / "resumed" / "checkpoint.npz"))
    assert expected["config"]["whiten_epochs"] == 1
    assert expected["config"]["lookahead"] == (recipe is None)
    assert (expected["config"]["muon"] is None) == (recipe is None)
    assert expected["epoch"] == resumed["epoch"] == 2
    for part in ("model", "lookahead"):
        assert expected[part].keys() == resumed[part].keys()
        for key, value in expected[part].items():
            np.testing.assert_array_equal(resumed[part][key], value, err_msg=f"{part} {key}")
    for field in ("train_loss", "val_loss", "val_accuracy"):
        assert [row[field] for row in resumed["history"]] == [
            row[field] for row in expected["history"]]


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/no/such/dir", "--epochs", "1"], "does not exist"),
    (["train", "--data", DATA, "--model", "resnet9000"], "unknown model"),
    (["evaluate", "--data", DATA, "--checkpoint", "/no/such/file.npz"], "does not exist"),
    (["summary", "--model", "nope"], "unknown model"),
], ids=["missing-data", "unknown-model", "missing-checkpoint", "summary-unknown-model"])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_whitening_recipe_on_a_model_without_the_stem_fails_before_loading(tmp_path, capsys,
                                                                              monkeypatch):
    def no_loading(*args):
        raise AssertionError("the data was loaded first")
    monkeypatch.setattr(train, "prepare_data", no_loading)
    argv = ["train", "--data", str(tmp_path), "--model", "lenet5", "--recipe", "airbench-muon",
            "--subset", "500", "--val-size", "100", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--recipe airbench-muon trains a whitening stem, which lenet5 lacks" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "--epochs", "-1"], ["train", "--batch-size", "0"],
                                  ["train", "--lr", "-0.1"]],
                         ids=["negative-epochs", "zero-batch", "negative-lr"])
def test_bad_numbers_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_closed_output_pipe_ends_quietly():
    # As `fastconv summary ... | head -1` when head has gone: no traceback.
    # cwd: `python -m` puts the working directory first on sys.path, so it must be where
    # the package under test lives, not a source checkout without its compiled kernels.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    process = subprocess.Popen([sys.executable, "-m", "fastconv", "summary", "--model", "lenet5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=package_root)
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait() == 141 and error == ""
