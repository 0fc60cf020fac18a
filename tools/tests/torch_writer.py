"""Write torch.save-compatible checkpoints without torch, for exercising the exporter's reader.

The pickles reference `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage` (etc.) by
name, exactly like torch does. Pickle can only emit a global reference to an object it can
find again through sys.modules, so stand-in `torch` modules are registered while pickling
(and removed afterwards, so nothing else mistakes them for the real torch).
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from dataclasses import dataclass

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


@dataclass(eq=False)
class Storage:
    """A flat buffer that several tensors may share (as torch storages can)."""

    data: np.ndarray  # 1-D


@dataclass(eq=False)
class TensorView:
    """A tensor as torch pickles it: storage + element offset + size + element strides."""

    storage: Storage
    offset: int
    size: tuple
    stride: tuple


def _as_view(array: np.ndarray) -> TensorView:
    array = np.ascontiguousarray(array)
    strides = tuple(s // array.itemsize for s in array.strides)
    return TensorView(Storage(array.reshape(-1)), 0, array.shape, strides)


def _rebuild_tensor_v2(*args):  # never called: only its pickled name matters
    raise AssertionError("stand-in torch function called")


_rebuild_tensor_v2.__module__ = "torch._utils"  # where pickle will say it lives


@contextlib.contextmanager
def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    classes = {}
    for name in set(_STORAGE_NAMES.values()):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        classes[name] = cls
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield classes
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _TorchPickler(pickle.Pickler):
    """Pickles np.ndarray / TensorView as torch tensors whose storages are persistent ids."""

    def __init__(self, file, classes, legacy: bool):
        super().__init__(file, protocol=2)  # torch.save's default protocol
        self.classes = classes
        self.legacy = legacy
        self.storages: dict[int, tuple[str, Storage]] = {}  # id(storage) -> (key, storage)

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            obj = _as_view(obj)
        if isinstance(obj, TensorView):
            args = (obj.storage, obj.offset, tuple(obj.size), tuple(obj.stride), False,
                    collections.OrderedDict())
            return _rebuild_tensor_v2, args
        return NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        key = self.storages.setdefault(id(obj), (str(len(self.storages)), obj))[0]
        cls = self.classes[_STORAGE_NAMES[obj.data.dtype]]
        pid = ("storage", cls, key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid  # legacy ids carry view metadata


def _pickle(obj, legacy: bool) -> tuple[bytes, list[tuple[str, Storage]]]:
    buf = io.BytesIO()
    with _fake_torch() as classes:
        pickler = _TorchPickler(buf, classes, legacy)
        pickler.dump(obj)
    return buf.getvalue(), list(pickler.storages.values())


def save_zip(obj, path: str, prefix: str = "archive") -> None:
    """Modern torch.save layout: <prefix>/data.pkl plus one raw file per storage."""
    data_pkl, storages = _pickle(obj, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        zf.writestr(f"{prefix}/byteorder", "little")
        for key, storage in storages:
            little = storage.data.astype(storage.data.dtype.newbyteorder("<"))
            zf.writestr(f"{prefix}/data/{key}", little.tobytes())
        zf.writestr(f"{prefix}/version", "3\n")


def save_legacy(obj, path: str) -> None:
    """Pre-1.6 torch.save layout: a sequence of pickles followed by the raw storages."""
    data_pkl, storages = _pickle(obj, legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        f.write(data_pkl)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, storage in storages:
            f.write(struct.pack("<q", storage.data.size))
            f.write(storage.data.tobytes())
