"""Optimizers and schedulers against PyTorch's documented update rules and closed forms."""
import math

import numpy as np
import pytest

import fastconv.nn as nn
import fastconv.optim as optim
from fastconv.optim import lr_scheduler

rng = np.random.default_rng(7)


def run(optimizer_class, grads, start, **options):
    param = nn.Parameter(start.copy())
    optimizer = optimizer_class([param], **options)
    for grad in grads:
        param.grad = grad.copy()
        optimizer.step()
    return param.data


def sgd_reference(grads, p, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    buffer = None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buffer = g.copy() if buffer is None else momentum * buffer + (1 - dampening) * g
            g = g + momentum * buffer if nesterov else buffer
        p = p - lr * g
    return p


def adam_reference(grads, p, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   amsgrad=False, decoupled=False):
    beta1, beta2 = betas
    m, v, v_max = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = np.maximum(v_max, v)
        m_hat = m / (1 - beta1 ** t)
        v_hat = (v_max if amsgrad else v) / (1 - beta2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_sgd_by_hand():
    grads = [np.array([0.5]), np.array([0.5])]
    assert run(optim.SGD, grads, np.array([1.0]), lr=0.1)[0] == pytest.approx(0.9)
    # b1 = 0.5, p1 = 0.95; b2 = 0.9 * 0.5 + 0.5 = 0.95, p2 = 0.95 - 0.095
    assert run(optim.SGD, grads, np.array([1.0]), lr=0.1, momentum=0.9)[0] == pytest.approx(0.855)


@pytest.mark.parametrize("options", [
    dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True), dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.05),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)],
    ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_sgd_matches_formulas(options):
    start, grads = rng.standard_normal(5), [rng.standard_normal(5) for _ in range(4)]
    np.testing.assert_allclose(run(optim.SGD, grads, start, **options),
                               sgd_reference(grads, start, **options), rtol=1e-13)


def test_adam_by_hand():
    # m = 0.05, v = 0.00025; bias-corrected 0.5 and 0.25: the step is lr * 0.5 / 0.5.
    result = run(optim.Adam, [np.array([0.5])], np.array([1.0]), lr=0.1)
    assert result[0] == pytest.approx(0.9, abs=1e-8)


@pytest.mark.parametrize("optimizer_class, options", [
    (optim.Adam, dict(lr=0.01)), (optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1)), (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01)), (optim.AdamW, dict(lr=0.02, weight_decay=0.1, amsgrad=True))],
    ids=["adam", "adam-betas", "adam-l2", "adam-amsgrad", "adamw", "adamw-amsgrad"])
def test_adam_matches_formulas(optimizer_class, options):
    start = rng.standard_normal(6)
    grads = [rng.standard_normal(6) * (3 if t % 2 else 0.1) for t in range(5)]
    decoupled = optimizer_class is optim.AdamW
    if decoupled:
        options.setdefault("weight_decay", 1e-2)
    np.testing.assert_allclose(run(optimizer_class, grads, start, **options),
                               adam_reference(grads, start, decoupled=decoupled, **options),
                               rtol=1e-12)


def test_defaults_groups_and_validation():
    assert optim.AdamW([nn.Parameter(np.zeros(1))]).defaults["weight_decay"] == 1e-2
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    optimizer = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.5]
    assert optimizer.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = np.ones(2), np.ones(3)
    optimizer.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    optimizer.zero_grad()
    assert a.grad is None and b.grad is None
    optimizer.step()  # parameters without gradients are skipped
    np.testing.assert_allclose(a.data, 0.9)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizer.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])


@pytest.mark.parametrize("optimizer_class, options", [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.01, amsgrad=True)), (optim.AdamW, dict(lr=0.01))],
    ids=["sgd", "adam", "adamw"])
def test_optimizer_state_dict_resumes_exactly(optimizer_class, options):
    start = rng.standard_normal(4)
    grads = [rng.standard_normal(4) for _ in range(6)]
    whole = run(optimizer_class, grads, start, **options)
    param = nn.Parameter(start.copy())
    optimizer = optimizer_class([param], **options)
    for grad in grads[:3]:
        param.grad = grad.copy()
        optimizer.step()
    state = optimizer.state_dict()
    assert list(state["state"]) == [0] and state["param_groups"][0]["params"] == [0]
    resumed_param = nn.Parameter(param.data.copy())
    resumed = optimizer_class([resumed_param], lr=123.0)
    resumed.load_state_dict(state)
    assert resumed.param_groups[0]["lr"] == options["lr"]
    for grad in grads[3:]:
        resumed_param.grad = grad.copy()
        resumed.step()
    np.testing.assert_array_equal(resumed_param.data, whole)
    with pytest.raises(ValueError, match="shape"):
        bad = optimizer.state_dict()
        key = next(k for k, v in bad["state"][0].items() if isinstance(v, np.ndarray))
        bad["state"][0][key] = np.zeros(5)
        optimizer_class([nn.Parameter(np.zeros(4))]).load_state_dict(bad)


