"""The ISA levels the kernels are compiled for: the one place their flags live.

setup.py reads this file to compile every kernel module once per level, into
fastconv/_kernels/<level>/; fastconv._isa picks, at import, the best level the processor
runs. Nothing here imports the rest of fastconv, so that setup.py can load it alone.
"""
from typing import NamedTuple, Tuple


class Level(NamedTuple):
    name: str
    # gcc/clang flags beside COMMON_FLAGS; the vector width is FASTCONV_LANES float32
    # values (src/_simd.h), which also sets the data layouts of the Winograd stage.
    flags: Tuple[str, ...]
    lanes: int
    # __builtin_cpu_supports names the processor must report.
    features: Tuple[str, ...]
    # Test-only levels are never chosen by themselves, only by FASTCONV_ISA or set_isa.
    test_only: bool = False


COMMON_FLAGS = ("-O3",)

# From the narrowest to the widest. x86-64-v3 is AVX2 + FMA (Haswell, Zen 1 and later),
# x86-64-v4 AVX-512 F/BW/CD/DQ/VL (Skylake-X, Sapphire Rapids, Zen 4 and later). GCC
# vectorises loops 256 bits wide even there unless asked for 512.
LEVELS = (
    Level("baseline", (), 8, ()),
    Level("avx2", ("-march=x86-64-v3",), 8, ("avx2", "fma")),
    Level("avx512", ("-march=x86-64-v4", "-mprefer-vector-width=512"), 16,
          ("avx2", "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
    # The avx512 level's 16-lane source compiled for AVX2 (each 64-byte vector becomes two
    # 32-byte halves), so that an AVX2-only machine runs its logic in the tests.
    Level("avx512-on-avx2", ("-march=x86-64-v3",), 16, ("avx2", "fma"), test_only=True),
)

# The compiled kernel modules, once per level. _openmp, _cpu and _allocator hold no hot
# loops and are compiled once, at baseline.
KERNEL_MODULES = ("_im2col", "_conv_gemm", "_conv_direct", "_winograd", "_reduce", "_pool",
                  "_interpolate", "_batchnorm", "_activation")


def package(level):
    """The package a level's kernel modules are built into."""
    return "fastconv._kernels." + level.replace("-", "_")
