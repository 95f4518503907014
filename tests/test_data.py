"""fastconv.data: CIFAR-10 loading and its safety, split, normalisation, batching, augmentation."""
import codecs
import os
import pickle
import subprocess
import tarfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from fastconv.data import (DIRECTORY, META_FILE, TEST_FILE, TRAIN_FILES, BatchLoader,
                           CIFAR10FormatError, Compose, channel_stats, cutout, horizontal_flip,
                           load_cifar10, normalize, random_crop, train_val_split)

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / DIRECTORY
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
TRAIN_PER_BATCH = 7
TEST_SIZE = 5


# ---------------------------------------------------------------------------------------------
# Small datasets in the official format

def official_batch(rng, size, name):
    """A batch dict as the publisher's files hold it (byte-string keys, list labels)."""
    return {b"batch_label": name.encode(),
            b"labels": [int(label) for label in rng.integers(0, 10, size)],
            b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
            b"filenames": [f"image_{i}.png".encode() for i in range(size)]}


def write_pickle(path, obj, protocol=2):
    with open(path, "wb") as file:
        pickle.dump(obj, file, protocol=protocol)


def write_dataset(directory, protocol=2):
    """Write a small CIFAR-10 into directory; returns {file name: batch dict}."""
    directory.mkdir()
    rng = np.random.default_rng(1234)
    batches = {name: official_batch(rng, TRAIN_PER_BATCH, name) for name in TRAIN_FILES}
    batches[TEST_FILE] = official_batch(rng, TEST_SIZE, TEST_FILE)
    for name, batch in batches.items():
        write_pickle(directory / name, batch, protocol)
    write_pickle(directory / META_FILE, {b"num_cases_per_batch": TRAIN_PER_BATCH,
                                         b"label_names": [n.encode() for n in CLASS_NAMES],
                                         b"num_vis": 3072}, protocol)
    return batches


def write_archive(directory, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=DIRECTORY)


@pytest.fixture
def dataset(tmp_path):
    """(cifar-10-batches-py directory, the batches written into it)."""
    directory = tmp_path / DIRECTORY
    return directory, write_dataset(directory)


def expected_images(batch):
    """The (N, 3, 32, 32) images of a batch, indexed out of the rows one pixel at a time."""
    data = batch[b"data"]
    channel, row, column = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return data[:, channel * 1024 + row * 32 + column]


def check_matches(data, batches):
    train = [batches[name] for name in TRAIN_FILES]
    np.testing.assert_array_equal(data.train_images,
                                  np.concatenate([expected_images(b) for b in train]))
    np.testing.assert_array_equal(data.train_labels,
                                  np.concatenate([b[b"labels"] for b in train]))
    np.testing.assert_array_equal(data.test_images, expected_images(batches[TEST_FILE]))
    np.testing.assert_array_equal(data.test_labels, batches[TEST_FILE][b"labels"])
    assert data.train_images.shape == (5 * TRAIN_PER_BATCH, 3, 32, 32)
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    assert data.class_names == CLASS_NAMES


# ---------------------------------------------------------------------------------------------
# Loading

def test_load_directory(dataset):
    directory, batches = dataset
    check_matches(load_cifar10(directory), batches)


def test_load_parent_directory(dataset):
    directory, batches = dataset
    check_matches(load_cifar10(str(directory.parent)), batches)


def test_load_archive(dataset, tmp_path):
    directory, batches = dataset
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(directory, archive)
    check_matches(load_cifar10(archive), batches)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_load_files_written_by_python3_numpy(tmp_path, protocol):
    # Protocol 2 from Python 3 encodes bytes through _codecs.encode and b"" through bytes();
    # protocol 5 rebuilds arrays with _frombuffer; labels as numpy scalars need scalar.
    directory = tmp_path / DIRECTORY
    batches = write_dataset(directory, protocol)
    batch = batches["data_batch_2"]
    batch[b"batch_label"] = b""
    batch[b"labels"] = list(np.asarray(batch[b"labels"]))
    write_pickle(directory / "data_batch_2", batch, protocol)
    check_matches(load_cifar10(directory), batches)


