"""Finite-difference checks of a Module's backward, for tests and for new layers."""
import numpy as np

from fastconv._random import manual_seed


def _forward(module, input, seed):
    # Reseeding before every forward gives Dropout the same mask each time.
    manual_seed(seed)
    output = module(input)
    return output[0] if isinstance(output, tuple) else output


def gradcheck(module, input, *, eps=1e-6, atol=1e-7, rtol=1e-5, max_checks=40, seed=0):
    """Compare module.backward with central differences of L = sum(module(input) * R).

    R is a fixed random array, so dL/doutput = R. Both the input gradient and every
    parameter gradient (which backward must accumulate into .grad) are checked at up to
    max_checks randomly chosen elements each. Use a float64 module (.double()) and
    input, in training mode; random layers are reseeded with seed before each forward.

    Returns
    -------
    True

    Raises
    ------
    AssertionError
        Naming the array, the element and both values where they differ by more than
        atol + rtol * |numerical|.
    """
    input = np.array(input, dtype=np.float64)
    rng = np.random.default_rng(seed)
    output = _forward(module, input, seed)
    weights = rng.standard_normal(np.shape(output))
    module.zero_grad()
    grad_input = module.backward(weights)
    checks = [("input", input, grad_input)]
    checks += [(name, param.data,
                np.zeros_like(param.data) if param.grad is None else param.grad)
               for name, param in module.named_parameters()]
    for name, array, analytic in checks:
        flat, analytic = array.reshape(-1), np.asarray(analytic).reshape(-1)
        if analytic.shape != flat.shape:
            raise AssertionError(f"gradcheck: gradient of {name} has {analytic.size} elements, "
                                 f"the array {flat.size}")
        chosen = rng.permutation(flat.size)[:max_checks]
        for index in chosen:
            original = flat[index]
            flat[index] = original + eps
            plus = np.sum(_forward(module, input, seed) * weights)
            flat[index] = original - eps
            minus = np.sum(_forward(module, input, seed) * weights)
            flat[index] = original
            numerical = (plus - minus) / (2 * eps)
            if abs(numerical - analytic[index]) > atol + rtol * abs(numerical):
                raise AssertionError(f"gradcheck: d/d{name}[{index}] analytic "
                                     f"{analytic[index]!r} != numerical {numerical!r}")
    return True
