"""Parity with PyTorch, run where torch is installed (it is never a dependency).

A state dict exported from a PyTorch model of the same structure loads into the fastconv
model and gives the same outputs; in training mode the gradients match autograd's.
"""
import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import models

torch = pytest.importorskip("torch")

MODELS = ["lenet5", "allcnn_c", "fastnet", "net_s", "net_m", "airnet"]


def twin_models(name):
    torch.manual_seed(0)
    torch_model = getattr(models, name)(torch.nn).double()
    for module in torch_model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    ours = getattr(models, name)().double()
    ours.load_state_dict({key: value.detach().numpy() for key, value in
                          torch_model.state_dict().items()})
    return torch_model, ours


@pytest.mark.parametrize("name", MODELS)
def test_torch_state_dict_gives_the_same_outputs(name):
    torch_model, ours = twin_models(name)
    torch_model.eval()
    ours.eval()
    x = np.random.default_rng(0).random((3, 3, 32, 32))
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["fastnet", "net_m", "airnet"])
def test_training_gradients_match_autograd(name):
    torch_model, ours = twin_models(name)
    torch_model.train()
    ours.train()
    rng = np.random.default_rng(1)
    x, labels = rng.random((4, 3, 32, 32)), rng.integers(0, 10, 4)
    torch_x = torch.from_numpy(x).requires_grad_()
    loss = torch.nn.functional.cross_entropy(torch_model(torch_x), torch.from_numpy(labels),
                                             label_smoothing=0.1)
    loss.backward()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    np.testing.assert_allclose(loss_fn(ours(x), labels), loss.item(), rtol=1e-10)
    grad_x = ours.backward(loss_fn.backward())
    np.testing.assert_allclose(grad_x, torch_x.grad.numpy(), rtol=1e-8, atol=1e-12)
    torch_grads = {key: p.grad.numpy() for key, p in torch_model.named_parameters()
                   if p.requires_grad}
    assert torch_grads.keys() == {key for key, p in ours.named_parameters() if p.requires_grad}
    for key, param in ours.named_parameters():
        if not param.requires_grad:
            continue
        np.testing.assert_allclose(param.grad, torch_grads[key], rtol=1e-8, atol=1e-12,
                                   err_msg=key)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-10,
                                   err_msg=key)


@pytest.mark.parametrize("shape, options", [
    ((32, 48), dict(lr=0.02)), ((48, 32), dict(lr=0.05, nesterov=False, weight_decay=0.01)),
    ((40, 24), dict(lr=0.05, adjust_lr_fn="match_rms_adamw", ns_steps=3))])
def test_muon_follows_torch(shape, options):
    from fastconv import optim
    rng = np.random.default_rng(1)
    start = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    ours = nn.Parameter(start.copy())
    theirs = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizers = optim.Muon([ours], **options), torch.optim.Muon([theirs], **options)
    for grad in grads:
        ours.grad, theirs.grad = grad.copy(), torch.from_numpy(grad.copy())
        for optimizer in optimizers:
            optimizer.step()
    # PyTorch orthogonalises in bfloat16 (8 bits of mantissa), fastconv in the parameter's dtype.
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), atol=0.03 * options["lr"])