def newton_schulz_reference(matrix, coefficients=(3.4445, -4.7750, 2.0315), steps=5):
    # Each Newton-Schulz step is an odd polynomial of X, so it acts on the singular values
    # alone: orthogonalize(G) = U f(f(...f(S / |G|_F))) V^T with f(s) = a s + b s^3 + c s^5.
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    a, b, c = coefficients
    s = s / np.linalg.norm(s)
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return (u * s) @ vt


def muon_reference(grads, p, lr, weight_decay=0.1, momentum=0.95, nesterov=True,
                   adjust_lr_fn=None, ns_coefficients=(3.4445, -4.7750, 2.0315), ns_steps=5):
    rows = p.shape[0]
    columns = p.size // rows
    ratio = (0.2 * math.sqrt(max(rows, columns)) if adjust_lr_fn == "match_rms_adamw"
             else math.sqrt(max(1, rows / columns)))
    buffer = np.zeros_like(p)
    for g in grads:
        buffer = momentum * buffer + (1 - momentum) * g
        u = (1 - momentum) * g + momentum * buffer if nesterov else buffer
        p = p * (1 - lr * weight_decay)
        p = p - lr * ratio * newton_schulz_reference(u.reshape(rows, columns), ns_coefficients,
                                                          ns_steps).reshape(p.shape)
    return p


