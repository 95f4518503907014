"""algo="auto" by heuristic and by measurement: set_conv_autotune and conv_algorithms.

With autotuning on, auto gives bitwise the result of the algorithm conv_algorithms()
reports (the measured winner, or any winner forced by a stubbed timer), forward and
backward; on a layer where the three algorithms differ in the last bits, so that running
the wrong one would show. With it off, the heuristic's choice is recorded and nothing is
timed. The cache file carries choices across a process restart (set through the
environment variables), is used as written, and is ignored with a warning when damaged,
unwritable, or measured by another fastconv version, build or processor; bad arguments
are rejected.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv import _autotune

ALGORITHMS = ("direct", "im2col", "winograd")
PASSES = ("forward", "backward")
# A 3x3 stride-1 layer, so all three algorithms apply, small enough to time quickly.
INPUT_SHAPE = (2, 16, 9, 7)
WEIGHT_SHAPE = (16, 16, 3, 3)
PADDING = 1


def layer(dtype=np.float32, input_shape=INPUT_SHAPE, weight_shape=WEIGHT_SHAPE):
    rng = np.random.default_rng(0)
    input = rng.standard_normal(input_shape).astype(dtype)
    weight = rng.standard_normal(weight_shape).astype(dtype)
    return input, weight


def run_pass(pass_, input, weight, algo, groups=1):
    """The pass's results as a tuple of arrays (grad_bias included backward).

    With a bias: without one, direct and im2col forward sum the same products in the same
    order and agree bitwise, and a test could not tell which of them ran."""
    bias = np.random.default_rng(2).standard_normal(weight.shape[0]).astype(input.dtype)
    output = F.conv2d(input, weight, bias, padding=PADDING, groups=groups, algo=algo)
    if pass_ == "forward":
        return (output,)
    grad_output = np.random.default_rng(1).standard_normal(output.shape).astype(input.dtype)
    return F.conv2d_backward(grad_output, input, weight, padding=PADDING, groups=groups,
                             algo=algo)


def identical(results, expected):
    return all(np.array_equal(result, other) for result, other in zip(results, expected))


def only_record():
    records = fastconv.conv_algorithms()
    assert len(records) == 1
    return records[0]


@pytest.fixture
def heuristic():
    """Autotuning off (whatever the environment says) and an empty table; then restored."""
    previous = fastconv.set_conv_autotune(False)
    yield
    fastconv.set_conv_autotune(*previous)


@pytest.fixture
def autotune(heuristic, tmp_path):
    """Autotuning on with a fresh cache file, the fixture's value."""
    cache = tmp_path / "conv_algorithms.json"
    fastconv.set_conv_autotune(True, cache=cache)
    return cache


def forbid_timing(monkeypatch):
    def fail(run, algo):
        raise AssertionError(f"timed {algo} although no timing was expected")
    monkeypatch.setattr(_autotune, "_median_milliseconds", fail)


@pytest.mark.parametrize("pass_", PASSES)
def test_measured_choice_is_the_fastest_and_what_auto_runs(autotune, pass_):
    input, weight = layer()
    explicit = {algo: run_pass(pass_, input, weight, algo) for algo in ALGORITHMS}
    # Otherwise the comparison below could not tell the algorithms apart.
    assert not any(identical(explicit[a], explicit[b])
                   for a in ALGORITHMS for b in ALGORITHMS if a < b)
    results = run_pass(pass_, input, weight, "auto")
    record = fastconv.conv_algorithms()[-1]
    assert (record["pass"], record["source"]) == (pass_, "measured")
    assert set(record["milliseconds"]) == set(ALGORITHMS)
    assert record["algo"] == min(record["milliseconds"], key=record["milliseconds"].get)
    assert identical(results, explicit[record["algo"]])


@pytest.mark.parametrize("winner", ALGORITHMS)
@pytest.mark.parametrize("pass_", PASSES)
def test_auto_runs_the_reported_winner(autotune, monkeypatch, pass_, winner):
    timed = []

    def stub_timer(run, algo):
        timed.append(algo)
        return 1.0 if algo == winner else 2.0
    monkeypatch.setattr(_autotune, "_median_milliseconds", stub_timer)
    input, weight = layer()
    results = run_pass(pass_, input, weight, "auto")
    records = fastconv.conv_algorithms()
    # Backward also runs the forward pass, timed first.
    assert timed == list(ALGORITHMS) * len(records)
    assert [record["algo"] for record in records] == [winner] * len(records)
    assert identical(results, run_pass(pass_, input, weight, winner))
    loser = "im2col" if winner == "direct" else "direct"
    assert not identical(results, run_pass(pass_, input, weight, loser))
    # A signature already seen is not timed again.
    run_pass(pass_, input, weight, "auto")
    assert len(timed) == len(ALGORITHMS) * len(records)


