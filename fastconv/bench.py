"""Side-by-side benchmarks: fastconv against the NumPy reference and PyTorch, in one process.

`fastconv bench` first measures the machine's float32 GEMM throughput (a numpy matmul),
then times every layer case forward and forward+backward, and the training steps and
inference of NET-S, NET-M, airnet and airnet-wide (fastconv.models), with every library
limited to the same thread count. The pytest benchmarks in bench/ build their callables
from the same cases.

Timing: each figure is the median over up to `repeats` calls after one warm-up call
(a plan with a time budget stops repeating once the budget has been spent timing).
FLOPs count a multiply-add as 2; forward+backward counts 3x the forward (grad_input,
grad_weight and grad_bias are always all computed).

Plans:
  full   layers at batch 64, nets at batch 128; 10 repeats (nets 5), reference 3.
  quick  under a minute on 2 cores: batch 16 everywhere, at most 3 repeats and 0.3 s
         of timed calls per figure; the reference runs forward only, once, without
         warm-up.
  tiny   (hidden, for tests) batch 2 everywhere, a 256^3 GEMM, 1 repeat.

The report (`fastconv bench --json PATH` writes it) is a dict: fastconv and torch
versions (torch None when left out, torch_note saying why), threads, plan, gemm
{size, gflops}, autotune (whether algo="auto" chose by timing), conv_algorithms (what it
chose for each conv2d signature, as fastconv.conv_algorithms() gives it) and rows. Every row has the fields ROW_FIELDS, None where not measured:
  case, pass        the case id (e.g. conv2d-N64-C64-F128-16x16-k3s1p1) and
                    "forward" / "forward+backward", or "train" / "inference" for networks
  batch, flops      flops: forward 2*N*C_out*H_out*W_out*C_in/groups*kH*kW, 3x that for
                    forward+backward; None for pooling and networks
  fastconv_ms, reference_ms, torch_ms            medians in milliseconds
  speedup           reference_ms / fastconv_ms
  gflops, peak_percent                           fastconv's, and as % of the GEMM figure
  torch_ratio       torch_ms / fastconv_ms (above 1: fastconv is faster)
  images_per_s, torch_images_per_s               networks only
  notes             why figures are missing (an op not available yet, a skip by the plan)
"""
import dataclasses
import fnmatch
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from fastconv._shapes import conv_output_size
from fastconv.models import airnet, airnet_wide, net_m, net_s

FLOAT = np.float32


@dataclass(frozen=True)
class Plan:
    """How big and how often to measure."""
    batch: int
    net_batch: int
    gemm_size: int
    repeats: int
    net_repeats: int
    reference_repeats: int
    reference_warmup: bool
    reference_backward: bool
    budget_seconds: Optional[float] = None


FULL = Plan(batch=64, net_batch=128, gemm_size=2048, repeats=10, net_repeats=5,
            reference_repeats=3, reference_warmup=True, reference_backward=True)
QUICK = Plan(batch=16, net_batch=16, gemm_size=2048, repeats=3, net_repeats=3,
             reference_repeats=1, reference_warmup=False, reference_backward=False,
             budget_seconds=0.3)
TINY = Plan(batch=2, net_batch=2, gemm_size=256, repeats=1, net_repeats=1,
            reference_repeats=1, reference_warmup=False, reference_backward=True)

# The GEMM figure is the yardstick for every GFLOPS column: worth a few more repeats.
GEMM_REPEATS = 5
# The pause after it, while BLAS's threads stop spinning (see run).
BLAS_SETTLE_SECONDS = 0.5
ROW_FIELDS = ("case", "pass", "batch", "flops", "fastconv_ms", "reference_ms", "speedup",
              "gflops", "peak_percent", "torch_ms", "torch_ratio", "images_per_s",
              "torch_images_per_s", "notes")


class Unavailable(Exception):
    """A case cannot run in this library (yet); the message says what is missing."""


def _function(module, name):
    function = getattr(module, name, None)
    if function is None:
        raise Unavailable(f"{module.__name__}.{name} is not available yet")
    return function


def _numpy_module(library):
    if library == "fastconv":
        import fastconv.functional as module
    else:
        import fastconv.reference as module
    return module


def _standard_normal(rng, shape):
    return rng.standard_normal(tuple(shape), dtype=FLOAT)