def test_labels_as_array(dataset):
    directory, batches = dataset
    batch = batches["data_batch_4"]
    batch[b"labels"] = np.asarray(batch[b"labels"], dtype=np.uint8)
    write_pickle(directory / "data_batch_4", batch)
    check_matches(load_cifar10(directory), batches)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_cifar10(tmp_path / "nowhere")


def test_missing_file(dataset):
    directory, _ = dataset
    (directory / "data_batch_3").unlink()
    (directory / META_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3, batches.meta"):
        load_cifar10(directory)


def test_missing_archive_member(dataset, tmp_path):
    directory, _ = dataset
    (directory / TEST_FILE).unlink()
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(directory, archive)
    with pytest.raises(FileNotFoundError, match=f"lacks {DIRECTORY}/{TEST_FILE}"):
        load_cifar10(archive)


def test_not_an_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"not a tar archive at all" * 100)
    with pytest.raises(CIFAR10FormatError, match="not a readable tar archive"):
        load_cifar10(path)


def _set(key, value):
    return lambda batch: batch.__setitem__(key, value)


def _delete(key):
    return lambda batch: batch.__delitem__(key)


CORRUPTIONS = {
    "missing-data": (_delete(b"data"), r"missing key b'data'"),
    "missing-labels": (_delete(b"labels"), r"missing key b'labels'"),
    "str-keys": (lambda batch: batch.update({"data": batch.pop(b"data")}),
                 r"missing key b'data'"),
    "data-wrong-shape": (_set(b"data", np.zeros((TRAIN_PER_BATCH, 3000), np.uint8)),
                         r"shape \(N, 3072\).*\(7, 3000\)"),
    "data-3d": (_set(b"data", np.zeros((TRAIN_PER_BATCH, 3, 1024), np.uint8)),
                r"shape \(N, 3072\)"),
    "data-float": (_set(b"data", np.zeros((TRAIN_PER_BATCH, 3072), np.float32)),
                   r"must be uint8, got dtype float32"),
    "data-list": (_set(b"data", [[0] * 3072] * TRAIN_PER_BATCH), r"must be a numpy array"),
    "label-10": (lambda batch: batch[b"labels"].__setitem__(3, 10), r"0\.\.9.*to 10"),
    "label-negative": (lambda batch: batch[b"labels"].__setitem__(0, -1), r"0\.\.9.*from -1"),
    "labels-str": (lambda batch: batch[b"labels"].__setitem__(0, "cat"),
                   r"b'labels' must be a list of ints"),
    "labels-count": (lambda batch: batch[b"labels"].pop(), r"6 labels for 7 images"),
}


@pytest.mark.parametrize("corrupt, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_malformed_batch(dataset, corrupt, message):
    directory, batches = dataset
    batch = batches["data_batch_3"]
    corrupt(batch)
    write_pickle(directory / "data_batch_3", batch)
    with pytest.raises(CIFAR10FormatError, match=message) as error:
        load_cifar10(directory)
    assert str(directory / "data_batch_3") in str(error.value)


@pytest.mark.parametrize("contents, message", [
    (b"", "EOFError"),
    (b"this is not a pickle", "not a readable CIFAR-10 pickle"),
    (pickle.dumps([1, 2, 3], protocol=2), "expected a dict, got list"),
], ids=["empty", "garbage", "list"])
def test_unreadable_batch(dataset, contents, message):
    directory, _ = dataset
    (directory / TEST_FILE).write_bytes(contents)
    with pytest.raises(CIFAR10FormatError, match=message) as error:
        load_cifar10(directory)
    assert str(directory / TEST_FILE) in str(error.value)


def test_truncated_batch(dataset):
    directory, _ = dataset
    path = directory / "data_batch_5"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CIFAR10FormatError, match="data_batch_5 is not a readable"):
        load_cifar10(directory)


@pytest.mark.parametrize("meta, message", [
    ({b"num_vis": 3072}, r"missing key b'label_names'"),
    ({b"label_names": [b"cat", b"dog"]}, r"list of 10 strings"),
    ({b"label_names": list(range(10))}, r"list of 10 strings"),
], ids=["missing-key", "two-names", "ints"])
def test_malformed_meta(dataset, meta, message):
    directory, _ = dataset
    write_pickle(directory / META_FILE, meta)
    with pytest.raises(CIFAR10FormatError, match=message) as error:
        load_cifar10(directory)
    assert str(directory / META_FILE) in str(error.value)


