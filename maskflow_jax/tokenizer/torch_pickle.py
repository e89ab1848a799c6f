"""Reads PyTorch zip checkpoints (`torch.save` since 1.6) without torch (docs/vqf8.md).

A restricted unpickler: only `collections.OrderedDict`, torch's tensor/parameter rebuild functions
and storage types are resolved; every other global becomes an inert placeholder, so nothing from
the file is imported or executed. Tensors come back as numpy arrays.
"""

import collections
import pickle
import zipfile

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointFormatError(ValueError):
    """The file is not a readable PyTorch zip checkpoint (the message says why)."""


class _Storage:
    def __init__(self, name):
        self.name = name


class _Placeholder:
    """Stands in for any global the checkpoint references that we do not need (callbacks, configs)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    if not size:
        return storage[storage_offset].copy()
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix, self.cache = archive, prefix, {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(name)
        return _Placeholder

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointFormatError(f"unexpected persistent id {pid!r}: not a torch zip checkpoint storage")
        _, storage, key, _location, numel = pid
        if key not in self.cache:
            dtype = STORAGE_DTYPES[storage.name]
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            if dtype == "bfloat16":
                arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
            if arr.size != numel:
                raise CheckpointFormatError(f"storage {key} holds {arr.size} elements, the pickle says {numel}")
            self.cache[key] = arr
        return self.cache[key]


def load_torch_zip(path):
    """The unpickled top-level object of a torch zip checkpoint, tensors as numpy arrays."""
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(
            f"{path} is not a zip archive: torch's legacy (pre-1.6) format is not supported; "
            "re-save it with torch >= 1.6 (torch.save(obj, path))"
        )
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise CheckpointFormatError(f"{path}: expected one '<prefix>/data.pkl' entry, found {pkls}")
        prefix = pkls[0][: -len("/data.pkl")]
        with archive.open(pkls[0]) as f:
            return _Unpickler(f, archive, prefix).load()
