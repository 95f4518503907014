"""Which algorithm algo="auto" runs for each conv2d / conv2d_backward signature.

A signature is the pass ("forward" or "backward", with the backward's output_mask), the
input and weight shapes, the geometry, the dtype and the thread count. By default a fixed
heuristic chooses from the shapes alone. set_conv_autotune(True) instead times every
algorithm that applies on the first call of each new signature and keeps the fastest for
the process, optionally in a JSON cache file that later processes read instead of timing.
The file records the fastconv version, build and processor it was measured with; another
process ignores it (with a warning) unless they are its own.
Either way conv_algorithms() lists what each signature runs and why.

Timing is off by default: the algorithms agree only within float rounding, so a choice
that depends on the machine's load would make training irreproducible bit for bit.

At import, FASTCONV_AUTOTUNE=1 turns timing on and FASTCONV_AUTOTUNE_CACHE=path names the
cache file (used only with FASTCONV_AUTOTUNE=1).
"""
import copy
import json
import os
import platform
import statistics
import time
import warnings

from fastconv._serialize import write_atomic
from fastconv._isa import get_isa
from fastconv._threads import get_num_threads

# The heuristic takes Winograd for layers it supports with at least this many input and
# output channels. Measured at batch 64, one thread: 3 input channels run twice as slow
# as im2col (GEMMs that thin gain nothing from fewer multiplications and the transforms
# cost as much), 8 about even, 16 and more faster (forward 1.3-2.2x, backward 1.15-1.5x).
WINOGRAD_MIN_CHANNELS = 16
# Timing one candidate stops after this many runs (after a warm-up) or once its runs have
# taken TIMING_BUDGET seconds: the median of a few runs is stable enough to rank
# algorithms that differ by 10% or more, and a large layer's first call stays affordable.
TIMED_RUNS = 5
TIMING_BUDGET = 0.2
CACHE_FORMAT = "fastconv-conv-algorithms"
CACHE_VERSION = 2

_enabled = False
_cache_path = None
# The cache file's choices, by _signature_text(signature).
_cached = {}
# One record per signature seen since the last set_conv_autotune, as conv_algorithms() reports.
_choices = {}


def set_conv_autotune(enabled, cache=None):
    """Choose how algo="auto" picks the convolution algorithm.

    Parameters
    ----------
    enabled : bool
        False (the default): a fixed heuristic on the shapes, reproducible bit for bit.
        True: the first call of each new signature (pass, input and weight shapes,
        geometry, dtype, thread count) times every algorithm that applies (one warm-up,
        then the median of up to 5 runs or 0.2 s) and the process keeps the fastest.
    cache : str, os.PathLike or None
        A JSON file of measured choices (enabled=True only): read now (a missing file is
        fine; an unreadable or damaged one, or one measured with another fastconv
        version, build or processor, is ignored with a warning), consulted before
        timing, and rewritten atomically after every new measurement.

    Returns
    -------
    (enabled, cache) : the previous settings, so that set_conv_autotune(*previous)
    restores them. The table conv_algorithms() reports starts afresh.
    """
    fn = "set_conv_autotune"
    if not isinstance(enabled, bool):
        raise TypeError(f"{fn}: enabled must be True or False, got {enabled!r}")
    if cache is not None:
        if not isinstance(cache, (str, os.PathLike)):
            raise TypeError(f"{fn}: cache must be a path (str or os.PathLike) or None, "
                            f"got {type(cache).__name__}")
        if not enabled:
            raise ValueError(f"{fn}: cache needs enabled=True (the heuristic measures nothing), "
                             f"got cache={cache!r}")
        if not os.fspath(cache):
            raise ValueError(f"{fn}: cache must not be an empty path")
    global _enabled, _cache_path, _cached
    previous = _enabled, _cache_path
    _enabled, _cache_path = enabled, cache
    _cached = {} if cache is None else _read_cache(cache)
    _choices.clear()
    return previous


def conv_algorithms():
    """What algo="auto" chose for each signature seen since the last set_conv_autotune.

    Returns
    -------
    list of dict, in the order first seen, each with
        pass : "forward" or "backward"; output_mask : the backward's (grad_input,
        grad_weight, grad_bias) flags, None forward; input_shape, weight_shape,
        output_size (H_out, W_out); stride, padding (top/left), dilation : (h, w);
        groups; dtype : "float32" or "float64"; threads; isa : the ISA level;
        algo : the algorithm run; source : "heuristic", "measured" or "cache";
        milliseconds : {algorithm: median time} when measured (now or for the cache),
        else None.
    """
    return copy.deepcopy(list(_choices.values()))


def winograd_applies(weight, geometry):
    """Whether algo="winograd" supports the layer: 3x3 kernels at stride 1, no dilation, no groups."""
    g = geometry
    return (weight.shape[2:] == (3, 3) and (g.stride_h, g.stride_w) == (1, 1)
            and (g.dilation_h, g.dilation_w) == (1, 1) and g.groups == 1)


def choose(pass_, output_mask, input, weight, geometry, run):
    """The algorithm algo="auto" runs for this call; run(algo) repeats the call with algo."""
    signature = (pass_, output_mask, input.shape, weight.shape, geometry, input.dtype,
                 get_num_threads(), get_isa())
    record = _choices.get(signature)
    if record is None:
        record = _choices[signature] = _new_record(signature, weight, geometry, run)
    return record["algo"]