def test_malformed_archive_member_named(dataset, tmp_path):
    directory, batches = dataset
    del batches["data_batch_1"][b"labels"]
    write_pickle(directory / "data_batch_1", batches["data_batch_1"])
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(directory, archive)
    with pytest.raises(CIFAR10FormatError,
                       match=f"{archive}:{DIRECTORY}/data_batch_1: missing key b'labels'"):
        load_cifar10(archive)


# ---------------------------------------------------------------------------------------------
# Unsafe pickles are refused before they run

class Exploit:
    """Pickles as a call to function(*args) on load, as an attacker's file would."""

    def __init__(self, function, *args):
        self.function = function
        self.args = args

    def __reduce__(self):
        return self.function, self.args


def exploits(marker):
    return {
        "os.system": Exploit(os.system, f"touch {marker}"),
        "builtins.eval": Exploit(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": Exploit(subprocess.Popen, ["touch", str(marker)]),
        "builtins.exec": Exploit(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen",
                                  "builtins.exec"])
@pytest.mark.parametrize("place", ["whole-file", "labels"])
def test_exploit_refused(dataset, tmp_path, name, place):
    directory, batches = dataset
    marker = tmp_path / "marker"
    exploit = exploits(marker)[name]
    batch = batches["data_batch_2"]
    batch[b"labels"] = exploit
    write_pickle(directory / "data_batch_2", exploit if place == "whole-file" else batch)
    with pytest.raises(CIFAR10FormatError, match="refused global") as error:
        load_cifar10(directory)
    assert str(directory / "data_batch_2") in str(error.value)
    assert not marker.exists()


def test_exploit_would_run_under_plain_pickle(tmp_path):
    # Guards the test above: the crafted pickle is a working exploit.
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(exploits(marker)["builtins.eval"], protocol=2))
    assert marker.exists()


def test_exploit_refused_in_archive(dataset, tmp_path):
    directory, _ = dataset
    marker = tmp_path / "marker"
    write_pickle(directory / META_FILE, exploits(marker)["os.system"])
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_archive(directory, archive)
    with pytest.raises(CIFAR10FormatError, match=f"{DIRECTORY}/{META_FILE}.*refused global"):
        load_cifar10(archive)
    assert not marker.exists()


def test_codecs_encode_only_latin1(dataset):
    directory, batches = dataset
    batches["data_batch_1"][b"batch_label"] = Exploit(codecs.encode, "x" * 100, "zlib_codec")
    write_pickle(directory / "data_batch_1", batches["data_batch_1"])
    with pytest.raises(CIFAR10FormatError, match="encoding 'zlib_codec'"):
        load_cifar10(directory)


def test_empty_bytes_takes_no_argument(dataset):
    directory, batches = dataset
    batches["data_batch_1"][b"batch_label"] = Exploit(bytes, 10 ** 12)
    write_pickle(directory / "data_batch_1", batches["data_batch_1"])
    with pytest.raises(CIFAR10FormatError, match="data_batch_1 is not a readable"):
        load_cifar10(directory)


# ---------------------------------------------------------------------------------------------
# The real dataset beside the repository

@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"CIFAR-10 not found at {REAL_DATA}")
def test_real_dataset():
    data = load_cifar10(REAL_DATA)
    assert data.train_images.shape == (50000, 3, 32, 32)
    assert data.test_images.shape == (10000, 3, 32, 32)
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.shape == (50000,) and data.test_labels.shape == (10000,)
    assert data.train_labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.train_labels, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(data.test_labels, minlength=10), [1000] * 10)
    assert data.class_names == CLASS_NAMES
    assert 0 < data.train_images.mean() < 255


# ---------------------------------------------------------------------------------------------
# Split and normalisation

def indexed_set(n):
    """Images whose every pixel holds its sample's index mod 256, labels the index itself."""
    labels = np.arange(n)
    images = np.broadcast_to((labels % 256).astype(np.uint8)[:, None, None, None],
                             (n, 3, 4, 4)).copy()
    return images, labels


