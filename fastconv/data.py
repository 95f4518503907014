"""CIFAR-10 loading, train/validation split, normalisation, batching and augmentation.

Images stay ``uint8`` ``(N, 3, 32, 32)`` until a batch is drawn: augmenting bytes moves a
quarter of the memory that float32 would, and :func:`normalize` turns the batch into the
float32 NCHW the layers take. Every random choice comes from an explicit
``numpy.random.Generator``, so a run is a deterministic function of its seeds.

Example
-------
>>> from functools import partial
>>> data = load_cifar10("../shared/data/cifar-10-batches-py")
>>> x_train, y_train, x_val, y_val = train_val_split(data.train_images, data.train_labels)
>>> mean, std = channel_stats(x_train)
>>> augment = Compose(partial(random_crop, padding=4), horizontal_flip, partial(cutout, size=8))
>>> loader = BatchLoader(x_train, y_train, 128, seed=0,
...                      transform=lambda batch, rng: normalize(augment(batch, rng), mean, std))
>>> for images, labels in loader.epoch(0):
...     pass                                      # images: (128, 3, 32, 32) float32
"""
import os
import pickle
import posixpath
import tarfile
import zlib
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

try:
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # NumPy < 2 keeps them in numpy.core
    from numpy.core import multiarray as _multiarray, numeric as _numeric

__all__ = ["CIFAR10", "CIFAR10FormatError", "load_cifar10", "train_val_split",
           "channel_stats", "normalize", "BatchLoader", "random_crop", "horizontal_flip",
           "cutout", "Compose"]

DIRECTORY = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
_ROW_SIZE = 3 * 32 * 32


class CIFAR10FormatError(ValueError):
    """A CIFAR-10 file that is not in the "python version" format, or holds an unsafe pickle."""


class CIFAR10(NamedTuple):
    """The CIFAR-10 training and test sets as returned by :func:`load_cifar10`.

    Attributes
    ----------
    train_images : ndarray, shape (N_train, 3, 32, 32), uint8
        Channels in the order R, G, B.
    train_labels : ndarray, shape (N_train,), int64
        Class indices in 0..9.
    test_images : ndarray, shape (N_test, 3, 32, 32), uint8
    test_labels : ndarray, shape (N_test,), int64
    class_names : tuple of str
        The 10 names from batches.meta; label i is class_names[i].
    """
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple


# ---------------------------------------------------------------------------------------------
# Reading the pickles safely