def _heuristic(weight, geometry):
    # A depthwise layer's GEMMs would be one row high: the direct kernel runs it several
    # times faster. Everything else, first layers with three input channels included,
    # measures faster as im2col + GEMM, except wide enough layers Winograd supports.
    if weight.shape[1] == 1:
        return "direct"
    if winograd_applies(weight, geometry) and min(weight.shape[:2]) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


def _new_record(signature, weight, geometry, run):
    pass_, output_mask, input_shape, weight_shape, g, dtype, threads, isa = signature
    record = {"pass": pass_, "output_mask": output_mask, "input_shape": input_shape,
              "weight_shape": weight_shape, "output_size": (g.out_h, g.out_w),
              "stride": (g.stride_h, g.stride_w), "padding": (g.pad_h, g.pad_w),
              "dilation": (g.dilation_h, g.dilation_w), "groups": g.groups,
              "dtype": dtype.name, "threads": threads, "isa": isa}
    if not _enabled:
        return dict(record, algo=_heuristic(weight, geometry), source="heuristic",
                    milliseconds=None)
    candidates = ["direct", "im2col"]
    if winograd_applies(weight, geometry):
        candidates.append("winograd")
    text = _signature_text(signature)
    cached = _cached.get(text)
    # A hand-edited file could name an algorithm this layer cannot run.
    if cached is not None and cached["algo"] in candidates:
        return dict(record, source="cache", **cached)
    milliseconds = {candidate: _median_milliseconds(run, candidate) for candidate in candidates}
    choice = {"algo": min(candidates, key=milliseconds.get), "milliseconds": milliseconds}
    if _cache_path is not None:
        _cached[text] = choice
        _write_cache(_cache_path)
    return dict(record, source="measured", **choice)


def _median_milliseconds(run, algo):
    run(algo)
    times = []
    started = time.perf_counter()
    while len(times) < TIMED_RUNS and (not times or time.perf_counter() - started < TIMING_BUDGET):
        start = time.perf_counter()
        run(algo)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _signature_text(signature):
    """The signature as the cache file's key: JSON, so it reads the same in any process."""
    pass_, output_mask, input_shape, weight_shape, geometry, dtype, threads, isa = signature
    return json.dumps([pass_, output_mask, input_shape, weight_shape, geometry, dtype.name,
                       threads, isa])


def _read_cache(path):
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warnings.warn(f"set_conv_autotune: ignoring cache {os.fspath(path)!r}, which cannot be "
                      f"read: {error}", stacklevel=3)
        return {}
    if not _valid_cache(document):
        warnings.warn(f"set_conv_autotune: ignoring cache {os.fspath(path)!r}, which is not a "
                      f"{CACHE_FORMAT} version {CACHE_VERSION} file", stacklevel=3)
        return {}
    if document.get("build") != _build():
        warnings.warn(f"set_conv_autotune: ignoring cache {os.fspath(path)!r}, measured with "
                      f"{document.get('build')}, not with this {_build()}", stacklevel=3)
        return {}
    return document["choices"]


def _build():
    """What the timings depend on besides the signature: fastconv's version, its build,
    the ISA level in use and the processor."""
    from fastconv import __version__
    from fastconv._isa import get_isa, kernels
    from fastconv._openmp import openmp_enabled
    return {"fastconv": __version__, "openmp": openmp_enabled(), "isa": get_isa(),
            "winograd_gemm_kernel": kernels.winograd.FLOAT32_GEMM_KERNEL,
            "processor": _processor()}


def _processor():
    """The processor's model name where Linux tells it, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _valid_cache(document):
    if not (isinstance(document, dict) and document.get("format") == CACHE_FORMAT
            and document.get("version") == CACHE_VERSION
            and isinstance(document.get("choices"), dict)):
        return False
    for choice in document["choices"].values():
        if not (isinstance(choice, dict) and set(choice) == {"algo", "milliseconds"}
                and isinstance(choice["algo"], str) and isinstance(choice["milliseconds"], dict)
                and all(isinstance(value, (int, float))
                        for value in choice["milliseconds"].values())):
            return False
    return True


def _write_cache(path):
    document = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "build": _build(),
                "choices": _cached}
    data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
    try:
        write_atomic(path, lambda f: f.write(data))
    except OSError as error:
        # The measurement still holds for this process; only later ones lose it.
        warnings.warn(f"fastconv: cannot write the conv autotune cache {os.fspath(path)!r}: "
                      f"{error}")


def _configure_from_environment():
    setting = os.environ.get("FASTCONV_AUTOTUNE", "")
    cache = os.environ.get("FASTCONV_AUTOTUNE_CACHE") or None
    if setting not in ("", "0", "1"):
        warnings.warn(f"fastconv: ignoring FASTCONV_AUTOTUNE={setting!r}; use 1 or 0")
    if setting == "1":
        set_conv_autotune(True, cache)
    elif cache is not None:
        warnings.warn("fastconv: ignoring FASTCONV_AUTOTUNE_CACHE without FASTCONV_AUTOTUNE=1")


_configure_from_environment()