def test_split_disjoint_and_complete():
    images, labels = indexed_set(1000)
    train_images, train_labels, val_images, val_labels = train_val_split(images, labels, 100, 3)
    assert train_images.shape == (900, 3, 4, 4) and val_images.shape == (100, 3, 4, 4)
    assert len(np.intersect1d(train_labels, val_labels)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_labels, val_labels])), labels)
    np.testing.assert_array_equal(train_images[:, 0, 0, 0], train_labels % 256)
    np.testing.assert_array_equal(val_images[:, 0, 0, 0], val_labels % 256)


def test_split_seeded():
    images, labels = indexed_set(1000)
    first = train_val_split(images, labels, 100, seed=7)
    again = train_val_split(images, labels, 100, seed=7)
    other = train_val_split(images, labels, 100, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[3], other[3])


@pytest.mark.parametrize("val_size", [0, 1000, -5])
def test_split_bad_size(val_size):
    images, labels = indexed_set(1000)
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(images, labels, val_size)


def test_split_mismatched_labels():
    images, labels = indexed_set(10)
    with pytest.raises(ValueError, match=r"labels of shape \(10,\)"):
        train_val_split(images, labels[:9], 2)


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    # More images than one accumulation chunk, channels with different statistics.
    images = np.stack([rng.normal(100, 10, (2500, 6, 5)), rng.normal(30, 2, (2500, 6, 5)),
                       rng.uniform(0, 255, (2500, 6, 5))], axis=1).clip(0, 255).astype(np.uint8)
    mean, std = channel_stats(images)
    as_float = images.astype(np.float64)
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-10)


def test_channel_stats_large_offset():
    # A mean far larger than the spread must not cancel the variance away.
    values = 1e8 + np.random.default_rng(1).normal(0, 1, (100, 2, 3, 3))
    np.testing.assert_allclose(channel_stats(values)[1], values.std(axis=(0, 2, 3)), rtol=1e-6)


def test_normalize_training_set():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (500, 3, 8, 8), dtype=np.uint8)
    images[:, 1] //= 4
    mean, std = channel_stats(images)
    normalized = normalize(images, mean, std)
    assert normalized.dtype == np.float32 and normalized.shape == images.shape
    np.testing.assert_allclose(normalized.mean(axis=(0, 2, 3), dtype=np.float64), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=(0, 2, 3), dtype=np.float64), 1, atol=1e-5)
    np.testing.assert_allclose(normalized,
                               (images - mean[:, None, None]) / std[:, None, None], atol=1e-5)


@pytest.mark.parametrize("mean, std, message", [
    ([0, 0], [1, 1], r"shape \(3,\)"),
    ([0, 0, 0], [1, 0, 1], "std must be positive"),
], ids=["wrong-length", "zero-std"])
def test_normalize_bad_stats(mean, std, message):
    with pytest.raises(ValueError, match=message):
        normalize(np.zeros((2, 3, 4, 4), np.uint8), mean, std)


# ---------------------------------------------------------------------------------------------
# Batching

@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_covers_every_sample_once(shuffle, drop_last):
    images, labels = indexed_set(103)
    loader = BatchLoader(images, labels, 10, shuffle=shuffle, seed=5, drop_last=drop_last)
    assert len(loader) == (10 if drop_last else 11)
    for epoch in range(3):
        batches = list(loader.epoch(epoch))
        assert len(batches) == len(loader)
        served = np.concatenate([batch_labels for _, batch_labels in batches])
        for batch_images, batch_labels in batches:
            np.testing.assert_array_equal(batch_images[:, 0, 0, 0], batch_labels % 256)
        assert len(np.unique(served)) == len(served)
        if drop_last:
            assert all(len(batch_labels) == 10 for _, batch_labels in batches)
            assert len(served) == 100
        else:
            np.testing.assert_array_equal(np.sort(served), labels)
        if not shuffle:
            np.testing.assert_array_equal(served, labels[:len(served)])


def served_order(loader, epoch):
    return np.concatenate([batch_labels for _, batch_labels in loader.epoch(epoch)])