@pytest.mark.parametrize("shape", [(4, 4), (8, 3), (3, 8), (64, 216), (300, 40), (16, 8, 3, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonalize_acts_on_singular_values(shape, dtype):
    matrix = rng.standard_normal((shape[0], math.prod(shape[1:]))).astype(dtype)
    result = optim.orthogonalize(matrix)
    assert result.dtype == dtype and result.shape == matrix.shape
    expected = newton_schulz_reference(matrix)
    np.testing.assert_allclose(result, expected, atol=1e-5 if dtype == np.float32 else 1e-12)
    # With these coefficients the singular values head for 1 without settling there.
    singular = np.linalg.svd(expected, compute_uv=False)
    assert np.all(singular < 1.25) and np.all(singular[:len(singular) // 2] > 0.6)
    steps, exact = optim.orthogonalize(matrix, (1.875, -1.25, 0.375), steps=40), \
        np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(steps, exact[0] @ exact[2], atol=1e-3)   # a converging quintic


@pytest.mark.parametrize("shape, options", [
    ((5, 7), dict(lr=0.02)), ((7, 5), dict(lr=0.02, nesterov=False, momentum=0.9)),
    ((12, 3), dict(lr=0.05, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")),
    ((6, 2, 3, 3), dict(lr=0.1, weight_decay=0.01, ns_steps=3, momentum=0.6)),
    ((4, 6), dict(lr=0.1, ns_coefficients=(2.0, -1.5, 0.5), ns_steps=7))],
    ids=["wide", "tall-heavy-ball", "rms-adamw", "conv-filters", "coefficients"])
def test_muon_matches_formulas(shape, options):
    start = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) * (3 if t % 2 else 0.1) for t in range(5)]
    np.testing.assert_allclose(run(optim.Muon, grads, start, **options),
                               muon_reference(grads, start, **options), rtol=1e-9, atol=1e-12)


def test_muon_validation_and_resume():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        optim.Muon([nn.Parameter(np.zeros((3, 3))), nn.Parameter(np.zeros(3))])
    for bad in (dict(adjust_lr_fn="auto"), dict(ns_steps=-1), dict(ns_steps=2.5),
                dict(ns_coefficients=(1, 2)), dict(momentum=-0.1)):
        with pytest.raises(ValueError, match="Muon: .*" + next(iter(bad))):
            optim.Muon([nn.Parameter(np.zeros((3, 3)))], **bad)
    start, grads = rng.standard_normal((4, 5)), [rng.standard_normal((4, 5)) for _ in range(6)]
    whole = run(optim.Muon, grads, start, lr=0.1)
    param = nn.Parameter(start.copy())
    optimizer = optim.Muon([param], lr=0.1)
    for grad in grads[:3]:
        param.grad = grad.copy()
        optimizer.step()
    resumed_param = nn.Parameter(param.data.copy())
    resumed = optim.Muon([resumed_param], lr=5.0)
    resumed.load_state_dict(optimizer.state_dict())
    for grad in grads[3:]:
        resumed_param.grad = grad.copy()
        resumed.step()
    np.testing.assert_array_equal(resumed_param.data, whole)


# -- schedulers --------------------------------------------------------------------------------

def make_optimizer(kind="sgd", lr=0.1):
    param = nn.Parameter(np.zeros(1))
    if kind == "sgd":
        return optim.SGD([param], lr=lr, momentum=0.9)
    return optim.Adam([param], lr=lr)


def lrs(scheduler, steps):
    values = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        values.append(scheduler.get_last_lr()[0])
    return values


def test_step_lr():
    scheduler = lr_scheduler.StepLR(make_optimizer(), step_size=3, gamma=0.5)
    np.testing.assert_allclose(lrs(scheduler, 9), [0.1 * 0.5 ** (t // 3) for t in range(10)],
                               rtol=1e-14)


def test_cosine_annealing_lr():
    scheduler = lr_scheduler.CosineAnnealingLR(make_optimizer(), T_max=10, eta_min=0.01)
    expected = [0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(21)]
    np.testing.assert_allclose(lrs(scheduler, 20), expected, rtol=1e-12, atol=1e-15)


def test_linear_lr():
    scheduler = lr_scheduler.LinearLR(make_optimizer(), start_factor=0.25, end_factor=1.0,
                                      total_iters=4)
    expected = [0.1 * (0.25 + 0.75 * min(t, 4) / 4) for t in range(8)]
    np.testing.assert_allclose(lrs(scheduler, 7), expected, rtol=1e-13)


def test_one_cycle_lr_defaults():
    optimizer = make_optimizer("sgd")
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=100)
    momenta = [optimizer.param_groups[0]["momentum"]]
    values = [scheduler.get_last_lr()[0]]
    for _ in range(99):
        scheduler.step()
        values.append(scheduler.get_last_lr()[0])
        momenta.append(optimizer.param_groups[0]["momentum"])
    initial, peak_step = 1.0 / 25, 0.3 * 100 - 1
    assert values[0] == pytest.approx(initial) and momenta[0] == pytest.approx(0.95)
    assert values[29] == pytest.approx(1.0) and momenta[29] == pytest.approx(0.85)
    assert values[99] == pytest.approx(initial / 1e4) and momenta[99] == pytest.approx(0.95)
    pct = 10 / peak_step
    assert values[10] == pytest.approx(1.0 + (initial - 1.0) / 2 * (1 + math.cos(math.pi * pct)))
    pct = (60 - peak_step) / (99 - peak_step)
    assert values[60] == pytest.approx(initial / 1e4 + (1.0 - initial / 1e4) / 2
                                       * (1 + math.cos(math.pi * pct)))
    assert max(values) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total steps"):
        scheduler.step()
        scheduler.step()


def test_one_cycle_lr_three_phase_linear_and_adam_beta1():
    optimizer = make_optimizer("adam")
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, epochs=2, steps_per_epoch=10,
                                        anneal_strategy="linear", three_phase=True)
    values = lrs(scheduler, 19)
    initial = 0.5 / 25
    assert values[0] == pytest.approx(initial)
    assert values[5] == pytest.approx(0.5)                # end of phase 1: 0.3 * 20 - 1
    assert values[10] == pytest.approx(initial)           # end of phase 2: 2 * 0.3 * 20 - 2
    assert values[19] == pytest.approx(initial / 1e4)
    assert values[3] == pytest.approx(initial + (0.5 - initial) * 3 / 5)
    assert optimizer.param_groups[0]["betas"] == (pytest.approx(0.95), 0.999)
    with pytest.raises(ValueError, match="total_steps OR"):
        lr_scheduler.OneCycleLR(make_optimizer(), max_lr=1.0)


@pytest.mark.parametrize("make", [
    lambda o: lr_scheduler.StepLR(o, 2, gamma=0.3),
    lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7),
    lambda o: lr_scheduler.LinearLR(o, total_iters=6),
    lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.3, total_steps=12)],
    ids=["step", "cosine", "linear", "onecycle"])
def test_scheduler_state_dict_resumes_exactly(make):
    optimizer = make_optimizer()
    scheduler = make(optimizer)
    whole = lrs(scheduler, 10)
    optimizer = make_optimizer()
    scheduler = make(optimizer)
    lrs(scheduler, 4)
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()
    fresh_optimizer = make_optimizer()
    fresh = make(fresh_optimizer)
    fresh_optimizer.load_state_dict(saved_optimizer)
    fresh.load_state_dict(saved_scheduler)
    assert fresh.get_last_lr() == [whole[4]]
    assert lrs(fresh, 6)[1:] == whole[5:]