def _latin1_bytes(text, encoding):
    """Python 3 pickles non-empty bytes below protocol 3 as _codecs.encode(text, "latin1")."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}: "
                                     "only 'latin1' encodes bytes in a pickle")
    return text.encode("latin1")


def _empty_bytes():
    """Python 3 pickles b"" below protocol 3 as bytes(); taking no argument, this cannot be
    asked to allocate a huge buffer the way bytes(n) can."""
    return b""


# Everything a CIFAR-10 batch may name: the official files (Python 2, protocol 2) name only
# NumPy's array reconstruction; files written from Python 3 with NumPy add the bytes helpers
# (protocol < 3), numpy scalars (labels built with list(array)) and _frombuffer (protocol 5).
# Dicts, lists, str, bytes and ints are pickle opcodes and need no global at all.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR-10 batch needs.

    A plain ``pickle.load`` imports and calls whatever a file names (``os.system``,
    ``builtins.eval``, ...). Every global reaches :meth:`find_class` before it can be called,
    so refusing there stops a crafted file before any of its code runs.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR-10 batch may name only NumPy's "
                "array reconstruction") from None


def _unpickle(file, source):
    """The object pickled in file; any failure becomes a CIFAR10FormatError naming source."""
    try:
        # The official batches were pickled by Python 2: its str must stay bytes.
        return _RestrictedUnpickler(file, encoding="bytes").load()
    except Exception as exc:  # a malformed pickle can raise almost any exception type
        raise CIFAR10FormatError(f"load_cifar10: {source} is not a readable CIFAR-10 pickle: "
                                 f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Validating what was read

def _int_vector(value):
    """value as a 1-D integer ndarray, or None if it is not a list or array of ints."""
    if not isinstance(value, (list, np.ndarray)):
        return None
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        return None
    if array.ndim != 1 or array.dtype.kind not in "iu":
        return None
    return array


def _check_batch(batch, source):
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from a batch dict, or an error."""
    if not isinstance(batch, dict):
        raise CIFAR10FormatError(f"load_cifar10: {source}: expected a dict, "
                                 f"got {type(batch).__name__}")
    for key in (b"data", b"labels"):
        if key not in batch:
            raise CIFAR10FormatError(f"load_cifar10: {source}: missing key {key!r} "
                                     f"(keys present: {sorted(batch, key=repr)})")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'data' must be a numpy array, "
                                 f"got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'data' must be uint8, "
                                 f"got dtype {data.dtype}")
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] != _ROW_SIZE:
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'data' must have shape "
                                 f"(N, {_ROW_SIZE}) with N >= 1, got {data.shape}")
    labels = _int_vector(batch[b"labels"])
    if labels is None:
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'labels' must be a list of ints, "
                                 f"got {type(batch[b'labels']).__name__}")
    if len(labels) != len(data):
        raise CIFAR10FormatError(f"load_cifar10: {source}: {len(labels)} labels for "
                                 f"{len(data)} images")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= NUM_CLASSES:
        raise CIFAR10FormatError(f"load_cifar10: {source}: labels must lie in "
                                 f"0..{NUM_CLASSES - 1}, got values from {low} to {high}")
    # Each row is the 1024 red, then green, then blue values of a 32x32 image in row-major
    # order: exactly (3, 32, 32) in C order.
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def _check_meta(meta, source):
    """The class names in batches.meta as a tuple of str, or an error."""
    if not isinstance(meta, dict):
        raise CIFAR10FormatError(f"load_cifar10: {source}: expected a dict, "
                                 f"got {type(meta).__name__}")
    if b"label_names" not in meta:
        raise CIFAR10FormatError(f"load_cifar10: {source}: missing key b'label_names' "
                                 f"(keys present: {sorted(meta, key=repr)})")
    names = meta[b"label_names"]
    if (not isinstance(names, list) or len(names) != NUM_CLASSES
            or not all(isinstance(name, (bytes, str)) for name in names)):
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'label_names' must be a list of "
                                 f"{NUM_CLASSES} strings, got {names!r}")
    try:
        return tuple(name.decode("utf-8") if isinstance(name, bytes) else name
                     for name in names)
    except UnicodeDecodeError as exc:
        raise CIFAR10FormatError(f"load_cifar10: {source}: b'label_names' holds a name that "
                                 f"is not UTF-8: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Loading

_FILES = TRAIN_FILES + (TEST_FILE, META_FILE)


def _read_directory(directory):
    """{file name: (unpickled object, source)} for the CIFAR-10 files in directory."""
    missing = [name for name in _FILES if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(f"load_cifar10: {directory} lacks {', '.join(missing)} "
                                f"(expected the CIFAR-10 python version: {', '.join(_FILES)})")
    contents = {}
    for name in _FILES:
        source = os.path.join(directory, name)
        with open(source, "rb") as file:
            contents[name] = (_unpickle(file, source), source)
    return contents


def _read_archive(path):
    """{file name: (unpickled object, source)} for the CIFAR-10 members of a tar archive."""
    wanted = {f"{DIRECTORY}/{name}": name for name in _FILES}
    contents = {}
    try:
        # Stream mode reads the archive once, front to back, so it is decompressed once and
        # nothing is extracted to disk.
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                name = wanted.get(posixpath.normpath(member.name))
                if name is not None and member.isfile():
                    source = f"{path}:{member.name}"
                    contents[name] = (_unpickle(archive.extractfile(member), source), source)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CIFAR10FormatError(f"load_cifar10: {path} is not a readable tar archive: "
                                 f"{type(exc).__name__}: {exc}") from exc
    missing = [member for member, name in wanted.items() if name not in contents]
    if missing:
        raise FileNotFoundError(f"load_cifar10: archive {path} lacks {', '.join(missing)}")
    return contents


def load_cifar10(path):
    """Load CIFAR-10 in its "python version" layout, validating every file's structure.

    Parameters
    ----------
    path : str or os.PathLike
        A ``cifar-10-batches-py`` directory (``data_batch_1`` .. ``data_batch_5``,
        ``test_batch``, ``batches.meta``), a directory containing one, or the
        ``cifar-10-python.tar.gz`` archive, whose members are read without extracting it.

    Returns
    -------
    CIFAR10
        ``(train_images, train_labels, test_images, test_labels, class_names)``: images
        ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64 in 0..9, class names a tuple of 10 str.
        The training set is the five data batches in order.

    Raises
    ------
    FileNotFoundError
        If path does not exist or lacks one of the files; the message lists them.
    CIFAR10FormatError
        A ``ValueError`` naming the file and what is wrong with it: not a pickle, a pickle
        naming a global other than NumPy's array reconstruction (which is refused before it
        runs), a missing key, a wrong dtype or shape, labels outside 0..9.

    Notes
    -----
    Structure is validated, checksums are not: a reordered copy of the dataset is as valid as
    the publisher's.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        nested = os.path.join(path, DIRECTORY)
        contents = _read_directory(nested if os.path.isdir(nested) else path)
    elif os.path.isfile(path):
        contents = _read_archive(path)
    else:
        raise FileNotFoundError(f"load_cifar10: {path} does not exist (expected a "
                                f"{DIRECTORY} directory, its parent, or cifar-10-python.tar.gz)")
    train = [_check_batch(*contents[name]) for name in TRAIN_FILES]
    test_images, test_labels = _check_batch(*contents[TEST_FILE])
    return CIFAR10(train_images=np.concatenate([images for images, _ in train]),
                   train_labels=np.concatenate([labels for _, labels in train]),
                   test_images=test_images,
                   test_labels=test_labels,
                   class_names=_check_meta(*contents[META_FILE]))


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the functions below

def _check_images(fn, images):
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        shape = getattr(images, "shape", type(images).__name__)
        raise ValueError(f"{fn}: expected 4-D images (N, C, H, W) as a numpy array, got {shape}")


def _check_labels(fn, images, labels):
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or len(labels) != len(images):
        shape = getattr(labels, "shape", type(labels).__name__)
        raise ValueError(f"{fn}: expected labels of shape ({len(images)},) to match images "
                         f"{images.shape}, got {shape}")


def _check_int(fn, name, value, low, high=None):
    """value as an int in low..high (inclusive; high=None for no upper bound), or an error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{fn}: {name} must be {bounds}, got {value}")
    return int(value)


def _check_rng(fn, rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{fn}: rng must be a numpy.random.Generator "
                        f"(e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}")


# ---------------------------------------------------------------------------------------------
# Validation split and normalisation

def train_val_split(images, labels, val_size=5000, seed=0):
    """Split a training set at random into training and validation parts.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    labels : ndarray, shape (N,)
    val_size : int
        Number of samples in the validation part, 1 <= val_size <= N - 1.
    seed : int
        Non-negative seed of the permutation that picks the validation samples.

    Returns
    -------
    train_images, train_labels, val_images, val_labels : ndarray
        Copies; each part keeps the samples in their original order. The split depends on
        ``(N, val_size, seed)`` only.
    """
    fn = "train_val_split"
    _check_images(fn, images)
    _check_labels(fn, images, labels)
    val_size = _check_int(fn, "val_size", val_size, 1, len(images) - 1)
    seed = _check_int(fn, "seed", seed, 0)
    chosen = np.random.default_rng(seed).permutation(len(images))
    val_index = np.sort(chosen[:val_size])
    train_index = np.sort(chosen[val_size:])
    return images[train_index], labels[train_index], images[val_index], labels[val_index]


_STATS_CHUNK = 1024


def channel_stats(images):
    """Per-channel mean and standard deviation over images, accumulated in float64.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
        Any real dtype; for CIFAR-10 the uint8 training images.

    Returns
    -------
    mean, std : ndarray, shape (C,), float64
        Population statistics (``ddof=0``) over the ``N * H * W`` values of each channel.
    """
    _check_images("channel_stats", images)
    if images.size == 0:
        raise ValueError(f"channel_stats: images must not be empty, got shape {images.shape}")
    batch, channels, height, width = images.shape
    count = batch * height * width
    # Summing squares around a rough mean rather than zero keeps the variance from cancelling
    # when the mean is large next to the spread; working in chunks bounds the float64 copy.
    shift = images[:_STATS_CHUNK].mean(axis=(0, 2, 3), dtype=np.float64)
    total = np.zeros(channels)
    total_squares = np.zeros(channels)
    for start in range(0, batch, _STATS_CHUNK):
        block = images[start:start + _STATS_CHUNK].astype(np.float64) - shift[:, None, None]
        total += block.sum(axis=(0, 2, 3))
        total_squares += np.square(block).sum(axis=(0, 2, 3))
    mean_shifted = total / count
    variance = np.maximum(total_squares / count - mean_shifted ** 2, 0.0)
    return shift + mean_shifted, np.sqrt(variance)


def normalize(images, mean, std):
    """``(images - mean) / std`` per channel, as float32.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    mean, std : array_like, shape (C,)
        Usually :func:`channel_stats` of the training images; every std must be positive.

    Returns
    -------
    ndarray, shape (N, C, H, W), float32
    """
    _check_images("normalize", images)
    channels = images.shape[1]
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"normalize: mean and std must have shape ({channels},) for images "
                         f"{images.shape}, got {mean.shape} and {std.shape}")
    if not np.all(std > 0):
        raise ValueError(f"normalize: std must be positive, got {std}")
    # One multiply-add in float32, with scale and offset rounded once from float64.
    scale = (1.0 / std).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    output = images.astype(np.float32)
    output *= scale
    output += offset
    return output


# ---------------------------------------------------------------------------------------------
# Batching

class BatchLoader:
    """Mini-batches of ``(images, labels)``, reshuffled each epoch by a rule fixed by the seed.

    Epoch ``e``'s order, and the generator handed to ``transform`` for its batch ``b``, are
    functions of ``(seed, e)`` and ``(seed, e, b)`` only — not of what ran before — so a run
    resumed from a checkpoint at any batch continues bit for bit.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    labels : ndarray, shape (N,)
    batch_size : int
        Samples per batch; the last batch of an epoch may be smaller unless ``drop_last``.
    shuffle : bool
        Draw a new permutation every epoch; if False, every epoch runs in index order.
    seed : int
        Non-negative seed of the shuffling and of the transform's generators.
    drop_last : bool
        Skip the last batch of an epoch if it is smaller than ``batch_size``.
    transform : callable, optional
        ``transform(images, rng) -> images`` applied to each batch, e.g. a :class:`Compose`
        of augmentations followed by :func:`normalize`.

    Examples
    --------
    >>> loader = BatchLoader(x_train, y_train, 128, seed=0)
    >>> for epoch in range(start_epoch, epochs):
    ...     for images, labels in loader.epoch(epoch):
    ...         ...
    """

    def __init__(self, images, labels, batch_size, *, shuffle=True, seed=0, drop_last=False,
                 transform=None):
        fn = "BatchLoader"
        _check_images(fn, images)
        _check_labels(fn, images, labels)
        self.images = images
        self.labels = labels
        self.batch_size = _check_int(fn, "batch_size", batch_size, 1)
        self.seed = _check_int(fn, "seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if transform is not None and not callable(transform):
            raise TypeError(f"{fn}: transform must be callable(images, rng), got {transform!r}")
        self.transform = transform

    def __len__(self):
        """Batches per epoch."""
        full, rest = divmod(len(self.labels), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def _rng(self, *key):
        # spawn_key gives independent streams per key; a plain entropy list would not, since
        # SeedSequence pads it with zeros and [seed, 1] would equal [seed, 1, 0].
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def order(self, epoch):
        """The sample indices of epoch ``epoch`` in the order they are served, shape (N,)."""
        epoch = _check_int("BatchLoader.order", "epoch", epoch, 0)
        if not self.shuffle:
            return np.arange(len(self.labels))
        return self._rng(epoch).permutation(len(self.labels))

    def epoch(self, epoch, start=0):
        """Iterate over the batches of epoch ``epoch``, from batch ``start`` on.

        Parameters
        ----------
        epoch : int
            Non-negative epoch index.
        start : int
            First batch to serve, 0 <= start <= len(self); batches before it are skipped
            without being drawn, as when resuming mid-epoch.

        Returns
        -------
        iterator of (images, labels)
            images ``(B, C, H, W)``, a copy or the transform's output; labels ``(B,)``.
        """
        order = self.order(epoch)
        start = _check_int("BatchLoader.epoch", "start", start, 0, len(self))
        # Checked here, the arguments fail at the call rather than at the first next().
        return self._batches(epoch, order, start)

    def _batches(self, epoch, order, start):
        for batch in range(start, len(self)):
            index = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            images = self.images[index]
            if self.transform is not None:
                images = self.transform(images, self._rng(epoch, batch))
            yield images, self.labels[index]


# ---------------------------------------------------------------------------------------------
# Augmentation: each a vectorised function of (images, rng, ...) over a whole batch

def random_crop(images, rng, padding=4, mode="zero"):
    """Pad each image on every side, then crop it back to its size at a random offset.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    rng : numpy.random.Generator
    padding : int
        Pixels added on each side; the offset is uniform over the ``(2 * padding + 1) ** 2``
        crops, so with ``mode="zero"`` this is a random translation by up to ``padding``
        pixels either way.
    mode : {"zero", "reflect"}
        ``"zero"`` pads with zeros; ``"reflect"`` mirrors the image about its edge pixels
        without repeating them (as ``numpy.pad`` and PyTorch's "reflect"), which needs
        ``padding < H`` and ``padding < W``.

    Returns
    -------
    ndarray, shape (N, C, H, W), the dtype of images
    """
    fn = "random_crop"
    _check_images(fn, images)
    _check_rng(fn, rng)
    padding = _check_int(fn, "padding", padding, 0)
    if mode not in ("zero", "reflect"):
        raise ValueError(f"random_crop: mode must be 'zero' or 'reflect', got {mode!r}")
    batch, _, height, width = images.shape
    if mode == "reflect" and padding >= min(height, width):
        raise ValueError(f"random_crop: reflect padding must be smaller than the image, got "
                         f"padding={padding} for images {images.shape}")
    spatial = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    padded = np.pad(images, spatial, mode="constant" if mode == "zero" else "reflect")
    # windows[n, c, i, j] is the (H, W) crop of image n at offset (i, j): a view, so one fancy
    # index gathers every image's own crop with no loop over the batch.
    windows = sliding_window_view(padded, (height, width), axis=(2, 3))
    top = rng.integers(0, 2 * padding + 1, size=batch)
    left = rng.integers(0, 2 * padding + 1, size=batch)
    return windows[np.arange(batch), :, top, left]


def horizontal_flip(images, rng, p=0.5):
    """Mirror each image left to right with probability ``p``.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    rng : numpy.random.Generator
    p : float
        Probability, in [0, 1], that an image is flipped.

    Returns
    -------
    ndarray, shape (N, C, H, W), the dtype of images
    """
    _check_images("horizontal_flip", images)
    _check_rng("horizontal_flip", rng)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"horizontal_flip: p must be in [0, 1], got {p!r}")
    flipped = rng.random(len(images)) < p
    output = images.copy()
    output[flipped] = images[flipped, :, :, ::-1]
    return output


def cutout(images, rng, size=8):
    """Zero a ``size`` x ``size`` square at a random centre of each image (DeVries & Taylor).

    The centre is uniform over the image's pixels and the square is clipped at the borders,
    so near an edge less than ``size ** 2`` pixels are zeroed; all channels share the square.
    Applied after :func:`normalize`, the zeros are the channel means.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
    rng : numpy.random.Generator
    size : int
        Side of the square, >= 1. Rows ``cy - size // 2`` up to ``cy - size // 2 + size``
        (excluded) are cut, and likewise columns.

    Returns
    -------
    ndarray, shape (N, C, H, W), the dtype of images
    """
    _check_images("cutout", images)
    _check_rng("cutout", rng)
    size = _check_int("cutout", "size", size, 1)
    batch, _, height, width = images.shape
    top = rng.integers(0, height, size=batch) - size // 2
    left = rng.integers(0, width, size=batch) - size // 2
    rows = np.arange(height)
    columns = np.arange(width)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)              # (N, H)
    in_columns = (columns >= left[:, None]) & (columns < left[:, None] + size)   # (N, W)
    hole = in_rows[:, None, :, None] & in_columns[:, None, None, :]             # (N, 1, H, W)
    return np.where(hole, np.zeros((), images.dtype), images)


class Compose:
    """Apply augmentations in turn, all drawing from one generator.

    Parameters
    ----------
    *steps : callable
        Each ``step(images, rng) -> images``; bind other arguments with
        ``functools.partial``.

    Examples
    --------
    >>> augment = Compose(partial(random_crop, padding=4, mode="reflect"), horizontal_flip,
    ...                   partial(cutout, size=8))
    >>> batch = augment(images, np.random.default_rng(0))
    """

    def __init__(self, *steps):
        for step in steps:
            if not callable(step):
                raise TypeError(f"Compose: every step must be callable(images, rng), "
                                f"got {step!r}")
        self.steps = steps

    def __call__(self, images, rng):
        for step in self.steps:
            images = step(images, rng)
        return images

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.steps))})"