def test_loader_order_is_a_function_of_seed_and_epoch():
    images, labels = indexed_set(64)
    loader = BatchLoader(images, labels, 16, seed=11)
    fresh = BatchLoader(images, labels, 16, seed=11)
    other_seed = BatchLoader(images, labels, 16, seed=12)
    # Epoch 2 of a fresh loader equals epoch 2 after epochs 0 and 1 have run.
    orders = [served_order(loader, epoch) for epoch in range(3)]
    np.testing.assert_array_equal(served_order(fresh, 2), orders[2])
    np.testing.assert_array_equal(loader.order(1), orders[1])
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(served_order(other_seed, 0), orders[0])


def test_loader_resume_mid_epoch_with_transform():
    images = np.random.default_rng(3).integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    labels = np.arange(50)
    augment = Compose(partial(random_crop, padding=2), horizontal_flip)
    loader = BatchLoader(images, labels, 8, seed=4, transform=augment)
    full = list(loader.epoch(6))
    resumed = list(BatchLoader(images, labels, 8, seed=4, transform=augment).epoch(6, start=3))
    assert len(resumed) == len(full) - 3
    for (images_a, labels_a), (images_b, labels_b) in zip(full[3:], resumed):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(full[0][0], images[full[0][1]])  # the transform ran


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
    ({"batch_size": 4, "seed": -1}, ValueError, "seed must be >= 0"),
    ({"batch_size": 4, "transform": "flip"}, TypeError, "transform must be callable"),
], ids=["zero-batch", "float-batch", "negative-seed", "transform"])
def test_loader_bad_arguments(kwargs, error, message):
    images, labels = indexed_set(10)
    with pytest.raises(error, match=message):
        BatchLoader(images, labels, **kwargs)


def test_loader_bad_start():
    images, labels = indexed_set(10)
    with pytest.raises(ValueError, match=r"start must be in 0\.\.3"):
        BatchLoader(images, labels, 4).epoch(0, start=4)


# ---------------------------------------------------------------------------------------------
# Augmentation

def nonzero_images(n=200, channels=3, height=9, width=7, seed=0):
    """Images with no zero pixel, so a zero in the output can only come from padding/cutout.
    Non-square, so height and width cannot be confused."""
    return np.random.default_rng(seed).integers(1, 256, (n, channels, height, width),
                                                dtype=np.uint8)


AUGMENTATIONS = {
    "crop-zero": partial(random_crop, padding=3),
    "crop-reflect": partial(random_crop, padding=3, mode="reflect"),
    "flip": horizontal_flip,
    "cutout": partial(cutout, size=4),
    "compose": Compose(partial(random_crop, padding=2, mode="reflect"), horizontal_flip,
                       partial(cutout, size=3)),
}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("augment", AUGMENTATIONS.values(), ids=AUGMENTATIONS.keys())
def test_augmentation_keeps_shape_and_dtype(augment, dtype):
    images = nonzero_images().astype(dtype)
    original = images.copy()
    output = augment(images, np.random.default_rng(0))
    assert output.shape == images.shape and output.dtype == images.dtype
    np.testing.assert_array_equal(images, original)  # the input is left untouched


@pytest.mark.parametrize("augment", AUGMENTATIONS.values(), ids=AUGMENTATIONS.keys())
def test_augmentation_seeded(augment):
    images = nonzero_images()
    first = augment(images, np.random.default_rng(42))
    np.testing.assert_array_equal(first, augment(images, np.random.default_rng(42)))
    assert not np.array_equal(first, augment(images, np.random.default_rng(43)))


