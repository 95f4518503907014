"""fastconv.summary: parameter counts, FLOPs and receptive fields worked out by hand."""
import fastconv
import fastconv.nn as nn


def lenet5():
    """LeNet-5 adapted to 3x32x32 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def test_lenet5_by_hand():
    model = lenet5()
    result = fastconv.summary(model, (3, 32, 32))
    rows = {row.name: row for row in result.rows}
    # Parameters: weights + biases.
    assert rows["0"].params == 6 * 3 * 25 + 6 == 456
    assert rows["3"].params == 16 * 6 * 25 + 16 == 2416
    assert [rows[k].params for k in ("7", "9", "11")] == [48120, 10164, 850]
    assert result.total_params == 62006
    # Shapes.
    assert rows["0"].output_shape == (1, 6, 28, 28)
    assert rows["5"].output_shape == (1, 16, 5, 5)
    assert rows["6"].output_shape == (1, 400)
    # FLOPs: 2 per multiply-add, 1 per bias add; pooling one per window element.
    assert rows["0"].flops == 6 * 28 * 28 * (2 * 3 * 25 + 1) == 710304
    assert rows["1"].flops == 6 * 28 * 28
    assert rows["2"].flops == 6 * 14 * 14 * 4
    assert rows["3"].flops == 16 * 10 * 10 * (2 * 6 * 25 + 1) == 481600
    assert rows["7"].flops == 120 * (2 * 400 + 1)
    assert rows["11"].flops == 10 * (2 * 84 + 1)
    assert result.total_flops == sum(row.flops for row in result.rows) == 1322770
    # Receptive field: 5, then +1 at jump 1 -> 6 (jump 2), +4*2 -> 14, +1*2 -> 16 (jump 4).
    fields = [rows[k].receptive_field for k in ("0", "2", "3", "5")]
    assert fields == [(5, 5, 1, 1), (6, 6, 2, 2), (14, 14, 2, 2), (16, 16, 4, 4)]
    assert rows["7"].receptive_field is None
    assert result.receptive_field == (16, 16, 4, 4)
    text = str(result)
    assert "62,006" in text and "1,322,770" in text and "multiply-add counts as 2 FLOPs" in text
    assert "16 / 4" in text and "global" in text


def test_batch_size_scales_flops_and_training_mode_is_restored():
    model = lenet5()
    model.train()
    model[0].eval()
    single = fastconv.summary(model, (3, 32, 32))
    batch = fastconv.summary(model, (3, 32, 32), batch_size=4)
    assert batch.total_flops == 4 * single.total_flops
    assert batch.rows[0].output_shape == (4, 6, 28, 28)
    assert not model[0].training and model[1].training
    assert all(module._cache is None for module in model.modules())


def test_dilation_stride_residual_and_rectangular_fields():
    model = nn.Sequential(
        nn.Conv2d(1, 2, (3, 1), dilation=2, padding=(2, 0)),   # 5x1
        nn.Conv2d(2, 2, 3, stride=2, padding=1, bias=False),    # +2 -> 7x3, jump 2
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2))),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    result = fastconv.summary(model, (1, 12, 10))
    rows = {row.name: row for row in result.rows}
    assert rows["0"].receptive_field == (5, 1, 1, 1)
    assert rows["1"].receptive_field == (7, 3, 2, 2)
    assert rows["1"].flops == 2 * 6 * 5 * (2 * 2 * 9)
    assert rows["2.body.0"].receptive_field == (11, 7, 2, 2)
    assert rows["2"].layer == "Residual (add)" and rows["2"].receptive_field == (11, 7, 2, 2)
    assert rows["2"].flops == 2 * 6 * 5
    assert rows["2.body.1"].params == 4 and rows["2.body.1"].flops == 2 * 2 * 6 * 5
    # Adaptive pooling to 1x1 covers the whole 6x5 map.
    assert rows["3"].receptive_field == (11 + 5 * 2, 7 + 4 * 2, 12, 10)
    assert result.total_params == sum(p.size for p in model.parameters())
    assert result.trainable_params == result.total_params
    model.requires_grad_(False)
    assert fastconv.summary(model, (1, 12, 10)).trainable_params == 0
