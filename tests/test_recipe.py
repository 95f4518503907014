"""The airbench recipe's pieces: whitening stem, lookahead, alternating flip, flip-translate TTA."""
import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
from fastconv import cli, models, train

rng = np.random.default_rng(7)


def test_whitening_makes_the_patch_second_moments_the_identity():
    images = rng.standard_normal((40, 3, 9, 9)) * [[[2.0]], [[0.5]], [[1.0]]] + 0.3
    images[:, 1] += 0.8 * images[:, 0]                 # correlated channels
    conv = nn.Conv2d(3, 24, 2).to(np.float64)
    models.init_whitening(conv, images, eps=0.0)
    conv.bias.data[:] = 0
    out = conv(images)
    assert out.shape == (40, 24, 8, 8)
    features = out.transpose(1, 0, 2, 3).reshape(24, -1)
    moments = features @ features.T / features.shape[1]
    np.testing.assert_allclose(moments[:12, :12], np.eye(12), atol=1e-9)
    np.testing.assert_allclose(features[12:], -features[:12])


def test_whitening_checks_the_filter_count():
    with pytest.raises(ValueError, match="needs 24 filters, got 16"):
        models.init_whitening(nn.Conv2d(3, 16, 2), np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="needs a 2-D convolution, got ReLU"):
        models.check_whitening(nn.ReLU())


def test_airnet_shapes_and_frozen_parameters():
    model = models.build("airnet")
    out = model(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert out.shape == (2, 10)
    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    assert frozen == ["0.weight"] + [f"{i}.weight" for i in (4, 7, 11, 14, 18, 21)]


def test_lookahead_follows_its_schedule_and_ends_on_the_slow_weights():
    model = nn.Sequential(nn.Linear(2, 2))
    lookahead = train._Lookahead(model, total_steps=10)
    start = model[0].weight.data.copy()
    model[0].weight.data += 1.0
    lookahead.after_step(model, 4)                     # not a multiple of 5: nothing
    np.testing.assert_array_equal(model[0].weight.data, start + 1)
    lookahead.after_step(model, 5)
    decay = 0.95 ** 5 * 0.5 ** 3
    np.testing.assert_allclose(model[0].weight.data, start + (1 - decay), rtol=1e-6)
    model[0].weight.data += 1.0
    lookahead.after_step(model, 10)                    # the last step: take the slow copy
    np.testing.assert_allclose(model[0].weight.data, start + (1 - decay), rtol=1e-6)


def test_alternating_flip_mirrors_every_image_between_epochs():
    images = rng.integers(0, 256, (64, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    config = {**train.RECIPES["airnet"], "batch_size": 16, "seed": 1}
    even, odd = train._loaders(images, labels, np.zeros(3), np.ones(3), config)
    np.testing.assert_array_equal(odd.images, even.images[:, :, :, ::-1])
    mirrored = np.all(even.images == images[:, :, :, ::-1], axis=(1, 2, 3))
    assert 16 < mirrored.sum() < 48                    # about half, by the seed
    assert np.all(mirrored | np.all(even.images == images, axis=(1, 2, 3)))


class Linear(nn.Module):
    """A linear model of the whole image, so averaging outputs is averaging inputs."""

    def __init__(self):
        super().__init__()
        self.weight = rng.standard_normal((3, 3 * 6 * 6))

    def forward(self, x):
        return x.reshape(len(x), -1) @ self.weight.T


def test_flip_translate_tta_averages_mirrors_and_diagonal_shifts():
    images = rng.integers(0, 256, (5, 3, 6, 6), dtype=np.uint8)
    mean, std = np.full(3, 100.0), np.full(3, 50.0)
    model = Linear()
    x = (images - mean[:, None, None]) / std[:, None, None]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    shifts = [padded[:, :, t:t + 6, l:l + 6] for t, l in ((0, 0), (2, 2))]

    def mirrored(batch):
        return (batch + batch[:, :, :, ::-1]) / 2
    expected = model(mirrored(x) / 2 + sum(mirrored(s) for s in shifts) / 4)
    np.testing.assert_allclose(train.predict(model, images, mean, std, "flip-translate"),
                               expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train.predict(model, images, mean, std, "flip"),
                               model(mirrored(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train.predict(model, images, mean, std), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv, tta", [([], None), (["--tta"], "flip"),
                                       (["--tta", "flip-translate"], "flip-translate")])
def test_tta_option(argv, tta):
    assert cli.build_parser().parse_args(["evaluate", "--checkpoint", "c", *argv]).tta == tta


def test_unknown_tta_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--tta", "rotate"])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_every_model_has_a_recipe():
    assert set(train.RECIPES) == set(models.MODELS)


def test_the_muon_recipe_gives_the_filters_to_muon_and_the_rest_to_sgd():
    model = models.build("airnet")
    config = train.NAMED_RECIPES["airbench-muon"]
    sgd, muon = train._optimizers(model, config)
    filters = [layer.weight for layer in model if isinstance(layer, nn.Conv2d)]
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(p) for p in filters[1:]]
    assert muon.param_groups[0]["lr"] == 0.24 and muon.param_groups[0]["momentum"] == 0.6
    head, vectors = sgd.param_groups
    assert [id(p) for p in head["params"] if p.requires_grad] == [id(model[-2].weight)]
    assert head["lr"] == config["lr"] and vectors["lr"] == 64 * config["lr"]
    assert any(p is model[0].bias for p in vectors["params"])          # the whitening bias
    assert all(p.ndim == 1 for p in vectors["params"])