def test_flip_is_exact_mirror():
    images = nonzero_images()
    output = horizontal_flip(images, np.random.default_rng(0))
    flipped = np.all(output == images[..., ::-1], axis=(1, 2, 3))
    kept = np.all(output == images, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert 50 < flipped.sum() < 150
    np.testing.assert_array_equal(horizontal_flip(images, np.random.default_rng(0), p=1.0),
                                  images[..., ::-1])
    np.testing.assert_array_equal(horizontal_flip(images, np.random.default_rng(0), p=0.0),
                                  images)


def reflect_index(index, size):
    """Where padded coordinate index (which may lie outside 0..size-1) reads in reflect mode."""
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


def shifted(image, dy, dx, mode):
    """image translated so output (y, x) reads input (y + dy, x + dx), padded as mode says."""
    _, height, width = image.shape
    rows = np.arange(height) + dy
    columns = np.arange(width) + dx
    if mode == "reflect":
        return image[:, reflect_index(rows, height)[:, None], reflect_index(columns, width)]
    inside = ((rows >= 0) & (rows < height))[:, None] & ((columns >= 0) & (columns < width))
    values = image[:, rows.clip(0, height - 1)[:, None], columns.clip(0, width - 1)]
    return np.where(inside, values, 0)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_crop_is_a_padded_shift(mode):
    padding = 2
    images = nonzero_images(n=300)
    output = random_crop(images, np.random.default_rng(1), padding=padding, mode=mode)
    offsets = [(dy, dx) for dy in range(-padding, padding + 1)
               for dx in range(-padding, padding + 1)]
    seen = set()
    for image, cropped in zip(images, output):
        matches = [offset for offset in offsets
                   if np.array_equal(cropped, shifted(image, *offset, mode))]
        assert len(matches) == 1
        seen.add(matches[0])
        if mode == "zero":
            assert np.all((cropped == 0) | np.isin(cropped, image))
        else:  # reflected padding only repeats pixels of the image itself
            assert np.all(cropped != 0) and np.all(np.isin(cropped, image))
    assert seen == set(offsets)  # every offset, the extremes included, is drawn


def test_crop_zero_padding_has_zero_border():
    images = nonzero_images(n=1, height=5, width=6)
    # padding larger than the image: a crop may be entirely padding.
    outputs = random_crop(np.repeat(images, 400, axis=0), np.random.default_rng(0), padding=7)
    assert np.any(np.all(outputs == 0, axis=(1, 2, 3)))


@pytest.mark.parametrize("size", [3, 4, 20])
def test_cutout_zeroes_a_clipped_square(size):
    images = nonzero_images(n=300)
    height, width = images.shape[2:]
    output = cutout(images, np.random.default_rng(2), size=size)
    clipped = 0
    for image, result in zip(images, output):
        hole = result == 0
        assert np.all(hole == hole[0])  # the same square in every channel
        np.testing.assert_array_equal(result[~hole], image[~hole])
        rows, columns = np.nonzero(hole[0])
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        assert hole[0].sum() == (bottom - top) * (right - left)  # a full rectangle
        for begin, end, extent in ((top, bottom, height), (left, right, width)):
            # the square's side, unless a border cut it
            assert end - begin == size or begin == 0 or end == extent
            # a centre on the border still leaves half the square
            assert end - begin >= min(size - size // 2, extent)
        clipped += (bottom - top) * (right - left) < size * size
    assert clipped > 0


def test_cutout_centre_within_image():
    # A square of side 1 is just its centre: every pixel must be hit.
    images = nonzero_images(n=2000, height=4, width=3)
    holes = cutout(images, np.random.default_rng(0), size=1)[:, 0] == 0
    assert np.all(holes.sum(axis=(1, 2)) == 1)
    assert np.all(holes.any(axis=0))


@pytest.mark.parametrize("call, error, message", [
    (lambda x, rng: random_crop(x, rng, padding=-1), ValueError, "padding must be >= 0"),
    (lambda x, rng: random_crop(x, rng, mode="wrap"), ValueError, "mode must be"),
    (lambda x, rng: random_crop(x, rng, padding=9, mode="reflect"), ValueError,
     "reflect padding must be smaller"),
    (lambda x, rng: random_crop(x, 0), TypeError, "rng must be a numpy.random.Generator"),
    (lambda x, rng: horizontal_flip(x, rng, p=1.5), ValueError, r"p must be in \[0, 1\]"),
    (lambda x, rng: cutout(x, rng, size=0), ValueError, "size must be >= 1"),
    (lambda x, rng: cutout(x[0], rng), ValueError, r"4-D images \(N, C, H, W\)"),
    (lambda x, rng: Compose(horizontal_flip, 3), TypeError, "every step must be callable"),
], ids=["negative-padding", "mode", "reflect-too-wide", "rng", "p", "cutout-size", "3-D",
        "compose"])
def test_augmentation_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(nonzero_images(n=2), np.random.default_rng(0))