def _torch_runner(function, arrays, kwargs, backward, rng):
    """A callable running a torch.nn.functional op on arrays, optionally with its backward.

    grad_output is drawn from rng after the inputs, as the NumPy runners draw it, so all
    libraries see the same numbers.
    """
    import torch
    tensors = [torch.from_numpy(array) for array in arrays]
    if not backward:
        def forward():
            with torch.no_grad():
                function(*tensors, **kwargs)
        return forward

    def first_output():
        output = function(*tensors, **kwargs)
        # max_pool2d with return_indices gives (output, indices).
        return output[0] if isinstance(output, tuple) else output

    for tensor in tensors:
        tensor.requires_grad_()
    grad_output = torch.from_numpy(_standard_normal(rng, first_output().shape))

    def forward_backward():
        for tensor in tensors:
            tensor.grad = None
        first_output().backward(grad_output)
    return forward_backward


@dataclass(frozen=True)
class Conv:
    """A conv2d layer case on square images, or conv_transpose2d when transposed."""
    in_channels: int
    out_channels: int
    size: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False

    passes = ("forward", "forward+backward")
    libraries = ("fastconv", "reference", "torch")

    @property
    def op(self):
        return "conv_transpose2d" if self.transposed else "conv2d"

    def label(self, batch):
        """The shape alone, e.g. N64-C64-F128-16x16-k3s1p1."""
        geometry = f"k{self.kernel}s{self.stride}"
        geometry += f"p{self.padding}" if self.padding else ""
        geometry += f"d{self.dilation}" if self.dilation > 1 else ""
        geometry += f"g{self.groups}" if self.groups > 1 else ""
        return f"N{batch}-C{self.in_channels}-F{self.out_channels}-{self.size}x{self.size}-{geometry}"

    def id(self, batch):
        return f"{self.op}-{self.label(batch)}"

    def flops(self, batch, pass_):
        # A transposed conv does per input pixel what a conv does per output pixel.
        if self.transposed:
            pixels, channels, fan_in = self.size ** 2, self.in_channels, self.out_channels
        else:
            out = conv_output_size(self.size, self.kernel, self.stride, self.padding,
                                   self.padding, self.dilation)
            pixels, channels, fan_in = out ** 2, self.out_channels, self.in_channels
        forward = 2 * batch * channels * pixels * fan_in // self.groups * self.kernel ** 2
        return forward if pass_ == "forward" else 3 * forward

    def runner(self, library, pass_, batch, seed=0, algo="auto"):
        """A callable running this case once in library ("fastconv", "reference" or "torch")."""
        rng = np.random.default_rng(seed)
        if self.transposed:
            weight_shape = (self.in_channels, self.out_channels // self.groups)
            kwargs = {"stride": self.stride, "padding": self.padding, "groups": self.groups,
                      "dilation": self.dilation}
        else:
            weight_shape = (self.out_channels, self.in_channels // self.groups)
            kwargs = {"stride": self.stride, "padding": self.padding,
                      "dilation": self.dilation, "groups": self.groups}
        input = _standard_normal(rng, (batch, self.in_channels, self.size, self.size))
        weight = _standard_normal(rng, weight_shape + (self.kernel, self.kernel))
        bias = _standard_normal(rng, (self.out_channels,))
        backward = pass_ == "forward+backward"
        if library == "torch":
            import torch
            function = getattr(torch.nn.functional, self.op)
            return _torch_runner(function, (input, weight, bias), kwargs, backward, rng)
        module = _numpy_module(library)
        forward = _function(module, self.op)
        if library == "fastconv" and not self.transposed:
            kwargs["algo"] = algo
        if not backward:
            return lambda: forward(input, weight, bias, **kwargs)
        backward_function = _function(module, self.op + "_backward")
        grad_output = _standard_normal(rng, forward(input, weight, bias, **kwargs).shape)

        def forward_backward():
            forward(input, weight, bias, **kwargs)
            backward_function(grad_output, input, weight, **kwargs)
        return forward_backward


@dataclass(frozen=True)
class Pool:
    """A max_pool2d (with indices) or avg_pool2d case on square images."""
    kind: str
    channels: int
    size: int
    kernel: int
    stride: int
    padding: int = 0

    passes = ("forward", "forward+backward")
    libraries = ("fastconv", "reference", "torch")

    @property
    def op(self):
        return f"{self.kind}_pool2d"

    def label(self, batch):
        """The shape alone, e.g. N64-C64-32x32-k3s2p1."""
        geometry = f"k{self.kernel}s{self.stride}" + (f"p{self.padding}" if self.padding else "")
        return f"N{batch}-C{self.channels}-{self.size}x{self.size}-{geometry}"

    def id(self, batch):
        return f"{self.op}-{self.label(batch)}"

    def flops(self, batch, pass_):
        return None

    def runner(self, library, pass_, batch, seed=0):
        """A callable running this case once in library ("fastconv", "reference" or "torch")."""
        rng = np.random.default_rng(seed)
        input = _standard_normal(rng, (batch, self.channels, self.size, self.size))
        kwargs = {"kernel_size": self.kernel, "stride": self.stride, "padding": self.padding}
        backward = pass_ == "forward+backward"
        if library == "torch":
            import torch
            function = getattr(torch.nn.functional, self.op)
            if self.kind == "max":
                kwargs["return_indices"] = True
            return _torch_runner(function, (input,), kwargs, backward, rng)
        module = _numpy_module(library)
        forward = _function(module, self.op)
        if not backward:
            return lambda: forward(input, **kwargs)
        backward_function = _function(module, self.op + "_backward")
        if self.kind == "max":
            grad_output = _standard_normal(rng, forward(input, **kwargs)[0].shape)

            def forward_backward():
                _, indices = forward(input, **kwargs)
                backward_function(grad_output, indices, input.shape)
        else:
            grad_output = _standard_normal(rng, forward(input, **kwargs).shape)

            def forward_backward():
                forward(input, **kwargs)
                backward_function(grad_output, input.shape, **kwargs)
        return forward_backward


@dataclass(frozen=True)
class Net:
    """A whole network from fastconv.models: a training step (SGD) or inference on a batch."""
    name: str
    build: object

    passes = ("train", "inference")
    libraries = ("fastconv", "torch")

    def id(self, batch):
        return f"{self.name}-N{batch}"

    label = id

    def flops(self, batch, pass_):
        return None

    def runner(self, library, pass_, batch, seed=0):
        """A callable running one training step or one inference batch in library."""
        rng = np.random.default_rng(seed)
        images = _standard_normal(rng, (batch, 3, 32, 32))
        labels = rng.integers(0, 10, batch)
        if library == "torch":
            return self._torch_runner(self.build, pass_, images, labels, seed)
        try:
            import fastconv.nn as nn
        except ImportError as error:
            raise Unavailable(f"fastconv.nn is not available yet ({error})") from None
        try:
            model = self.build(nn)
        except AttributeError as error:
            raise Unavailable(f"fastconv.nn is incomplete ({error})") from None
        if pass_ == "inference":
            model.eval()
            return lambda: model(images)
        try:
            import fastconv.optim as optim
        except ImportError as error:
            raise Unavailable(f"fastconv.optim is not available yet ({error})") from None
        loss_function = _function(nn, "CrossEntropyLoss")()
        optimizer = _function(optim, "SGD")(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def train_step():
            loss_function(model(images), labels)
            model.zero_grad()
            # As in PyTorch's step, whose images do not require grad: the first layer
            # skips the input gradient.
            model.backward_parameters(loss_function.backward())
            optimizer.step()
        return train_step

    @staticmethod
    def _torch_runner(build, pass_, images, labels, seed):
        import torch
        torch.manual_seed(seed)
        # channels_last: oneDNN's fastest layout for convolutions on the CPU.
        model = build(torch.nn).to(memory_format=torch.channels_last)
        images = torch.from_numpy(images).to(memory_format=torch.channels_last)
        labels = torch.from_numpy(labels)
        if pass_ == "inference":
            model.eval()

            def infer():
                with torch.no_grad():
                    model(images)
            return infer
        loss_function = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            loss_function(model(images), labels).backward()
            optimizer.step()
        return train_step


LAYER_CASES = (
    Conv(3, 32, 32, 3, padding=1),
    Conv(32, 64, 32, 3, padding=1),
    Conv(64, 128, 16, 3, padding=1),
    Conv(128, 256, 8, 3, padding=1),
    Conv(64, 64, 32, 3, stride=2, padding=1),
    Conv(32, 32, 32, 5, padding=2),
    Conv(64, 64, 16, 3, padding=2, dilation=2),
    Conv(64, 64, 32, 3, padding=1, groups=64),
    Conv(128, 64, 16, 1),
    Conv(64, 32, 16, 4, stride=2, padding=1, transposed=True),
    Conv(128, 64, 8, 2, stride=2, transposed=True),
    Pool("max", 64, 32, 2, stride=2),
    Pool("max", 64, 32, 3, stride=2, padding=1),
    Pool("avg", 64, 32, 2, stride=2),
)
NET_CASES = (Net("NET-S", net_s), Net("NET-M", net_m), Net("airnet", airnet),
             Net("airnet-wide", airnet_wide))


def median_seconds(function, repeats, warmup=True, budget_seconds=None):
    """Median wall time of repeats calls, after one untimed warm-up call when warmup.

    With budget_seconds, stops early once the timed calls add up to that much
    (there is always at least one).
    """
    if warmup:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if budget_seconds is not None and sum(times) >= budget_seconds:
            break
    return statistics.median(times)


def gemm_gflops(size, repeats):
    """float32 GEMM throughput of numpy's BLAS at its current thread limit: median GFLOPS."""
    rng = np.random.default_rng(0)
    a = _standard_normal(rng, (size, size))
    b = _standard_normal(rng, (size, size))
    out = np.empty_like(a)
    seconds = median_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2 * size ** 3 / seconds / 1e9


def import_torch():
    """(torch, None), or (None, the reason) when it does not import."""
    try:
        import torch
    except Exception as error:  # a broken install raises more than ImportError
        return None, f"torch does not import ({type(error).__name__}: {error})"
    return torch, None


def case_batch(case, plan):
    return plan.net_batch if isinstance(case, Net) else plan.batch


def select_cases(patterns, plan):
    """The cases whose id (at the plan's batch) matches any glob pattern; all when none.

    A pattern matches anywhere in the id: "k5" selects the 5x5 convs, "NET-S" NET-S.
    """
    cases = LAYER_CASES + NET_CASES
    if not patterns:
        return cases
    return tuple(case for case in cases
                 if any(fnmatch.fnmatchcase(case.id(case_batch(case, plan)).lower(),
                                            f"*{pattern.lower()}*") for pattern in patterns))


def _measure(case, pass_, batch, repeats, library, plan):
    """Median milliseconds of one library on one row, or (None, reason) when it cannot run."""
    warmup = True
    if library == "reference":
        if pass_ != "forward" and not plan.reference_backward:
            return None, "reference forward+backward skipped by this plan (--quick)"
        repeats, warmup = plan.reference_repeats, plan.reference_warmup
    try:
        function = case.runner(library, pass_, batch)
    except Unavailable as reason:
        return None, str(reason)
    return 1e3 * median_seconds(function, repeats, warmup, plan.budget_seconds), None


def _ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def measure_row(case, pass_, plan, peak_gflops, use_torch):
    """One table row: every library on one case and pass."""
    is_net = isinstance(case, Net)
    batch = case_batch(case, plan)
    repeats = plan.net_repeats if is_net else plan.repeats
    libraries = [library for library in case.libraries if use_torch or library != "torch"]
    times, notes = {}, []
    for library in libraries:
        times[library], note = _measure(case, pass_, batch, repeats, library, plan)
        if note:
            notes.append(note)
    fastconv_ms, torch_ms = times.get("fastconv"), times.get("torch")
    flops = case.flops(batch, pass_)
    gflops = peak_percent = None
    if flops is not None and fastconv_ms is not None:
        gflops = flops / fastconv_ms / 1e6
        peak_percent = 100 * gflops / peak_gflops
    images_per_s = torch_images_per_s = None
    if is_net:
        images_per_s = _ratio(1e3 * batch, fastconv_ms)
        torch_images_per_s = _ratio(1e3 * batch, torch_ms)
    return {
        "case": case.id(batch), "pass": pass_, "batch": batch, "flops": flops,
        "fastconv_ms": fastconv_ms, "reference_ms": times.get("reference"),
        "speedup": _ratio(times.get("reference"), fastconv_ms),
        "gflops": gflops, "peak_percent": peak_percent,
        "torch_ms": torch_ms, "torch_ratio": _ratio(torch_ms, fastconv_ms),
        "images_per_s": images_per_s, "torch_images_per_s": torch_images_per_s,
        "notes": notes,
    }


def run(plan=FULL, threads=None, use_torch=True, patterns=(), progress=True, autotune=False):
    """Measure the GEMM peak and every selected case; returns the report as a dict.

    autotune is passed to fastconv.set_conv_autotune for the run (the process's own
    setting is restored after): False times what the heuristic picks, True what timing
    picks in each case's warm-up call.
    """
    import fastconv
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    torch, torch_note = import_torch() if use_torch else (None, None)
    # threadpool_limits reaches only the libraries already loaded: load the kernels first.
    import fastconv.functional  # noqa: F401
    import fastconv.reference  # noqa: F401
    threads = threads or fastconv.get_num_threads()
    cases = select_cases(patterns, plan)
    previous_threads = fastconv.get_num_threads()
    previous_torch_threads = torch.get_num_threads() if torch else None
    fastconv.set_num_threads(threads)
    if torch:
        torch.set_num_threads(threads)
    previous_autotune = fastconv.set_conv_autotune(autotune)
    rows = []
    try:
        with threadpool_limits(limits=threads):
            peak = gemm_gflops(plan.gemm_size, GEMM_REPEATS)
            # BLAS's threads spin for tens of milliseconds after the GEMM, taking the
            # cores from whatever runs next: the first row's forward read 2-5x slow.
            time.sleep(BLAS_SETTLE_SECONDS)
            work = [(case, pass_) for case in cases for pass_ in case.passes]
            bar = tqdm(work, desc="fastconv bench", unit="row", file=sys.stderr,
                       disable=not progress, leave=False)
            for case, pass_ in bar:
                bar.set_postfix_str(f"{case.id(case_batch(case, plan))} {pass_}")
                rows.append(measure_row(case, pass_, plan, peak, torch is not None))
            bar.close()
        conv_algorithms = fastconv.conv_algorithms()
    finally:
        fastconv.set_conv_autotune(*previous_autotune)
        fastconv.set_num_threads(previous_threads)
        if torch:
            torch.set_num_threads(previous_torch_threads)
    info = fastconv.build_info()
    return {
        "fastconv": fastconv.__version__,
        "isa": info["isa"],
        "isa_available": info["isa_available"],
        "torch": torch.__version__ if torch else None,
        "torch_note": torch_note,
        "threads": threads,
        "plan": dataclasses.asdict(plan),
        "gemm": {"size": plan.gemm_size, "gflops": peak},
        "autotune": autotune,
        "conv_algorithms": conv_algorithms,
        "rows": rows,
    }


def write_json(report, path):
    """Write the report to path atomically: a temporary file beside it, then os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".fastconv-bench-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _format(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header, lines):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    rule = "  ".join("-" * width for width in widths)
    out = [rule]
    for index, cells in enumerate([header, *lines]):
        # The case and pass columns are text; the figures line up on the right.
        out.append("  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                             for column, (cell, width) in enumerate(zip(cells, widths))))
        if index == 0:
            out.append(rule)
    out.append(rule)
    return "\n".join(out)


def format_report(report):
    """The report as text: a header line, the layer table, the network table and notes."""
    torch_text = f"PyTorch {report['torch']}" if report["torch"] else "no PyTorch"
    autotune_text = ", algorithms autotuned" if report["autotune"] else ""
    lines = [f"fastconv {report['fastconv']} (ISA level {report['isa']} of "
             f"{', '.join(report['isa_available'])}), {torch_text}, {report['threads']} threads"
             f"{autotune_text}; "
             f"float32 GEMM {report['gemm']['size']}^3: {report['gemm']['gflops']:.1f} GFLOPS"]
    if report["torch_note"]:
        lines.append(f"PyTorch column skipped: {report['torch_note']}")
    layer_rows = [row for row in report["rows"] if row["pass"] in ("forward", "forward+backward")]
    net_rows = [row for row in report["rows"] if row not in layer_rows]
    if layer_rows:
        lines.append(_table(
            ["case", "pass", "fastconv ms", "reference ms", "speed-up", "GFLOPS", "% peak",
             "torch ms", "torch/fc"],
            [[row["case"], row["pass"], _format(row["fastconv_ms"], 2),
              _format(row["reference_ms"], 1), _format(row["speedup"], 1),
              _format(row["gflops"], 1), _format(row["peak_percent"], 0),
              _format(row["torch_ms"], 2), _format(row["torch_ratio"], 2)]
             for row in layer_rows]))
    if net_rows:
        lines.append(_table(
            ["network", "pass", "fastconv ms", "fastconv img/s", "torch ms", "torch img/s",
             "torch/fc"],
            [[row["case"], row["pass"], _format(row["fastconv_ms"], 1),
              _format(row["images_per_s"], 0), _format(row["torch_ms"], 1),
              _format(row["torch_images_per_s"], 0), _format(row["torch_ratio"], 2)]
             for row in net_rows]))
    lines.append("speed-up = reference ms / fastconv ms; torch/fc = torch ms / fastconv ms "
                 "(above 1: fastconv is faster); % peak = GFLOPS / GEMM GFLOPS")
    notes = {}
    for row in report["rows"]:
        for note in row["notes"]:
            notes.setdefault(note, []).append(row["case"])
    for note, cases in notes.items():
        more = f" and {len(cases) - 1} more" if len(cases) > 1 else ""
        lines.append(f"note: {note} [{cases[0]}{more}]")
    return "\n".join(lines)
