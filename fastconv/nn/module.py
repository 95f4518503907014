"""Module, Parameter and the containers Sequential and Residual.

Backpropagation is explicit and layer-wise: forward(x) caches what backward needs (only
in training mode), backward(grad_output) returns the gradient with respect to the input
and accumulates (+=) into the parameters' .grad.
"""
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(fn, dtype):
    """float32 unless dtype says float64; nothing else is allowed for parameters."""
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _float_input(layer, input, dtype=None):
    """input as an ndarray, checked to be float32/float64 (and of dtype, when given)."""
    array = np.asarray(input)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: input must be float32 or float64, got dtype {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{layer}: input dtype {array.dtype} does not match the parameters' "
                        f"dtype {dtype} (convert one of them, e.g. with .double())")
    return array


class Parameter:
    """A trainable array: .data holds the values, .grad their accumulated gradient.

    .grad is None until a backward pass accumulates into it (and again after
    zero_grad(), as PyTorch's default set_to_none=True), then an array of .data's shape
    and dtype. A parameter with requires_grad False is frozen: backward passes give it no
    gradient (layers skip computing one), so optimizers leave it as it is.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=True):
        data = np.array(data, copy=True, order="C")
        if data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter: data must be float32 or float64, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    @property
    def ndim(self):
        return self.data.ndim

    def accumulate_grad(self, grad):
        """self.grad += grad; the first gradient is taken over, not copied (pass a fresh array).
        A frozen parameter (requires_grad False) ignores it."""
        if not self.requires_grad:
            return
        if self.grad is None:
            self.grad = np.ascontiguousarray(grad, dtype=self.data.dtype)
        else:
            self.grad += grad

    def __repr__(self):
        return f"Parameter containing:\n{self.data!r}"


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) skipped."""
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer, container and loss.

    Subclasses call Module.__init__ first, then assign Parameters (trainable),
    sub-Modules and buffers (register_buffer: saved state that is not trained, such as
    BatchNorm's running statistics); all three are found by attribute assignment order
    and appear in state_dict() under PyTorch's names.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_cache", None)

    # -- attributes ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before "
                                 f"assigning attributes")
        if isinstance(value, Parameter):
            store = self._parameters
        elif isinstance(value, Module):
            store = self._modules
        elif name in self.__dict__.get("_buffer_names", ()):
            store = self._buffers
        else:
            store = None
        # Reassigning within the same store keeps the key's place (state_dict order).
        for other in (self._parameters, self._buffers, self._modules):
            if other is not store:
                other.pop(name, None)
        if store is None:
            object.__setattr__(self, name, value)
        else:
            self.__dict__.pop(name, None)
            store[name] = value

    def __getattr__(self, name):
        # Only called when normal lookup fails: parameters, buffers and children live in dicts.
        for store in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(store)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Add state that is saved in state_dict() but not trained (None: declared, absent)."""
        if "_buffer_names" not in self.__dict__:
            object.__setattr__(self, "_buffer_names", set())
        self._buffer_names.add(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name, param):
        """Add a Parameter, or declare an absent one with None (as a layer without bias)."""
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # -- forward and backward ------------------------------------------------------------
    # Whether forward(x, relu=True) also applies a ReLU to the output in the same pass and
    # backward then takes the gradient through it: Sequential hands such a module the work
    # of a ReLU that follows it.
    fuses_relu = False
    # Whether forward takes gelu="none" / "tanh" and applies a following GELU itself.
    fuses_gelu = False
    # Whether forward(x, max_pool=pool) also applies a following 2x2, stride-2 MaxPool2d
    # (pool.pools_2x2()) and leaves pool what its own backward needs.
    fuses_max_pool = False
    # Whether forward(x, affine=(scale, shift)) also computes output * scale + shift per
    # output channel, folded into its weights (eval mode only): Sequential folds a
    # following module whose _eval_affine() says it is such a map into it.
    folds_affine = False

    def _eval_affine(self, channels):
        """(scale, shift), float64 arrays of shape (channels,), if this module maps
        (N, channels, H, W) input to input * scale + shift per channel now; else None."""
        return None

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def backward_parameters(self, grad_output):
        """backward for a module whose input needs no gradient (the first layer of a network,
        as PyTorch skips it for inputs without requires_grad): accumulates the parameters'
        gradients and returns None. Layers that can skip the input gradient's work do."""
        self.backward(grad_output)

    def _save_for_backward(self, *values):
        """Keep what backward needs, in training mode only: eval mode stores no activations."""
        object.__setattr__(self, "_cache", values if self.training else None)

    def _saved_for_backward(self):
        """What forward saved; released here, since each forward serves one backward."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: nothing saved by forward; call "
                               f"forward in training mode (.train()) before each backward")
        object.__setattr__(self, "_cache", None)
        return cache

    # -- traversal ----------------------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix="", memo=None):
        """(name, module) for this module and every descendant, pre-order, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs, each Parameter once even when shared."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, param in module._parameters.items():
                if id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_prefix}.{name}" if module_prefix else name), param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), buffer

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn):
        """Call fn on every child (recursively) and then on self, as PyTorch does; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- modes, gradients, dtype ----------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (batch statistics, dropout, caches for backward) recursively."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
            if not mode:
                object.__setattr__(module, "_cache", None)
        return self

    def eval(self):
        """Set evaluation mode: running statistics, no dropout, nothing cached for backward."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to None (the default, as PyTorch) or to zeros."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.fill(0)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter, as PyTorch's; returns self."""
        for param in self.parameters():
            param.requires_grad = bool(requires_grad)
        return self

    def to(self, dtype):
        """Cast every float parameter and buffer to dtype (float32 or float64) in place.

        Gradients and caches are dropped. Returns self.
        """
        dtype = _float_dtype(f"{type(self).__name__}.to", dtype)
        for module in self.modules():
            for param in module._parameters.values():
                param.data = param.data.astype(dtype)
                param.grad = None
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.dtype.kind == "f":
                    module._buffers[name] = buffer.astype(dtype)
            object.__setattr__(module, "_cache", None)
        return self

    def double(self):
        """Cast parameters and float buffers to float64 (for gradient checks); returns self."""
        return self.to(np.float64)

    def float(self):
        """Cast parameters and float buffers to float32; returns self."""
        return self.to(np.float32)

    def _dtype(self):
        """The dtype of this module's own parameters or float buffers; None if it has none."""
        for param in self._parameters.values():
            return param.dtype
        for buffer in self._buffers.values():
            if buffer is not None and buffer.dtype.kind == "f":
                return buffer.dtype
        return None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self):
        """An OrderedDict of copies of every parameter and buffer, under PyTorch's key names.

        Order as PyTorch: module by module in pre-order, parameters then buffers.
        """
        state = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                state[dot + name] = param.data.copy()
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    state[dot + name] = np.array(buffer, copy=True)
        return state

    def _state_slots(self):
        """key -> (module, store, name) for every entry of state_dict()."""
        slots = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name in module._parameters:
                slots[dot + name] = (module, "param", name)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    slots[dot + name] = (module, "buffer", name)
        return slots

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from a mapping of name -> array into the parameters and buffers.

        Every entry is checked (keys when strict, shapes, numeric values) before anything
        is written: a dict that does not fit leaves the model unchanged and raises a
        ValueError listing every problem with its key. Values are cast to the dtype of
        the model's arrays; arrays from PyTorch (tensor.numpy()) load unchanged.

        Returns
        -------
        IncompatibleKeys(missing_keys, unexpected_keys)
            Both empty when strict (otherwise it would have raised).
        """
        slots = self._state_slots()
        missing = [key for key in slots if key not in state_dict]
        unexpected = [key for key in state_dict if key not in slots]
        errors = []
        if strict:
            errors += [f'missing key "{key}"' for key in missing]
            errors += [f'unexpected key "{key}"' for key in unexpected]
        updates = []
        for key, (module, store, name) in slots.items():
            if key not in state_dict:
                continue
            current = module._parameters[name].data if store == "param" else module._buffers[name]
            try:
                value = np.asarray(state_dict[key])
            except Exception as error:  # anything array-like is allowed; report what is not
                errors.append(f'value for "{key}" is not an array: {error}')
                continue
            if value.dtype.kind not in "fiub":
                errors.append(f'value for "{key}" has non-numeric dtype {value.dtype}')
            elif value.shape != current.shape:
                errors.append(f'size mismatch for "{key}": copying a value of shape {value.shape} '
                              f'from the state dict, the shape in the model is {current.shape}')
            else:
                updates.append((current, value))
        if errors:
            raise ValueError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                             + "\n\t".join(errors))
        for current, value in updates:
            np.copyto(current, value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self):
        """The arguments shown inside this module's repr; only non-default ones, by convention."""
        return ""

    def __repr__(self):
        lines = []
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Sequential(m0, m1, ...) names the children "0", "1", ...; Sequential(OrderedDict)
    keeps the given names. Supports len, iteration, indexing (a slice gives a Sequential
    of the same modules under their original names) and append.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self._add(str(name), module)
        else:
            for index, module in enumerate(modules):
                self._add(str(index), module)

    def _add(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {name!r} is not a Module, got {type(module).__name__}")
        setattr(self, name, module)

    def append(self, module):
        """Add a module at the end, named by its position; returns self."""
        self._add(str(len(self)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def forward(self, x):
        """The modules in order, with fusions that save whole passes over the activations:
        an eval-mode per-channel affine map (BatchNorm2d) after a module that folds_affine
        is folded into its weights, and a ReLU (GELU) right after a module that fuses_relu
        (fuses_gelu) is applied by that module while it writes its output; so is a 2x2
        MaxPool2d after a module that fuses_max_pool, whose backward still runs."""
        from fastconv.nn.activation import GELU, ReLU  # activation imports this module
        from fastconv.nn.pooling import MaxPool2d  # as does pooling
        modules = list(self._modules.values())
        fused = []
        index = 0
        while index < len(modules):
            module, options, taken = modules[index], {}, 1
            if module.folds_affine and not module.training and index + 1 < len(modules):
                affine = modules[index + 1]._eval_affine(module.out_channels)
                if affine is not None:
                    options["affine"], taken = affine, 2
            following = modules[index + taken] if index + taken < len(modules) else None
            if module.fuses_relu and type(following) is ReLU:
                options["relu"] = True
                taken += 1
            elif module.fuses_gelu and type(following) is GELU:
                options["gelu"] = following.approximate
                taken += 1
            elif (module.fuses_max_pool and type(following) is MaxPool2d
                  and following.pools_2x2()):
                options["max_pool"] = following
            x = module(x, **options)
            fused += range(index + 1, index + taken)
            index += taken + ("max_pool" in options)
        object.__setattr__(self, "_fused", fused)
        return x

    def backward(self, grad_output):
        modules = list(self._modules.values())
        fused = self.__dict__.get("_fused", ())
        for index in reversed(range(len(modules))):
            if index not in fused:
                grad_output = modules[index].backward(grad_output)
        return grad_output

    def backward_parameters(self, grad_output):
        """backward without the gradient of the input. The modules before the first one
        with a trainable parameter need no backward at all (a frozen stem); that one gets
        backward_parameters."""
        modules = list(self._modules.values())
        fused = self.__dict__.get("_fused", ())
        first = next((index for index, module in enumerate(modules)
                      if any(param.requires_grad for param in module.parameters())), None)
        if first is None:
            return
        for index in reversed(range(first + 1, len(modules))):
            if index not in fused:
                grad_output = modules[index].backward(grad_output)
        modules[first].backward_parameters(grad_output)


class Residual(Module):
    """A skip connection: body(x) + shortcut(x), with the identity when shortcut is None.

    Parameters
    ----------
    body : Module
        Maps (N, C, H, W) to the output shape.
    shortcut : Module or None
        Maps the input to the same shape as body (e.g. a strided 1x1 Conv2d and a
        BatchNorm2d when the body changes the shape).
    """

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            object.__setattr__(self, "shortcut", None)

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        out = self.body(x)
        if out.shape != skip.shape:
            raise ValueError(f"Residual: body output {out.shape} and shortcut output "
                             f"{skip.shape} must have the same shape")
        return out + skip

    def backward(self, grad_output):
        # Not +=: a branch may hand back grad_output itself (Identity) or a view of it.
        grad_skip = grad_output if self.shortcut is None else self.shortcut.backward(grad_output)
        return self.body.backward(grad_output) + grad_skip
