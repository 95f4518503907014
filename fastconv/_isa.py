"""Which ISA level's kernels run: the widest the processor supports, or the one that
FASTCONV_ISA (read at import) or set_isa asks for.

Every kernel module is compiled once per level of fastconv._levels into
fastconv/_kernels/<level>/. `kernels` holds the modules of the level in use, one
attribute per module (kernels.winograd is _winograd), and set_isa swaps them all at once:
the levels differ in data layouts (the Winograd lane count), so modules of two levels
never mix.
"""
import importlib
import importlib.util
import os
import types

from fastconv import _cpu
from fastconv._levels import KERNEL_MODULES, LEVELS, package

_LEVELS = {level.name: level for level in LEVELS}

kernels = types.SimpleNamespace()
_level = None


def _built(level):
    return importlib.util.find_spec(f"{package(level.name)}.{KERNEL_MODULES[0]}") is not None


def _runs(level):
    return all(_cpu.supports(feature) for feature in level.features)


def built_levels():
    """The levels this installation was compiled for, narrowest first."""
    return [level.name for level in LEVELS if _built(level)]


def available_levels():
    """The built levels this processor runs, narrowest first (test-only ones included)."""
    return [level.name for level in LEVELS if _built(level) and _runs(level)]


def default_level():
    """The widest available level that is not test-only."""
    return [name for name in available_levels() if not _LEVELS[name].test_only][-1]


def get_isa():
    """The name of the ISA level whose kernels run."""
    return _level


def set_isa(level):
    """Run the kernels of an ISA level: "baseline", "avx2", "avx512" (or the test-only
    "avx512-on-avx2"), or "auto" for the widest this processor supports. Returns the
    previous level's name. Raises ValueError for an unknown level, one this processor
    lacks, or one this installation was not compiled for."""
    global _level
    if level == "auto":
        level = default_level()
    if level not in _LEVELS:
        raise ValueError(f"set_isa: level must be 'auto' or one of {list(_LEVELS)}, "
                         f"got {level!r}")
    if level not in available_levels():
        reason = ("this processor lacks " + ", ".join(
            feature for feature in _LEVELS[level].features if not _cpu.supports(feature))
            if _built(_LEVELS[level]) else "this installation was not compiled for it")
        raise ValueError(f"set_isa: ISA level {level!r} cannot run here ({reason}); "
                         f"this processor and build run {available_levels()}")
    for name in KERNEL_MODULES:
        setattr(kernels, name.lstrip("_"),
                importlib.import_module(f"{package(level)}.{name}"))
    previous, _level = _level, level
    return previous


def _level_at_import():
    requested = os.environ.get("FASTCONV_ISA", "").strip() or "auto"
    try:
        set_isa(requested)
    except ValueError as error:
        raise ValueError(f"FASTCONV_ISA={requested!r}: {error}") from None


_level_at_import()
