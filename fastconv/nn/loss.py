"""Losses: CrossEntropyLoss, MultiMarginLoss, MSELoss.

loss(input, target) returns a Python float for reduction "mean" or "sum" (an array of
per-element losses for "none") and keeps what backward needs; loss.backward(grad=None)
returns the gradient w.r.t. input, scaled by grad (default 1 for a reduced loss; an
array shaped like the losses is required for "none").
"""
import numpy as np

from fastconv.nn.module import Module, _float_input

REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, *, reduction="mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction

    def _reduce(self, losses, denominator):
        """The value forward returns: losses (per element) reduced as self.reduction says."""
        if self.reduction == "none":
            return losses
        total = float(np.sum(losses, dtype=np.float64))
        if self.reduction == "sum":
            return total
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.float64(total) / denominator)

    def _grad_scale(self, grad, loss_shape, denominator):
        """The factor (scalar, or per element for "none") the unit gradient is multiplied by."""
        if self.reduction == "none":
            if grad is None:
                raise ValueError(f"{type(self).__name__}.backward: reduction='none' needs grad, "
                                 f"an array of shape {loss_shape}")
            grad = np.asarray(grad)
            if grad.shape != loss_shape:
                raise ValueError(f"{type(self).__name__}.backward: grad must have the shape of "
                                 f"the losses {loss_shape}, got {grad.shape}")
            return grad
        scale = 1.0 if grad is None else float(grad)
        if self.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = float(np.float64(scale) / denominator)
        return scale

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


