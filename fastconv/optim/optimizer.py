"""Optimizers with PyTorch's update rules: SGD, Adam, AdamW, Muon.

An optimizer holds param_groups, a list of dicts each with "params" (a list of
Parameters) and its hyper-parameters ("lr", ...), which learning-rate schedulers change
between steps; and state, per-Parameter buffers such as momentum. step() updates every
Parameter that has a .grad, in place.
"""
import copy
import math

import numpy as np

from fastconv.nn.module import Parameter


class Optimizer:
    """Base class: parameter groups, zero_grad and state_dict / load_state_dict.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts
        Dicts define parameter groups: {"params": [...], "lr": ...}, missing
        hyper-parameters taken from defaults.
    defaults : dict
        The hyper-parameters of this optimizer and their values.
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        if isinstance(params, Parameter):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Parameters "
                            f"or of dicts, got a single Parameter")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of Parameters with their own hyper-parameters (others from defaults)."""
        name = type(self).__name__
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Parameter) else list(params)
        for param in group["params"]:
            if not isinstance(param, Parameter):
                raise TypeError(f"{name}: can only optimize Parameters, got "
                                f"{type(param).__name__}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of every parameter: to None (default, as PyTorch) or zeros."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.fill(0)

    def step(self):
        raise NotImplementedError

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{"state": {index: {name: value}}, "param_groups": [{..., "params": [indices]}]}.

        Parameters are numbered in group order, as PyTorch does, so the dict does not
        refer to the Parameter objects; arrays are copies.
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {index[id(p)]: copy.deepcopy(s) for p, s in self.state.items() if s}
        groups = [dict(group, params=[index[id(p)] for p in group["params"]])
                  for group in self.param_groups]
        return {"state": state, "param_groups": copy.deepcopy(groups)}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by state_dict().

        Everything is checked (group count and sizes, state array shapes) before anything
        changes; arrays are cast to their parameter's dtype.
        """
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(groups)} parameter "
                             f"groups, the optimizer {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameters in the state dict and "
                                 f"{len(group['params'])} in the optimizer")
        params = {saved_index: param for saved, group in zip(groups, self.param_groups)
                  for saved_index, param in zip(saved["params"], group["params"])}
        new_state = {}
        for key, values in state_dict["state"].items():
            param = params.get(int(key))
            if param is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, which no "
                                 f"group holds")
            restored = {}
            for field, value in values.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if value.shape != param.shape:
                        raise ValueError(f"{name}.load_state_dict: state {field!r} of parameter "
                                         f"{key} has shape {value.shape}, the parameter "
                                         f"{param.shape}")
                    value = value.astype(param.dtype)
                restored[field] = copy.deepcopy(value)
            new_state[param] = restored
        self.state = new_state
        self.param_groups = [dict(copy.deepcopy({k: v for k, v in saved.items() if k != "params"}),
                                  params=group["params"])
                             for saved, group in zip(groups, self.param_groups)]


def _check_non_negative(name, **values):
    for key, value in values.items():
        if not value >= 0.0:
            raise ValueError(f"{name}: invalid {key} {value!r}, must be >= 0")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as torch.optim.SGD.

    For each parameter p with gradient g:
        g = g + weight_decay * p
        b = g (first step) or momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b           (when momentum != 0)
        p = p - lr * g
    (maximize=True ascends: g is negated first.)
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False):
        _check_non_negative("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def step(self):
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = -param.grad if group["maximize"] else param.grad
                if weight_decay != 0:
                    grad = grad + weight_decay * param.data
                if momentum != 0:
                    state = self.state.setdefault(param, {})
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = np.array(grad, copy=True)
                    else:
                        buffer *= momentum
                        buffer += (1 - group["dampening"]) * grad
                    grad = grad + momentum * buffer if group["nesterov"] else buffer
                param.data -= lr * grad


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (weight_decay is an L2 term added to the gradient).

    For each parameter p with gradient g, at step t = 1, 2, ...:
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                         (amsgrad; then v_max replaces v)
        p = p - lr / (1 - beta1 ** t) * m / (sqrt(v) / sqrt(1 - beta2 ** t) + eps)
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False):
        name = type(self).__name__
        _check_non_negative(name, lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {beta!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def step(self):
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = -param.grad if group["maximize"] else param.grad
                state = self.state.setdefault(param, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(param.data)
                    state["exp_avg_sq"] = np.zeros_like(param.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = np.zeros_like(param.data)
                state["step"] += 1
                if weight_decay != 0:
                    if self._decoupled_weight_decay:
                        param.data *= 1 - lr * weight_decay
                    else:
                        grad = grad + weight_decay * param.data
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg *= beta1
                exp_avg += (1 - beta1) * grad
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * grad * grad
                if group["amsgrad"]:
                    np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second_moment = state["max_exp_avg_sq"]
                else:
                    second_moment = exp_avg_sq
                step = state["step"]
                step_size = lr / (1 - beta1 ** step)
                denominator = np.sqrt(second_moment) / math.sqrt(1 - beta2 ** step)
                denominator += eps
                param.data -= step_size * exp_avg / denominator


class AdamW(Adam):
    """Adam with decoupled weight decay, as torch.optim.AdamW.

    As Adam, except that the gradient carries no weight-decay term; instead each step
    first shrinks p = p * (1 - lr * weight_decay). weight_decay defaults to 1e-2.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


def orthogonalize(matrix, coefficients=(3.4445, -4.7750, 2.0315), steps=5, eps=1e-7):
    """About U V^T for the SVD U S V^T of a 2-D matrix, by quintic Newton-Schulz steps.

    Each step maps X -> a X + (b A + c A A) X with A = X X^T, starting from the matrix
    divided by its Frobenius norm (so its singular values are at most 1). The default
    coefficients (Jordan et al.) raise small singular values fast instead of converging:
    after 5 steps they lie in about [0.7, 1.2], which trains as well as exact U V^T.
    """
    a, b, c = coefficients
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix                 # A is then the smaller Gram matrix
    x = x / max(float(np.linalg.norm(x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(Optimizer):
    """Muon, as torch.optim.Muon: momentum whose update is orthogonalised per weight matrix.

    For each parameter p, viewed as a matrix of p.shape[0] rows (a convolution's filters
    are its rows; PyTorch's Muon takes 2-D parameters only), with gradient g:
        b = momentum * b + (1 - momentum) * g            (b starts at 0)
        u = (1 - momentum) * g + momentum * b if nesterov else b
        p = p * (1 - lr * weight_decay)
        p = p - lr * r * orthogonalize(u)
    with r = sqrt(max(1, rows / columns)) (adjust_lr_fn "original"), or
    0.2 * sqrt(max(rows, columns)) ("match_rms_adamw", the RMS of an AdamW step). Vectors
    (biases, BatchNorm shifts) belong in another optimizer such as SGD or AdamW.
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5,
                 adjust_lr_fn=None):
        _check_non_negative("Muon", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"Muon: adjust_lr_fn must be None, 'original' or 'match_rms_adamw', "
                             f"got {adjust_lr_fn!r}")
        if len(ns_coefficients) != 3:
            raise ValueError(f"Muon: ns_coefficients must be 3 numbers, got {ns_coefficients!r}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or not 0 <= ns_steps < 100:
            raise ValueError(f"Muon: ns_steps must be an int in [0, 100), got {ns_steps!r}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_coefficients=tuple(ns_coefficients),
                                      eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn))
        for param in self._params():
            if param.ndim < 2:
                raise ValueError(f"Muon: optimizes matrices and filters only, got a parameter of "
                                 f"shape {param.shape}; give vectors to SGD or AdamW")

    def step(self):
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state.setdefault(param, {})
                buffer = state.setdefault("momentum_buffer", np.zeros_like(param.data))
                buffer *= momentum
                buffer += (1 - momentum) * param.grad
                update = ((1 - momentum) * param.grad + momentum * buffer if group["nesterov"]
                          else buffer)
                rows = param.shape[0]
                columns = param.size // rows
                update = orthogonalize(update.reshape(rows, columns), group["ns_coefficients"],
                                       group["ns_steps"], group["eps"])
                if group["adjust_lr_fn"] == "match_rms_adamw":
                    ratio = 0.2 * math.sqrt(max(rows, columns))
                else:
                    ratio = math.sqrt(max(1.0, rows / columns))
                param.data *= 1 - lr * group["weight_decay"]
                param.data -= (lr * ratio) * update.reshape(param.shape)
