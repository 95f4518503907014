"""fastconv.data: CIFAR-10 loading and its safety, split, normalisation, batching, augmentation."""
import codecs
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fastconv.data import (DIRECTORY, META_FILE, TEST_FILE, TRAIN_FILES, CIFAR10FormatError,
                           load_cifar10)

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
