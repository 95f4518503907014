"""fastconv.save / fastconv.load: state dicts as .npz files, written atomically.

The file is an ordinary .npz: each array is stored under its dotted path
("features.3.running_mean", "state.0.exp_avg"), so np.load reads it too. One extra
entry, a JSON manifest, records the nesting (dicts with str or int keys, lists,
tuples) and the plain scalars (int, float, bool, str, None), so nested objects such as
an optimizer's state dict come back as they were saved. Arrays are read back with
allow_pickle=False: loading a file never runs code.
"""
import json
import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

MANIFEST = "__fastconv_manifest__"
FORMAT_VERSION = 1
# np.savez takes these as keyword arguments, so they cannot name an array.
_RESERVED = {"file", "allow_pickle", MANIFEST}


class _Flattener:
    """Turns an object into a JSON-able tree, collecting its arrays under unique names."""

    def __init__(self):
        self.arrays = {}

    def _name(self, path):
        name = ".".join(path) if path else "value"
        if name in _RESERVED or name in self.arrays:
            name = f"array_{len(self.arrays)}"
        return name

    def node(self, value, path):
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"fastconv.save: {'.'.join(path) or 'value'} is an object array, "
                                f"which cannot be saved without pickle")
            name = self._name(path)
            self.arrays[name] = array
            return {"array": name, "scalar": isinstance(value, np.generic)}
        if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
            return {"value": value}
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise TypeError(f"fastconv.save: dict keys must be str or int, got {key!r} "
                                    f"at {'.'.join(path) or 'top level'}")
                items.append([key, self.node(item, path + [str(key)])])
            return {"dict": items, "ordered": isinstance(value, OrderedDict)}
        if isinstance(value, (list, tuple)):
            return {"list" if isinstance(value, list) else "tuple":
                    [self.node(item, path + [str(i)]) for i, item in enumerate(value)]}
        if hasattr(value, "__array__"):  # e.g. a tensor that converts to numpy
            return self.node(np.asarray(value), path)
        raise TypeError(f"fastconv.save: cannot save {type(value).__name__} at "
                        f"{'.'.join(path) or 'top level'}; use arrays, numbers, str, None, "
                        f"and dicts, lists or tuples of them")


def _rebuild(node, arrays):
    if "array" in node:
        array = arrays[node["array"]]
        return array[()] if node["scalar"] else array
    if "value" in node:
        return node["value"]
    if "dict" in node:
        items = [(key, _rebuild(item, arrays)) for key, item in node["dict"]]
        return OrderedDict(items) if node["ordered"] else dict(items)
    if "list" in node:
        return [_rebuild(item, arrays) for item in node["list"]]
    return tuple(_rebuild(item, arrays) for item in node["tuple"])


def save(obj, path):
    """Save a state dict (or a nested dict/list of arrays and scalars) to path as .npz.

    The write is atomic: the data go to a temporary file in the same directory, are
    flushed and fsynced, and the file is then renamed over path, so a failure at any
    point leaves a previous file at path intact and never a partial one.

    Parameters
    ----------
    obj : dict
        Typically model.state_dict() or optimizer.state_dict(); values may be ndarrays,
        numpy scalars, int, float, bool, str, None, or dicts (str or int keys), lists and
        tuples of these.
    path : str or os.PathLike
        The file name, used as given (no ".npz" is appended).
    """
    flattener = _Flattener()
    manifest = {"format": "fastconv", "version": FORMAT_VERSION, "root": flattener.node(obj, [])}
    arrays = dict(flattener.arrays)
    arrays[MANIFEST] = np.array(json.dumps(manifest))
    write_atomic(path, lambda f: np.savez(f, **arrays))


def write_atomic(path, write):
    """Call write(binary file) on a temporary file beside path, then rename it over path.

    The data are flushed and fsynced before the rename and the directory after it, so a
    failure at any point leaves the previous file at path intact, never a partial one.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                             suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable; not every platform can open a directory."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load(path):
    """Load what save() wrote (or any .npz of plain arrays, as a dict of name -> array).

    Raises
    ------
    FileNotFoundError
        If path does not exist.
    ValueError
        If the file is not a readable .npz (corrupted, truncated, another format) or its
        manifest is damaged; the message names the file.
    """
    path = os.fspath(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with npz:
            # Reading every member now checks each one's CRC: damage shows up here.
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"fastconv.load: {path} is not a readable fastconv .npz file "
                         f"(corrupted or truncated?): {error}") from error
    if MANIFEST not in arrays:
        return OrderedDict(arrays)
    try:
        manifest = json.loads(str(arrays.pop(MANIFEST)))
        if manifest.get("format") != "fastconv" or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format {manifest.get('format')!r} version "
                             f"{manifest.get('version')!r}")
        return _rebuild(manifest["root"], arrays)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"fastconv.load: {path} has a damaged manifest: {error}") from error