def _log_softmax(logits):
    """Row-wise log-softmax of (R, C), shifted by the row maximum so exp never overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class CrossEntropyLoss(_Loss):
    """Cross-entropy from logits, as torch.nn.CrossEntropyLoss.

    Parameters
    ----------
    weight : ndarray (C,) or None
        Per-class weights.
    ignore_index : int
        Class-index targets equal to it contribute neither loss nor gradient.
    reduction : "mean", "sum" or "none"
    label_smoothing : float in [0, 1]
        The target becomes (1 - label_smoothing) * target + label_smoothing / C.

    forward(input, target): input logits (N, C), (C,) or (N, C, d1, ...); target either
    class indices (N,), () or (N, d1, ...) of ints, or class probabilities of the input's
    shape. With class indices, y_n, weights w and s = label_smoothing, the loss of
    element n is
        l_n = -(1 - s) * w[y_n] * log p_n[y_n] - s / C * sum_c w[c] * log p_n[c]
    (0 where y_n == ignore_index) and "mean" divides the sum by sum_n w[y_n] over the
    elements not ignored. With probabilities t, l_n = -sum_c w[c] * t'_n[c] * log p_n[c]
    for the smoothed t', and "mean" divides by the number of elements.
    Both read l_n = -sum_c q_n[c] * log p_n[c], whose gradient w.r.t. the logits is
    p_n * sum_c q_n[c] - q_n.
    """

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction=reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, "
                             f"got {label_smoothing!r}")
        self.weight = None if weight is None else np.asarray(weight)
        if self.weight is not None and self.weight.ndim != 1:
            raise ValueError(f"CrossEntropyLoss: weight must be 1-D (C,), got shape "
                             f"{self.weight.shape}")
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def _rows(self, x):
        """Logits as (R, C) rows, class axis last."""
        if x.ndim == 1:
            return x[None, :]
        return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])

    def _class_weights(self, classes, dtype):
        if self.weight is None:
            return np.ones(classes, dtype)
        if self.weight.shape != (classes,):
            raise ValueError(f"CrossEntropyLoss: weight must have shape ({classes},) for {classes} "
                             f"classes, got {self.weight.shape}")
        return self.weight.astype(dtype, copy=False)

    def _index_targets(self, target, x, classes, weights):
        """(q (R, C), denominator, per-element shape) for class-index targets."""
        expected = (x.shape[:1] + x.shape[2:]) if x.ndim > 1 else ()
        if target.shape != expected:
            raise ValueError(f"CrossEntropyLoss: expected target of shape {expected} for input "
                             f"{x.shape}, got {target.shape}")
        labels = target.reshape(-1)
        valid = labels != self.ignore_index
        bad = valid & ((labels < 0) | (labels >= classes))
        if bad.any():
            raise ValueError(f"CrossEntropyLoss: target {labels[bad][0]} is out of bounds for "
                             f"{classes} classes")
        rows = np.flatnonzero(valid)
        smoothing = self.label_smoothing
        q = np.zeros((labels.size, classes), x.dtype)
        if smoothing:
            q[rows] = smoothing / classes * weights
        q[rows, labels[rows]] += (1 - smoothing) * weights[labels[rows]]
        denominator = weights[labels[rows]].sum(dtype=np.float64)
        return q, denominator, expected

    def _probability_targets(self, target, x, classes, weights):
        if target.shape != x.shape:
            raise ValueError(f"CrossEntropyLoss: probability targets must have the input's shape "
                             f"{x.shape}, got {target.shape}")
        q = self._rows(target.astype(x.dtype, copy=False))
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / classes
        q = q * weights
        shape = (x.shape[:1] + x.shape[2:]) if x.ndim > 1 else ()
        return q, q.shape[0], shape

    def forward(self, input, target):
        x = _float_input(type(self).__name__, input)
        if x.ndim < 1:
            raise ValueError(f"CrossEntropyLoss: expected input (N, C) or (C,), got shape "
                             f"{x.shape}")
        target = np.asarray(target)
        classes = x.shape[1] if x.ndim > 1 else x.shape[0]
        weights = self._class_weights(classes, x.dtype)
        if target.dtype.kind in "iu":
            q, denominator, shape = self._index_targets(target, x, classes, weights)
        elif target.dtype.kind == "f":
            q, denominator, shape = self._probability_targets(target, x, classes, weights)
        else:
            raise TypeError(f"CrossEntropyLoss: target must hold class indices (ints) or "
                            f"probabilities (floats), got dtype {target.dtype}")
        log_probs = _log_softmax(self._rows(x))
        losses = -np.einsum("rc,rc->r", q, log_probs).reshape(shape)
        self._save_for_backward(log_probs, q, denominator, x.shape, shape)
        return self._reduce(losses, denominator)

    def backward(self, grad=None):
        """dL/dinput, shaped like the input."""
        log_probs, q, denominator, input_shape, loss_shape = self._saved_for_backward()
        scale = self._grad_scale(grad, loss_shape, denominator)
        grad_rows = np.exp(log_probs)
        grad_rows *= q.sum(axis=1, keepdims=True)
        grad_rows -= q
        if self.reduction == "none":
            grad_rows *= scale.reshape(-1, 1)
        else:
            grad_rows *= grad_rows.dtype.type(scale)
        if len(input_shape) == 1:
            return grad_rows.reshape(input_shape)
        moved = (input_shape[0],) + input_shape[2:] + (input_shape[1],)
        return np.ascontiguousarray(np.moveaxis(grad_rows.reshape(moved), -1, 1))

    def extra_repr(self):
        args = [super().extra_repr()] if self.reduction != "mean" else []
        if self.ignore_index != -100:
            args.append(f"ignore_index={self.ignore_index}")
        if self.label_smoothing:
            args.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(args)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss, as torch.nn.MultiMarginLoss.

    For input x (N, C) or (C,) and class-index target y, the loss of sample n is
        l_n = sum_{c != y_n} w[y_n] * max(0, margin - x_n[y_n] + x_n[c]) ** p / C
    and "mean" averages over samples. p is 1 or 2; weight (C,) or None.
    """

    def __init__(self, p=1, margin=1.0, weight=None, *, reduction="mean"):
        super().__init__(reduction=reduction)
        if p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: only p == 1 and p == 2 are supported, got {p!r}")
        self.p, self.margin = p, margin
        self.weight = None if weight is None else np.asarray(weight)

    def forward(self, input, target):
        x = _float_input(type(self).__name__, input)
        target = np.asarray(target)
        if x.ndim not in (1, 2) or target.shape != x.shape[:-1]:
            raise ValueError(f"MultiMarginLoss: expected input (N, C) with target (N,) or input "
                             f"(C,) with a scalar target, got {x.shape} and {target.shape}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"MultiMarginLoss: target must hold class indices, got dtype "
                            f"{target.dtype}")
        rows = x.reshape(-1, x.shape[-1])
        labels = target.reshape(-1)
        classes = rows.shape[1]
        if ((labels < 0) | (labels >= classes)).any():
            raise ValueError(f"MultiMarginLoss: targets must lie in [0, {classes}), got "
                             f"{labels.min()}..{labels.max()}")
        index = np.arange(rows.shape[0])
        margins = self.margin - rows[index, labels][:, None] + rows
        margins[index, labels] = 0
        np.maximum(margins, 0, out=margins)
        row_weights = (np.ones(len(labels), x.dtype) if self.weight is None
                       else self.weight.astype(x.dtype)[labels])
        terms = margins if self.p == 1 else margins * margins
        losses = (terms.sum(axis=1) * row_weights / classes).reshape(target.shape)
        self._save_for_backward(margins, labels, row_weights, x.shape, target.shape)
        return self._reduce(losses, rows.shape[0])

    def backward(self, grad=None):
        """dL/dinput, shaped like the input."""
        margins, labels, row_weights, input_shape, loss_shape = self._saved_for_backward()
        classes = margins.shape[1]
        scale = self._grad_scale(grad, loss_shape, margins.shape[0])
        # d/dx[c] of each active hinge term is its slope; x[y] receives minus their sum.
        slopes = (margins > 0).astype(margins.dtype) if self.p == 1 else 2 * margins
        slopes *= (row_weights / classes)[:, None]
        if self.reduction == "none":
            slopes *= np.asarray(scale, margins.dtype).reshape(-1, 1)
        else:
            slopes *= margins.dtype.type(scale)
        index = np.arange(margins.shape[0])
        slopes[index, labels] -= slopes.sum(axis=1)
        return slopes.reshape(input_shape)

    def extra_repr(self):
        args = [] if self.p == 1 else [f"p={self.p}"]
        if self.margin != 1.0:
            args.append(f"margin={self.margin}")
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        return ", ".join(args)


class MSELoss(_Loss):
    """Mean squared error, as torch.nn.MSELoss: l = (input - target) ** 2 per element.

    input and target share one shape; "mean" averages over all elements.
    """

    def forward(self, input, target):
        x = _float_input(type(self).__name__, input)
        target = np.asarray(target)
        if target.shape != x.shape:
            raise ValueError(f"MSELoss: target shape {target.shape} must equal the input shape "
                             f"{x.shape}")
        difference = x - target.astype(x.dtype, copy=False)
        self._save_for_backward(difference)
        return self._reduce(difference * difference, difference.size)

    def backward(self, grad=None):
        """dL/dinput = 2 * (input - target), scaled by grad and the reduction."""
        (difference,) = self._saved_for_backward()
        scale = self._grad_scale(grad, difference.shape, difference.size)
        if self.reduction == "none":
            return 2 * difference * scale
        return difference * difference.dtype.type(2 * scale)
