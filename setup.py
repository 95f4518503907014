"""Build the Cython kernels, with OpenMP when the compiler supports it."""
import os
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = ["_openmp", "_im2col", "_conv_gemm", "_conv_direct", "_winograd", "_reduce", "_pool",
           "_interpolate", "_batchnorm", "_activation", "_allocator"]

OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
""")


def openmp_flags(compiler):
    """Return (compile_args, link_args) that enable OpenMP, or None if none work."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        for compile_args, link_args in candidates:
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
                compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=link_args)
            except Exception:
                continue
            return compile_args, link_args
    return None


def accepts(compiler, flags):
    """Whether the compiler builds a trivial source with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([source], output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


def optimisation_flags(compiler):
    """-O3, plus -march=native for a build that runs where it is compiled.

    The direct and pooling kernels rely on the compiler vectorising their inner loops,
    which needs the machine's vector width. FASTCONV_PORTABLE=1 leaves it out, for
    wheels meant for other machines.
    """
    if compiler.compiler_type == "msvc":
        return ["/O2"]
    if os.environ.get("FASTCONV_PORTABLE") != "1" and accepts(compiler, ["-march=native"]):
        return ["-O3", "-march=native"]
    return ["-O3"]


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn("fastconv: the compiler does not support OpenMP; "
                          "the kernels are built serial (one thread).")
            flags = ([], [])
        optimise = optimisation_flags(self.compiler)
        for ext in self.extensions:
            ext.extra_compile_args = optimise + flags[0]
            ext.extra_link_args = flags[1]
        super().build_extensions()


def extensions():
    import numpy
    from Cython.Build import cythonize
    # numpy's headers: _allocator installs a NumPy memory handler.
    modules = [Extension(f"fastconv.{name}", [f"src/{name}.pyx"],
                         include_dirs=["src", numpy.get_include()])
               for name in MODULES]
    return cythonize(modules, include_path=["src"], language_level=3,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
