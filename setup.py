"""Build the Cython kernels once per ISA level (fastconv/_levels.py), with OpenMP when the
compiler supports it."""
import importlib.util
import os
import platform
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


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


def load_levels():
    """fastconv/_levels.py, loaded alone: the package itself needs the compiled modules."""
    spec = importlib.util.spec_from_file_location("_levels", os.path.join("fastconv", "_levels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEVELS = load_levels()
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def builds_level(compiler, level):
    """Whether this machine's compiler builds the level: every level but the baseline
    needs an x86 target and a gcc-style compiler that knows the level's flags."""
    if not level.flags:
        return True
    return X86 and compiler.compiler_type != "msvc" and accepts(compiler, list(level.flags))


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # Every kernel is compiled once per level: use the cores (pip passes no -j).
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn("fastconv: the compiler does not support OpenMP; "
                          "the kernels are built serial (one thread).")
            flags = ([], [])
        common = ["/O2"] if self.compiler.compiler_type == "msvc" else list(LEVELS.COMMON_FLAGS)
        by_package = {LEVELS.package(level.name): level for level in LEVELS.LEVELS}
        built = {level.name for level in LEVELS.LEVELS if builds_level(self.compiler, level)}
        extensions = []
        for ext in self.extensions:
            level = by_package.get(ext.name.rpartition(".")[0], LEVELS.LEVELS[0])
            if level.name not in built:
                continue
            # Here rather than as the Extension's define_macros, which cythonize mixed up
            # between the levels' modules of one source file.
            ext.extra_compile_args = (common + list(level.flags)
                                      + [f"-DFASTCONV_LANES={level.lanes}"] + flags[0])
            ext.extra_link_args = flags[1]
            extensions.append(ext)
        skipped = [level.name for level in LEVELS.LEVELS if level.name not in built]
        if skipped:
            warnings.warn(f"fastconv: not building the ISA levels {skipped} "
                          "(not an x86 target, or the compiler lacks their flags).")
        self.extensions = extensions
        super().build_extensions()

    def copy_extensions_to_source(self):
        # The levels' packages hold only compiled modules: an in-place build makes them.
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            package = ext.name.rpartition(".")[0]
            os.makedirs(build_py.get_package_dir(package), exist_ok=True)
        super().copy_extensions_to_source()


def extensions():
    import numpy
    from Cython.Build import cythonize
    directives = {"boundscheck": False, "wraparound": False, "cdivision": True,
                  "initializedcheck": False}
    # numpy's headers: _allocator installs a NumPy memory handler.
    shared = [Extension(f"fastconv.{name}", [f"src/{name}.pyx"],
                        include_dirs=["src", numpy.get_include()])
              for name in ("_openmp", "_cpu", "_allocator")]
    modules = cythonize(shared, include_path=["src"], language_level=3,
                        compiler_directives=directives, nthreads=os.cpu_count() or 1)
    for level in LEVELS.LEVELS:
        package = LEVELS.package(level.name)
        level_modules = [Extension(f"{package}.{name}", [f"src/{name}.pyx"], include_dirs=["src"])
                         for name in LEVELS.KERNEL_MODULES]
        # A C file per level, each naming its own module.
        modules += cythonize(level_modules, include_path=["src"], language_level=3,
                             compiler_directives=directives, nthreads=os.cpu_count() or 1,
                             build_dir=os.path.join("build", "cython", level.name))
    return modules


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
