"""What the build reports about itself, and the thread-count settings."""
import os
import subprocess
import sys

import pytest

import fastconv
from fastconv import _cpu, _isa
from fastconv._levels import COMMON_FLAGS, LEVELS

LEVEL_NAMES = [level.name for level in LEVELS]


def test_build_info_keys_and_types():
    info = fastconv.build_info()
    assert set(info) == {"openmp", "isa", "isa_available", "isa_built", "winograd_gemm_kernel",
                         "num_threads", "blas"}
    assert isinstance(info["openmp"], bool)
    assert info["isa"] == fastconv.get_isa() and info["isa"] in info["isa_available"]
    assert set(info["isa_available"]) <= set(info["isa_built"]) <= set(LEVEL_NAMES)
    assert "baseline" in info["isa_available"]
    assert isinstance(info["winograd_gemm_kernel"], bool)
    assert type(info["num_threads"]) is int and info["num_threads"] >= 1
    assert info["num_threads"] == fastconv.get_num_threads()
    # The kernels call GEMM through BLAS, so at least one library must be reported.
    assert isinstance(info["blas"], list) and info["blas"]
    assert all(isinstance(library, dict) for library in info["blas"])


def test_build_info_follows_set_num_threads(restore_num_threads):
    fastconv.set_num_threads(3)
    assert fastconv.build_info()["num_threads"] == 3


@pytest.mark.parametrize("n", [1, 2, 5])
def test_set_num_threads_accepts_positive_ints(n, restore_num_threads):
    fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == n


@pytest.mark.parametrize("n", [0, -1, 1.5, True, False], ids=repr)
def test_set_num_threads_rejects(n, restore_num_threads):
    fastconv.set_num_threads(2)
    with pytest.raises(ValueError, match="set_num_threads"):
        fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == 2


def fresh_interpreter(code, **environment):
    """What code prints in a new process importing the fastconv under test, with these
    environment variables; (returncode, stdout, stderr)."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ, **environment)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # cwd: `python -c` puts the working directory first on sys.path, which must not be a
    # source checkout shadowing the package under test.
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120, cwd=package_root)
    return result.returncode, result.stdout, result.stderr


def threads_in_fresh_interpreter(omp_num_threads):
    """get_num_threads() and build_info()['num_threads'] in a new process with OMP_NUM_THREADS."""
    code = ("import fastconv; "
            "print(fastconv.get_num_threads(), fastconv.build_info()['num_threads'])")
    returncode, stdout, stderr = fresh_interpreter(code, OMP_NUM_THREADS=omp_num_threads)
    assert returncode == 0, stderr
    return tuple(int(word) for word in stdout.split())


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("3,1", 3)])
def test_omp_num_threads_is_honoured(value, expected):
    # Several values, so that the default (the machine's cores) cannot match them all.
    assert threads_in_fresh_interpreter(value) == (expected, expected)


def cpuinfo_flags():
    """The processor's feature flags as Linux reports them, or None elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_cpu_probe_agrees_with_the_operating_system():
    """_cpu.supports (CPUID) against /proc/cpuinfo, a second opinion from the kernel; and
    every feature a level needs can be asked about."""
    assert {feature for level in LEVELS for feature in level.features} <= set(_cpu.FEATURES)
    flags = cpuinfo_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    for feature in _cpu.FEATURES:
        assert _cpu.supports(feature) == (feature in flags), feature


def test_cpu_probe_rejects_unknown_features():
    with pytest.raises(ValueError, match="supports: feature must be one of"):
        _cpu.supports("sse9")


def test_default_level_is_the_widest_the_processor_runs():
    levels = [level for level in LEVELS if not level.test_only
              and all(_cpu.supports(feature) for feature in level.features)
              and level.name in _isa.built_levels()]
    assert _isa.default_level() == levels[-1].name
    assert fastconv.get_isa() == levels[-1].name  # FASTCONV_ISA is not set in the tests


def test_set_isa_switches_every_kernel_module(isa_level):
    """After set_isa each kernel module is that level's, compiled for its lane count."""
    lanes = {level.name: level.lanes for level in LEVELS}[isa_level]
    package = "fastconv._kernels." + isa_level.replace("-", "_")
    for name, module in vars(_isa.kernels).items():
        assert module.__name__ == f"{package}._{name}"
    assert _isa.kernels.winograd.round_up(1) == lanes
    assert _isa.kernels.conv_gemm.panel_width() == 2 * lanes


def test_set_isa_returns_the_previous_level_and_auto_picks_the_default():
    previous = fastconv.set_isa("baseline")
    try:
        assert fastconv.get_isa() == "baseline"
        assert fastconv.set_isa("auto") == "baseline"
        assert fastconv.get_isa() == _isa.default_level()
    finally:
        fastconv.set_isa(previous)


@pytest.mark.parametrize("level", ["avx1024", "", None, "AVX2"], ids=repr)
def test_set_isa_rejects_unknown_levels(level):
    before = fastconv.get_isa()
    with pytest.raises(ValueError, match="set_isa: level must be 'auto' or one of"):
        fastconv.set_isa(level)
    assert fastconv.get_isa() == before


def test_set_isa_names_what_the_processor_lacks(monkeypatch):
    """A processor without AVX-512: forcing the level names the missing features and the
    levels that can run."""
    monkeypatch.setattr(_cpu, "supports", lambda feature: not feature.startswith("avx512"))
    before = fastconv.get_isa()
    with pytest.raises(ValueError, match=r"'avx512' cannot run here \(this processor lacks "
                                         r"avx512f, avx512bw.*\); this processor and build run "
                                         r"\['baseline'"):
        fastconv.set_isa("avx512")
    assert fastconv.get_isa() == before


def test_fastconv_isa_is_honoured_at_import():
    code = "import fastconv; print(fastconv.get_isa(), fastconv.build_info()['isa'])"
    for level in _isa.available_levels():
        returncode, stdout, stderr = fresh_interpreter(code, FASTCONV_ISA=level)
        assert returncode == 0, stderr
        assert stdout.split() == [level, level]


def test_fastconv_isa_unknown_fails_the_import_naming_the_variable():
    returncode, _, stderr = fresh_interpreter("import fastconv", FASTCONV_ISA="avx9000")
    assert returncode != 0
    assert "FASTCONV_ISA='avx9000'" in stderr and "set_isa: level must be" in stderr


def test_default_build_flags_do_not_target_the_build_machine():
    """The kernels run on any processor of their level, not only on the one that built
    them: no -march=native (or -mtune/-mcpu=native) in any level's flags or in setup.py."""
    flags = list(COMMON_FLAGS) + [flag for level in LEVELS for flag in level.flags]
    assert not [flag for flag in flags if flag.endswith("=native")]
    assert [level.name for level in LEVELS if not level.flags] == ["baseline"]
    setup = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
    if os.path.exists(setup):
        with open(setup) as f:
            assert "native" not in f.read()