@pytest.mark.parametrize("weight_shape, groups, expected", [
    ((16, 1, 3, 3), 16, "direct"),            # depthwise
    ((16, 16, 3, 3), 1, "winograd"),
    ((8, 16, 3, 3), 1, "im2col"),             # too few output channels for Winograd
    ((16, 16, 3, 2), 1, "im2col"),            # not 3x3
], ids=["depthwise", "wide-3x3", "narrow-3x3", "3x2"])
@pytest.mark.parametrize("pass_", PASSES)
def test_heuristic_choice_is_recorded(heuristic, monkeypatch, pass_, weight_shape, groups,
                                      expected):
    forbid_timing(monkeypatch)
    input, weight = layer(np.float64, weight_shape=weight_shape)
    results = run_pass(pass_, input, weight, "auto", groups)
    records = fastconv.conv_algorithms()
    assert [record["pass"] for record in records] == ["forward", "backward"][:len(records)]
    record = records[-1]
    assert record == {
        "pass": pass_, "output_mask": None if pass_ == "forward" else (True, True, True),
        "input_shape": INPUT_SHAPE, "weight_shape": weight_shape,
        "output_size": (INPUT_SHAPE[2] + 2 * PADDING - weight_shape[2] + 1,
                        INPUT_SHAPE[3] + 2 * PADDING - weight_shape[3] + 1),
        "stride": (1, 1), "padding": (PADDING, PADDING), "dilation": (1, 1), "groups": groups,
        "dtype": "float64", "threads": fastconv.get_num_threads(), "isa": fastconv.get_isa(),
        "algo": expected,
        "source": "heuristic", "milliseconds": None}
    assert identical(results, run_pass(pass_, input, weight, expected, groups))


def test_signature_includes_dtype_and_threads(heuristic):
    previous_threads = fastconv.get_num_threads()
    try:
        for threads in (1, 2, 1):
            fastconv.set_num_threads(threads)
            for dtype in (np.float32, np.float64, np.float32):
                F.conv2d(*layer(dtype), padding=PADDING)
    finally:
        fastconv.set_num_threads(previous_threads)
    records = fastconv.conv_algorithms()
    assert [(record["threads"], record["dtype"]) for record in records] == [
        (1, "float32"), (1, "float64"), (2, "float32"), (2, "float64")]
    records[0]["algo"] = "changed"
    assert fastconv.conv_algorithms()[0]["algo"] == "winograd"


