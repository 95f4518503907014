"""The random number generator behind initialisation and dropout, reseeded by manual_seed."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator fastconv.init and dropout draw from, so runs are reproducible.

    Parameters
    ----------
    seed : int
        Any non-negative int (as numpy.random.default_rng takes).

    Returns
    -------
    numpy.random.Generator
        The new generator.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator():
    """The current generator (looked up on every draw, since manual_seed replaces it)."""
    return _generator
