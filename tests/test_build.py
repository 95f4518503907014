"""What the build reports about itself, and the thread-count settings."""
import os
import subprocess
import sys

import pytest

import fastconv


def test_build_info_keys_and_types():
    info = fastconv.build_info()
    assert set(info) == {"openmp", "winograd_gemm_kernel", "num_threads", "blas"}
    assert isinstance(info["openmp"], bool)
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


def threads_in_fresh_interpreter(omp_num_threads):
    """get_num_threads() and build_info()['num_threads'] in a new process with OMP_NUM_THREADS."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS=omp_num_threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    code = ("import fastconv; "
            "print(fastconv.get_num_threads(), fastconv.build_info()['num_threads'])")
    # cwd: `python -c` puts the working directory first on sys.path, which must not be a
    # source checkout shadowing the package under test.
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120, cwd=package_root)
    assert result.returncode == 0, result.stderr
    return tuple(int(word) for word in result.stdout.split())


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("3,1", 3)])
def test_omp_num_threads_is_honoured(value, expected):
    # Several values, so that the default (the machine's cores) cannot match them all.
    assert threads_in_fresh_interpreter(value) == (expected, expected)