def run_in_fresh_interpreter(code, cwd, **environment):
    """Run code after `import fastconv` in a new process with these environment variables."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ, **environment)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", "import fastconv\n" + code], env=env,
                            capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


RESTART_CODE = """
import json, numpy as np
import fastconv.functional as F
fastconv.set_num_threads(1)
rng = np.random.default_rng(0)
input = rng.standard_normal((2, 16, 9, 7)).astype(np.float32)
weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
output = F.conv2d(input, weight, padding=1)
F.conv2d_backward(np.ones_like(output), input, weight, padding=1, output_mask=(True, True, False))
print(json.dumps(fastconv.conv_algorithms()))
"""


def test_cache_survives_a_restart(tmp_path):
    environment = {"FASTCONV_AUTOTUNE": "1",
                   "FASTCONV_AUTOTUNE_CACHE": str(tmp_path / "conv_algorithms.json")}
    first = run_in_fresh_interpreter(RESTART_CODE, tmp_path, **environment)
    forbid = ("import fastconv._autotune as autotune\n"
              "def fail(run, algo): raise AssertionError('timed ' + algo)\n"
              "autotune._median_milliseconds = fail\n")
    second = run_in_fresh_interpreter(forbid + RESTART_CODE, tmp_path, **environment)
    assert "Warning" not in first.stderr + second.stderr
    first, second = json.loads(first.stdout), json.loads(second.stdout)
    assert [record["source"] for record in first] == ["measured", "measured"]
    assert [record["source"] for record in second] == ["cache", "cache"]
    for record in first:
        record["source"] = "cache"
    assert second == first


def edit_cached_choices(cache, algo):
    document = json.loads(cache.read_text())
    for choice in document["choices"].values():
        choice["algo"] = algo
    cache.write_text(json.dumps(document))


@pytest.mark.parametrize("pass_", PASSES)
def test_cached_choice_is_used_as_written(autotune, monkeypatch, pass_):
    input, weight = layer()
    run_pass(pass_, input, weight, "auto")
    measured = fastconv.conv_algorithms()[-1]["algo"]
    other = "winograd" if measured != "winograd" else "direct"
    edit_cached_choices(autotune, other)
    fastconv.set_conv_autotune(True, cache=autotune)
    forbid_timing(monkeypatch)
    results = run_pass(pass_, input, weight, "auto")
    record = fastconv.conv_algorithms()[-1]
    assert (record["algo"], record["source"]) == (other, "cache")
    assert identical(results, run_pass(pass_, input, weight, other))


def test_cached_choice_that_does_not_apply_is_measured_again(autotune):
    input, weight = layer(weight_shape=(16, 16, 3, 2))
    F.conv2d(input, weight, padding=PADDING)
    edit_cached_choices(autotune, "winograd")
    fastconv.set_conv_autotune(True, cache=autotune)
    F.conv2d(input, weight, padding=PADDING)
    record = only_record()
    assert record["source"] == "measured" and record["algo"] != "winograd"
    assert set(record["milliseconds"]) == {"direct", "im2col"}


VALID_HEADER = {"format": _autotune.CACHE_FORMAT, "version": _autotune.CACHE_VERSION}
DAMAGED_CACHES = {
    "garbage": b"\x00\xff\xfe not json",
    "truncated": json.dumps(dict(VALID_HEADER, choices={})).encode()[:-3],
    "list": b"[]",
    "other-format": json.dumps(dict(VALID_HEADER, format="other", choices={})).encode(),
    "newer-version": json.dumps(dict(VALID_HEADER, version=_autotune.CACHE_VERSION + 1,
                                     choices={})).encode(),
    "choices-not-a-dict": json.dumps(dict(VALID_HEADER, choices=[])).encode(),
    "algo-not-a-string": json.dumps(dict(VALID_HEADER, choices={
        "key": {"algo": 3, "milliseconds": {}}})).encode(),
    "milliseconds-not-numbers": json.dumps(dict(VALID_HEADER, choices={
        "key": {"algo": "direct", "milliseconds": {"direct": "fast"}}})).encode(),
}


@pytest.mark.parametrize("contents", DAMAGED_CACHES.values(), ids=DAMAGED_CACHES.keys())
def test_damaged_cache_is_ignored_with_a_warning(autotune, contents):
    autotune.write_bytes(contents)
    with pytest.warns(UserWarning, match=re.escape(str(autotune))):
        fastconv.set_conv_autotune(True, cache=autotune)
    input, weight = layer()
    expected = F.conv2d(input, weight, padding=PADDING, algo="im2col")
    np.testing.assert_allclose(F.conv2d(input, weight, padding=PADDING), expected, rtol=1e-4,
                               atol=1e-4)
    assert only_record()["source"] == "measured"
    # The next measurement rewrote the file whole.
    assert json.loads(autotune.read_text())["format"] == _autotune.CACHE_FORMAT


@pytest.mark.parametrize("field, value", [("fastconv", "0.0.0"), ("processor", "another CPU"),
                                          ("winograd_gemm_kernel", None)])
def test_cache_of_another_build_or_processor_is_ignored(autotune, field, value):
    input, weight = layer()
    F.conv2d(input, weight, padding=PADDING)
    document = json.loads(autotune.read_text())
    assert document["build"] == _autotune._build()
    document["build"][field] = value
    autotune.write_text(json.dumps(document))
    with pytest.warns(UserWarning, match="measured with .*" + re.escape(repr(value))):
        fastconv.set_conv_autotune(True, cache=autotune)
    F.conv2d(input, weight, padding=PADDING)
    assert only_record()["source"] == "measured"


def test_unwritable_cache_warns_and_the_call_still_runs(tmp_path, heuristic):
    cache = tmp_path / "missing-directory" / "conv_algorithms.json"
    fastconv.set_conv_autotune(True, cache=cache)
    input, weight = layer()
    with pytest.warns(UserWarning, match=re.escape(str(cache))):
        output = F.conv2d(input, weight, padding=PADDING)
    record = only_record()
    assert record["source"] == "measured"
    assert np.array_equal(output, F.conv2d(input, weight, padding=PADDING, algo=record["algo"]))


@pytest.mark.parametrize("arguments, error, message", [
    ((1,), TypeError, "enabled must be True or False"),
    (("yes",), TypeError, "enabled must be True or False"),
    ((True, 3), TypeError, "cache must be a path"),
    ((True, ""), ValueError, "cache must not be an empty path"),
    ((False, "conv_algorithms.json"), ValueError, "cache needs enabled=True"),
], ids=["enabled-int", "enabled-str", "cache-int", "cache-empty", "cache-without-enabled"])
def test_bad_arguments_are_rejected(heuristic, arguments, error, message):
    with pytest.raises(error, match=f"set_conv_autotune: {message}"):
        fastconv.set_conv_autotune(*arguments)
    # The settings are left as they were.
    assert fastconv.set_conv_autotune(False) == (False, None)


def test_bad_environment_setting_warns_and_keeps_the_heuristic(tmp_path):
    code = ("import numpy as np, fastconv.functional as F\n"
            "F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)))\n"
            "print(fastconv.conv_algorithms()[0]['source'])")
    result = run_in_fresh_interpreter(code, tmp_path, FASTCONV_AUTOTUNE="yes")
    assert "ignoring FASTCONV_AUTOTUNE='yes'" in result.stderr
    assert result.stdout.split() == ["heuristic"]
