#!/usr/bin/env python3
"""Export a CNN backbone from a PyTorch checkpoint to ONNX, using only numpy and onnx.

inspectd scores images from multi-scale CNN features (f1/f2/f3 at strides 4/8/16). The
backbones come from PyTorch checkpoints, but installing torch on an inspection box just
to convert one file is a multi-gigabyte detour, so this tool reads torch.save files
directly (with a restricted unpickler) and writes the network graph by hand with
onnx.helper, folding BatchNorm into the convolutions.

Supported backbones:
  efficientnet_lite0   lukemelas-style keys (_conv_stem, _blocks.N...), TF "same" padding
  efficientnet_lite1   same layout; width 1.0, depth 1.1 (21 blocks), classifier trained at 240
  efficientnet_lite2   same layout; width 1.1, depth 1.2 (21 blocks), classifier trained at 260
  resnet18             torchvision key layout
  wide_resnet50_2      torchvision key layout

Supported checkpoint formats (detected from the file contents, not the extension):
  torch.save zip format (PyTorch >= 1.6), torch.save legacy format, .npz, .safetensors

The exported model has one input, `image` float32 [batch, 3, height, width] (already
normalised), and outputs `f1`, `f2`, `f3` (plus `logits` [batch, 1000] with
--with-classifier). Height and width are dynamic.

The EfficientNet-Lite block lists are derived from EfficientNet-B0's stage table with the
EfficientNet scaling rules (channels rounded to multiples of 8, repeats ceil(depth * r);
Lite keeps the stem at 32, the head at 1280 and the first and last stage at one block),
and every tensor of the checkpoint is checked against them. f1/f2/f3 are the outputs of
the last block of the last stage at strides 4, 8 and 16: 24/40/112 channels for Lite0
and Lite1, 24/48/120 for Lite2.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pickle
import struct
import sys
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXIT_USAGE = 2  # argparse also exits with 2, so every user-facing failure shares one code


class ExportError(Exception):
    """A problem with the user's input; main() prints it and exits with code 2."""


# ---------------------------------------------------------------------------------------
# Checkpoint reading
# ---------------------------------------------------------------------------------------

# Legacy torch.save files start with this pickled int (torch/serialization.py).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype of one element. bfloat16 has no numpy dtype;
# it is read as uint16 and widened to float32 in _bfloat16_to_float32.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("float32"),
    "DoubleStorage": np.dtype("float64"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype("uint16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
    "UntypedStorage": np.dtype("uint8"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a torch.*Storage class referenced by a persistent id."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


class _Storage:
    """A flat typed buffer. Legacy files store the bytes after the object pickle, so the
    data is attached later; a view (legacy only) is a slice of a root storage."""

    def __init__(self, stype: _StorageType, key: str, numel: int):
        self.stype = stype
        self.key = key
        self.numel = numel
        self.data: np.ndarray | None = None
        self.view_of: tuple[_Storage, int] | None = None  # (root, element offset)

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.array()[offset : offset + self.numel]
        if self.data is None:
            raise ExportError(f"storage {self.key!r} is referenced but its data is missing")
        return self.data


@dataclass
class _TensorRef:
    """What _rebuild_tensor_v2 returns while unpickling; materialised once storages are read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        flat = self.storage.array()
        size = tuple(int(s) for s in self.size)
        stride = tuple(int(s) for s in self.stride)
        if 0 in size:
            return np.zeros(size, dtype=_numpy_dtype(self.storage.stype))
        # Bounds check before as_strided, which would otherwise read arbitrary memory.
        last = self.offset + sum((n - 1) * s for n, s in zip(size, stride))
        if self.offset < 0 or any(s < 0 for s in stride) or last >= flat.size:
            raise ExportError(
                f"tensor (offset {self.offset}, size {list(size)}, stride {list(stride)}) "
                f"does not fit in its storage of {flat.size} elements"
            )
        base = flat[self.offset :]
        item = base.itemsize
        arr = np.lib.stride_tricks.as_strided(
            base, shape=size, strides=[s * item for s in stride], writeable=False
        )
        arr = np.array(arr)  # contiguous copy, detached from the storage buffer
        if self.storage.stype.name == "BFloat16Storage":
            arr = _bfloat16_to_float32(arr)
        return arr


def _numpy_dtype(stype: _StorageType) -> np.dtype:
    return np.dtype("float32") if stype.name == "BFloat16Storage" else stype.dtype


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # bfloat16 is the upper half of a float32, so shifting the bits up is exact.
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    # Covers both _rebuild_tensor (4 args) and _rebuild_tensor_v2 (requires_grad,
    # backward_hooks, metadata): the extra arguments only matter for autograd.
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    # nn.Parameter wraps a tensor; for inference only the tensor matters.
    return data


def _codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles written by Python 3 encode `bytes` objects as
    # _codecs.encode(str, 'latin1'); harmless, so allow exactly that.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Only these globals may be referenced by a checkpoint pickle. Anything else (an
# nn.Module class, os.system, ...) is refused: unpickling arbitrary classes runs code.
_SAFE_GLOBALS: dict[tuple[str, str], Callable] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles torch.save object pickles into plain Python objects plus _TensorRefs.

    `open_storage(stype, key, numel)` returns the _Storage for a persistent id; the zip
    reader loads the bytes there, the legacy reader only registers the storage."""

    def __init__(self, file, open_storage: Callable[[_StorageType, str, int], _Storage] | None):
        super().__init__(file)
        self._open_storage = open_storage
        self._views: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: only state dicts of tensors are supported "
            "(save model.state_dict() rather than the model object)"
        )

    def persistent_load(self, pid):
        if self._open_storage is None:
            raise pickle.UnpicklingError("unexpected persistent id in header pickle")
        if not isinstance(pid, tuple) or len(pid) < 5:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind = _ascii(pid[0])
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id type {kind!r}")
        stype, key, _location, numel = pid[1], _ascii(pid[2]), pid[3], int(pid[4])
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names unknown storage type {stype!r}")
        storage = self._open_storage(stype, key, numel)
        view = pid[5] if len(pid) > 5 else None
        return storage if view is None else self._view(storage, view)

    def _view(self, root: _Storage, view) -> _Storage:
        # Legacy (torch < 0.4) storage views: (view_key, element offset, element count).
        view_key, offset, size = _ascii(view[0]), int(view[1]), int(view[2])
        if view_key not in self._views:
            storage = _Storage(root.stype, view_key, size)
            storage.view_of = (root, offset)
            self._views[view_key] = storage
        return self._views[view_key]


def _ascii(value) -> str:
    # Python-2 era checkpoints pickle these strings as bytes.
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _storage_from_bytes(stype: _StorageType, raw: bytes, numel: int, big_endian: bool, key: str):
    dtype = stype.dtype.newbyteorder(">") if big_endian else stype.dtype
    if len(raw) != numel * dtype.itemsize:
        raise ExportError(
            f"storage {key!r} holds {len(raw)} bytes, expected {numel} x {dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(stype.dtype, copy=False)


def _materialise(obj):
    """Replace every _TensorRef in a nested dict/list/tuple with a numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_torch_zip(zf: zipfile.ZipFile, names: list[str]):
    pkl = next(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    big_endian = False
    if prefix + "byteorder" in names:
        big_endian = zf.read(prefix + "byteorder").decode().strip() == "big"
    storages: dict[str, _Storage] = {}

    def open_storage(stype: _StorageType, key: str, numel: int) -> _Storage:
        if key not in storages:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ExportError(f"archive lacks storage data {member!r}")
            storage = _Storage(stype, key, numel)
            storage.data = _storage_from_bytes(stype, zf.read(member), numel, big_endian, key)
            storages[key] = storage
        return storages[key]

    with zf.open(pkl) as f:
        return _TorchUnpickler(f, open_storage).load()


def _load_torch_legacy(f):
    """Legacy torch.save: magic, protocol, sys_info, object pickle, storage-key pickle,
    then per key an int64 element count followed by the raw little-endian data."""
    header = _TorchUnpickler(f, None)
    if header.load() != TORCH_LEGACY_MAGIC:
        raise ExportError("pickle file is not a torch.save checkpoint (bad magic number)")
    protocol = header.load()
    if protocol != 1001:
        raise ExportError(f"unsupported legacy torch protocol version {protocol!r}")
    sys_info = _TorchUnpickler(f, None).load()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    storages: dict[str, _Storage] = {}

    def open_storage(stype: _StorageType, key: str, numel: int) -> _Storage:
        return storages.setdefault(key, _Storage(stype, key, numel))

    obj = _TorchUnpickler(f, open_storage).load()
    keys = _TorchUnpickler(f, None).load()
    for key in map(_ascii, keys):
        storage = storages.get(key)
        if storage is None:
            raise ExportError(f"storage key {key!r} listed but never referenced")
        count_bytes = f.read(8)
        if len(count_bytes) != 8:
            raise ExportError(f"file truncated before storage {key!r}")
        count = struct.unpack("<q", count_bytes)[0]
        if count != storage.numel:
            raise ExportError(f"storage {key!r} has {count} elements, expected {storage.numel}")
        raw = f.read(count * storage.stype.dtype.itemsize)
        storage.data = _storage_from_bytes(storage.stype, raw, count, big_endian, key)
    return obj


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "uint16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def _load_safetensors(data: bytes) -> dict:
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    out = collections.OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ExportError(f"tensor {name!r} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end > len(body) or end - start != int(np.prod(shape)) * dtype.itemsize:
            raise ExportError(f"tensor {name!r} has inconsistent data_offsets {start}..{end}")
        arr = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
        arr = arr.astype(dtype.newbyteorder("="))  # native byte order, owned copy
        out[name] = _bfloat16_to_float32(arr) if info["dtype"] == "BF16" else arr
    return out


def _is_safetensors(head: bytes, file_size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + header_len <= file_size


def read_checkpoint(path: str):
    """Read a checkpoint file into Python objects with numpy arrays for tensors."""
    if not os.path.exists(path):
        raise ExportError("no such file")
    if not os.path.isfile(path):
        raise ExportError("not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if zipfile.is_zipfile(f):
                f.seek(0)
                return _read_zip_checkpoint(f)
            f.seek(0)  # is_zipfile moved the position
            if _is_safetensors(head, os.path.getsize(path)):
                return _load_safetensors(f.read())
            if head[:1] == b"\x80":  # pickle protocol >= 2 opcode: legacy torch.save
                return _materialise(_load_torch_legacy(f))
    except ExportError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError,
            IndexError, AttributeError, zipfile.BadZipFile, struct.error,
            UnicodeDecodeError) as e:
        raise ExportError(f"unreadable checkpoint: {e}") from e
    except OSError as e:
        raise ExportError(f"cannot read file: {e.strerror or e}") from e
    raise ExportError(
        "unknown checkpoint format (expected a torch.save file, .npz or .safetensors)"
    )


def _read_zip_checkpoint(f):
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return _materialise(_load_torch_zip(zf, names))
        if names and all(n.endswith(".npy") for n in names):
            f.seek(0)
            with np.load(f, allow_pickle=False) as npz:
                return collections.OrderedDict((k, npz[k]) for k in npz.files)
    raise ExportError("zip archive is neither a torch.save checkpoint nor an .npz file")


# Common wrappers written by training scripts around the actual state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def extract_state_dict(obj) -> dict[str, np.ndarray]:
    """Find the tensor dict inside a checkpoint object and normalise its keys."""
    for _ in range(3):  # wrappers can nest, e.g. {'model': {'state_dict': ...}}
        if not isinstance(obj, dict):
            raise ExportError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
        if any(isinstance(v, np.ndarray) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise ExportError(
                "checkpoint dict holds no tensors and no state_dict/model entry "
                f"(top-level keys: {', '.join(map(str, list(obj)[:8]))})"
            )
        obj = inner
    tensors = {
        str(k): v for k, v in obj.items()
        if isinstance(v, np.ndarray) and not str(k).endswith("num_batches_tracked")
    }
    if not tensors:
        raise ExportError("checkpoint contains no tensors")
    # nn.DataParallel prefixes every key with "module."; strip it when all keys have it.
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    return extract_state_dict(read_checkpoint(path))


# ---------------------------------------------------------------------------------------
# Weight access and BatchNorm folding
# ---------------------------------------------------------------------------------------


class Weights:
    """Shape-checked access to a state dict, so a wrong checkpoint fails with the key name
    instead of producing a graph that ONNX Runtime rejects (or, worse, silently accepts)."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.state:
            raise ExportError(f"missing key '{key}' (expected shape {list(shape)})"
                              + self._wrong_backbone_hint(key))
        arr = self.state[key]
        if tuple(arr.shape) != tuple(shape):
            raise ExportError(
                f"key '{key}' has shape {list(arr.shape)}, expected {list(shape)}"
            )
        return arr.astype(np.float64)  # fold in float64, round once at the end

    def _wrong_backbone_hint(self, key: str) -> str:
        # A whole missing module (not just one tensor) usually means the wrong backbone.
        module = key.split(".")[0]
        if any(k.split(".")[0] == module for k in self.state):
            return ""
        roots = list(dict.fromkeys(k.split(".")[0] for k in self.state))
        more = ", ..." if len(roots) > 4 else ""
        return (f"; the checkpoint's keys start with {', '.join(roots[:4])}{more} "
                "- is it for a different backbone?")

    def conv_bn(self, conv: str, bn: str, cout: int, cin_per_group: int, k: int,
                eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Conv weight/bias with the following BatchNorm folded in (inference mode):
        w' = w * gamma / sqrt(var + eps),  b' = beta + (b - mean) * gamma / sqrt(var + eps)."""
        w = self.get(f"{conv}.weight", (cout, cin_per_group, k, k))
        # The supported layouts have bias-free convs, but a port that kept the bias
        # should still export correctly rather than silently drop it.
        has_bias = f"{conv}.bias" in self.state
        b = self.get(f"{conv}.bias", (cout,)) if has_bias else np.zeros(cout)
        gamma, beta, mean, var = (self.get(f"{bn}.{p}", (cout,))
                                  for p in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + eps)
        return w * scale[:, None, None, None], beta + (b - mean) * scale

    def linear(self, name: str, out_features: int, in_features: int):
        return (self.get(f"{name}.weight", (out_features, in_features)),
                self.get(f"{name}.bias", (out_features,)))


# ---------------------------------------------------------------------------------------
# ONNX graph construction
# ---------------------------------------------------------------------------------------


class GraphBuilder:
    """Thin helper over onnx.helper: unique tensor names, float32 initialisers."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = {"image"}
        self._clip_bounds: tuple[str, str] | None = None  # shared by every ReLU6

    def _unique(self, name: str) -> str:
        candidate, i = name, 1
        while candidate in self._names:
            i += 1
            candidate = f"{name}_{i}"
        self._names.add(candidate)
        return candidate

    def const(self, name: str, value: np.ndarray) -> str:
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        out = self._unique(name)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, w: np.ndarray, b: np.ndarray, name: str, stride: int = 1,
             pad: int | str = 0, group: int = 1) -> str:
        """pad: an int for symmetric padding, or "SAME" for TensorFlow-style padding."""
        k = w.shape[-1]
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group)
        if pad == "SAME":
            # ONNX SAME_UPPER is TF "same": out = ceil(in / stride), total padding
            # max((out-1)*stride + k - in, 0), with the odd extra pixel at the end. The
            # runtime evaluates it per input size, so odd H/W stay correct.
            attrs["auto_pad"] = "SAME_UPPER"
        else:
            attrs["pads"] = [pad] * 4
        return self.op("Conv", [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)],
                       name, **attrs)

    def relu6(self, x: str, name: str) -> str:
        if self._clip_bounds is None:
            self._clip_bounds = (self.const("relu6_min", np.float32(0.0)),
                                 self.const("relu6_max", np.float32(6.0)))
        return self.op("Clip", [x, *self._clip_bounds], name)

    def classifier(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        pooled = self.op("GlobalAveragePool", [x], "pool")
        flat = self.op("Flatten", [pooled], "flatten", axis=1)
        return self.op("Gemm", [flat, self.const("fc.weight", weight), self.const("fc.bias", bias)],
                       "logits", transB=1)

    def rename(self, old: str, new: str) -> None:
        """Give an intermediate tensor a public output name (f1, logits, ...)."""
        if new in self._names and new != old:
            raise ValueError(f"tensor name {new!r} already used")
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, n in enumerate(seq):
                    if n == old:
                        seq[i] = new
        self._names.add(new)


@dataclass(frozen=True)
class BackboneInfo:
    channels: tuple[int, int, int]  # f1, f2, f3
    mean: tuple[float, float, float]  # expected input normalisation, for metadata only
    std: tuple[float, float, float]
    description: str


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- EfficientNet-Lite0/1/2 --------------------------------------------------------------

LITE_BN_EPS = 1e-3
LITE_STEM, LITE_HEAD = 32, 1280  # Lite keeps both fixed at every scale (TF fix_head_stem)
# EfficientNet-B0's stages, which Lite scales: (expand ratio, kernel, stride of the first
# block, output channels, repeats). Lite drops B0's squeeze-excite and uses ReLU6 for swish.
LITE_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
LITE_FEATURE_STRIDES = {4: "f1", 8: "f2", 16: "f3"}


@dataclass(frozen=True)
class LiteSpec:
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    resolution: int  # the input size the classifier was trained at

    def round_filters(self, channels: int, divisor: int = 8) -> int:
        """EfficientNet's width scaling: nearest multiple of 8, never more than 10% down."""
        scaled = channels * self.width
        rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
        return int(rounded + divisor if rounded < 0.9 * scaled else rounded)

    def blocks(self) -> tuple[tuple[int, int, int, int], ...]:
        """(expand ratio, kernel, stride, output channels) per block, i.e. per _blocks.N."""
        out = []
        for si, (expand, k, stride, channels, repeats) in enumerate(LITE_STAGES):
            if 0 < si < len(LITE_STAGES) - 1:  # Lite fixes the first and last stage's repeats
                repeats = math.ceil(self.depth * repeats)
            cout = self.round_filters(channels)
            out += [(expand, k, stride, cout)] + [(expand, k, 1, cout)] * (repeats - 1)
        return tuple(out)

    def feature_blocks(self) -> dict[int, str]:
        """Block index -> feature name: the last block of the last stage at strides 4, 8 and
        16 (for stride 16 that is the 112-channel stage, not the 80-channel one before it)."""
        found, stride = {}, 2  # the stem halves the input
        for i, (_e, _k, s, _c) in enumerate(self.blocks()):
            stride *= s
            if stride in LITE_FEATURE_STRIDES:
                found[LITE_FEATURE_STRIDES[stride]] = i  # later blocks overwrite earlier ones
        return {i: name for name, i in sorted(found.items())}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the full (classifier) network in the lukemelas key layout."""
        shapes: dict[str, tuple[int, ...]] = {}

        def conv_bn(conv: str, bn: str, cout: int, cin: int, k: int) -> None:
            shapes[f"{conv}.weight"] = (cout, cin, k, k)
            shapes.update({f"{bn}.{p}": (cout,)
                           for p in ("weight", "bias", "running_mean", "running_var")})

        conv_bn("_conv_stem", "_bn0", LITE_STEM, 3, 3)
        cin = LITE_STEM
        for i, (expand, k, _s, cout) in enumerate(self.blocks()):
            p, hidden = f"_blocks.{i}", cin * expand
            if expand != 1:
                conv_bn(f"{p}._expand_conv", f"{p}._bn0", hidden, cin, 1)
            conv_bn(f"{p}._depthwise_conv", f"{p}._bn1", hidden, 1, k)
            conv_bn(f"{p}._project_conv", f"{p}._bn2", cout, hidden, 1)
            cin = cout
        conv_bn("_conv_head", "_bn1", LITE_HEAD, cin, 1)
        shapes.update({"_fc.weight": (1000, LITE_HEAD), "_fc.bias": (1000,)})
        return shapes


LITES = {
    "efficientnet_lite0": LiteSpec(width=1.0, depth=1.0, resolution=224),
    "efficientnet_lite1": LiteSpec(width=1.0, depth=1.1, resolution=240),
    "efficientnet_lite2": LiteSpec(width=1.1, depth=1.2, resolution=260),
}
LITE0_BLOCKS = LITES["efficientnet_lite0"].blocks()
LITE0_FEATURE_BLOCKS = LITES["efficientnet_lite0"].feature_blocks()  # {2: f1, 4: f2, 10: f3}


def _lite_mismatches(spec: LiteSpec, state: dict[str, np.ndarray]) -> tuple[list, list]:
    """(tensors whose shape differs from the architecture, tensors it does not have).
    Absent tensors are not listed: Weights.get reports those that the export needs."""
    shapes = spec.param_shapes()
    wrong = [(k, list(v.shape), list(shapes[k])) for k, v in state.items()
             if k in shapes and tuple(v.shape) != shapes[k]]
    return wrong, [k for k in state if k not in shapes]


def _check_lite_checkpoint(backbone: str, state: dict[str, np.ndarray]) -> None:
    """Check every tensor of the checkpoint against the derived architecture, so a
    checkpoint of another Lite variant fails up front with the variant it belongs to."""
    spec = LITES[backbone]
    shapes = spec.param_shapes()
    if not any(k in shapes for k in state):
        return  # not this key layout at all: Weights.get explains the first missing key
    wrong, unexpected = _lite_mismatches(spec, state)
    if not wrong and not unexpected:
        return
    problems = []
    if wrong:
        key, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors of the wrong shape)" if len(wrong) > 1 else ""
        problems.append(f"key '{key}' has shape {got}, expected {want}{more}")
    if unexpected:
        n_blocks = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        problems.append(f"unexpected key '{unexpected[0]}'{more} (the checkpoint has "
                        f"{n_blocks} blocks, {backbone} has {len(spec.blocks())})")
    fits = [name for name, other in LITES.items()
            if name != backbone and _lite_mismatches(other, state) == ([], [])]
    hint = f"; the checkpoint fits {fits[0]}" if fits else ""
    raise ExportError(f"checkpoint does not match {backbone} (width {spec.width}, depth "
                      f"{spec.depth}): {'; '.join(problems)}{hint}")


def _lite_block(g: GraphBuilder, w: Weights, x: str, i: int, cin: int, spec) -> str:
    expand, k, stride, cout = spec
    p = f"_blocks.{i}"
    h, hidden = x, cin * expand
    if expand != 1:
        wt, b = w.conv_bn(f"{p}._expand_conv", f"{p}._bn0", hidden, cin, 1, LITE_BN_EPS)
        h = g.relu6(g.conv(h, wt, b, f"{p}.expand"), f"{p}.expand_relu6")
    wt, b = w.conv_bn(f"{p}._depthwise_conv", f"{p}._bn1", hidden, 1, k, LITE_BN_EPS)
    h = g.relu6(g.conv(h, wt, b, f"{p}.depthwise", stride, "SAME", group=hidden),
                f"{p}.depthwise_relu6")
    wt, b = w.conv_bn(f"{p}._project_conv", f"{p}._bn2", cout, hidden, 1, LITE_BN_EPS)
    h = g.conv(h, wt, b, f"{p}.project")  # linear bottleneck: no activation
    if stride == 1 and cin == cout:
        h = g.op("Add", [h, x], f"{p}.skip")
    return h


def build_efficientnet_lite(backbone: str) -> Callable[[GraphBuilder, Weights, bool], list[str]]:
    spec = LITES[backbone]
    blocks, features = spec.blocks(), spec.feature_blocks()

    def build(g: GraphBuilder, w: Weights, with_classifier: bool) -> list[str]:
        _check_lite_checkpoint(backbone, w.state)
        wt, b = w.conv_bn("_conv_stem", "_bn0", LITE_STEM, 3, 3, LITE_BN_EPS)
        x = g.relu6(g.conv("image", wt, b, "stem", 2, "SAME"), "stem_relu6")
        outputs, cin = [], LITE_STEM
        # Blocks after f3 only feed the classifier; leaving them out saves about a third
        # of the multiply-adds and a large share of the weights.
        last = len(blocks) - 1 if with_classifier else max(features)
        for i in range(last + 1):
            x = _lite_block(g, w, x, i, cin, blocks[i])
            cin = blocks[i][3]
            if i in features:
                g.rename(x, features[i])
                x = features[i]
                outputs.append(x)
        if with_classifier:
            wt, b = w.conv_bn("_conv_head", "_bn1", LITE_HEAD, cin, 1, LITE_BN_EPS)
            x = g.relu6(g.conv(x, wt, b, "head"), "head_relu6")
            outputs.append(g.classifier(x, *w.linear("_fc", 1000, LITE_HEAD)))
        return outputs
    return build


def _lite_info(backbone: str) -> BackboneInfo:
    spec = LITES[backbone]
    blocks = spec.blocks()
    variant = backbone[len("efficientnet_lite"):]
    return BackboneInfo(tuple(blocks[i][3] for i in spec.feature_blocks()),
                        IMAGENET_MEAN, IMAGENET_STD,
                        f"EfficientNet-Lite{variant} (ReLU6, no squeeze-excite, TF same padding)")


# --- torchvision ResNets ------------------------------------------------------------------

RESNET_BN_EPS = 1e-5


@dataclass(frozen=True)
class ResNetSpec:
    bottleneck: bool
    layers: tuple[int, int, int, int]
    width_per_group: int = 64

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1


RESNETS = {
    "resnet18": ResNetSpec(bottleneck=False, layers=(2, 2, 2, 2)),
    "wide_resnet50_2": ResNetSpec(bottleneck=True, layers=(3, 4, 6, 3), width_per_group=128),
}


def _conv_bn_relu(g: GraphBuilder, w: Weights, x: str, conv: str, bn: str, cin: int,
                  cout: int, k: int, stride: int, relu: bool = True) -> str:
    wt, b = w.conv_bn(conv, bn, cout, cin, k, RESNET_BN_EPS)
    y = g.conv(x, wt, b, conv, stride, k // 2)
    return g.op("Relu", [y], f"{conv}.relu") if relu else y


def _resnet_block(g: GraphBuilder, w: Weights, spec: ResNetSpec, x: str, p: str,
                  cin: int, planes: int, stride: int) -> tuple[str, int]:
    cout = planes * spec.expansion
    if spec.bottleneck:
        # torchvision v1.5: the stride sits on the 3x3 conv; width scales with width_per_group.
        width = planes * spec.width_per_group // 64
        h = _conv_bn_relu(g, w, x, f"{p}.conv1", f"{p}.bn1", cin, width, 1, 1)
        h = _conv_bn_relu(g, w, h, f"{p}.conv2", f"{p}.bn2", width, width, 3, stride)
        h = _conv_bn_relu(g, w, h, f"{p}.conv3", f"{p}.bn3", width, cout, 1, 1, relu=False)
    else:
        h = _conv_bn_relu(g, w, x, f"{p}.conv1", f"{p}.bn1", cin, planes, 3, stride)
        h = _conv_bn_relu(g, w, h, f"{p}.conv2", f"{p}.bn2", planes, cout, 3, 1, relu=False)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = _conv_bn_relu(g, w, x, f"{p}.downsample.0", f"{p}.downsample.1",
                                 cin, cout, 1, stride, relu=False)
    return g.op("Relu", [g.op("Add", [h, shortcut], f"{p}.add")], f"{p}.relu"), cout


def build_resnet(spec: ResNetSpec) -> Callable[[GraphBuilder, Weights, bool], list[str]]:
    def build(g: GraphBuilder, w: Weights, with_classifier: bool) -> list[str]:
        x = _conv_bn_relu(g, w, "image", "conv1", "bn1", 3, 64, 7, 2)
        x = g.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
        outputs, cin = [], 64
        n_layers = 4 if with_classifier else 3  # layer4 only feeds the classifier
        for li in range(n_layers):
            planes = 64 << li
            for bi in range(spec.layers[li]):
                stride = 2 if li > 0 and bi == 0 else 1
                x, cin = _resnet_block(g, w, spec, x, f"layer{li + 1}.{bi}", cin, planes, stride)
            if li < 3:
                g.rename(x, f"f{li + 1}")
                x = f"f{li + 1}"
                outputs.append(x)
        if with_classifier:
            outputs.append(g.classifier(x, *w.linear("fc", 1000, cin)))
        return outputs
    return build


def _resnet_info(name: str, spec: ResNetSpec) -> BackboneInfo:
    e = spec.expansion
    return BackboneInfo((64 * e, 128 * e, 256 * e), IMAGENET_MEAN, IMAGENET_STD,
                        f"torchvision {name}")


BACKBONES: dict[str, tuple[Callable, BackboneInfo]] = {
    # ImageNet normalisation is what inspectd feeds (and what the golden features in
    # tests/fixtures were computed with); the lite0 checkpoint classifies well with it.
    **{name: (build_efficientnet_lite(name), _lite_info(name)) for name in LITES},
    **{name: (build_resnet(spec), _resnet_info(name, spec)) for name, spec in RESNETS.items()},
}


def _feature_value_info(name: str, channels: int, stride: int) -> onnx.ValueInfoProto:
    # Spatial output dims depend on the padding scheme, so they stay symbolic.
    return helper.make_tensor_value_info(
        name, TensorProto.FLOAT, ["batch", channels, f"{name}_height", f"{name}_width"],
        doc_string=f"features at stride {stride}")


def build_model(backbone: str, state: dict[str, np.ndarray], with_classifier: bool = False,
                opset: int = 17, source: str = "") -> onnx.ModelProto:
    build, info = BACKBONES[backbone]
    g = GraphBuilder()
    outputs = build(g, Weights(state), with_classifier)
    if with_classifier:
        g.rename(outputs[-1], "logits")
    image = helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, ["batch", 3, "height", "width"],
        doc_string=f"normalised RGB, (x/255 - mean) / std with mean {info.mean} std {info.std}")
    outs = [_feature_value_info(f"f{i + 1}", c, 4 << i) for i, c in enumerate(info.channels)]
    if with_classifier:
        outs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000]))
    graph = helper.make_graph(g.nodes, backbone, [image], outs, g.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opset_ids, producer_name="inspectd tools/export_backbone.py",
        # The lowest IR version that can carry this opset keeps older runtimes happy.
        ir_version=helper.find_min_ir_version_for(opset_ids),
        doc_string=(f"{info.description} feature extractor: input `image` [batch,3,H,W]; "
                    f"outputs f1/f2/f3 with {list(info.channels)} channels at strides 4/8/16"
                    + ("; `logits` [batch,1000] ImageNet classes" if with_classifier else "")))
    helper.set_model_props(model, {
        "backbone": backbone,
        "feature_outputs": "f1,f2,f3",
        "feature_channels": ",".join(map(str, info.channels)),
        "feature_strides": "4,8,16",
        "with_classifier": str(with_classifier).lower(),
        "input_mean": ",".join(map(str, info.mean)),
        "input_std": ",".join(map(str, info.std)),
        "source_checkpoint": os.path.basename(source),
    })
    return model


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_backbone.py",
        description=(
            "Convert a PyTorch backbone checkpoint to ONNX without PyTorch.\n\n"
            "The model's input is `image`, float32 [batch, 3, height, width], normalised as\n"
            "(rgb/255 - mean) / std with the ImageNet mean/std (recorded in the model's\n"
            "input_mean/input_std metadata). Outputs are the features f1, f2, f3 at strides\n"
            "4, 8, 16, plus `logits` [batch, 1000] with --with-classifier."),
        epilog=(
            "checkpoint formats: torch.save (zip or legacy), .npz, .safetensors; the state\n"
            "dict may be wrapped as {'state_dict': ...} or {'model': ...}. Only tensors are\n"
            "unpickled: checkpoints holding pickled model objects are refused.\n"
            "Errors (missing file, unreadable checkpoint, missing or misshapen keys) exit\n"
            "with code 2.\n\n"
            "EfficientNet-Lite features are 24/40/112 channels (lite0, lite1) or 24/48/120\n"
            "(lite2); the classifiers were trained at 224 (lite0), 240 (lite1) and 260 (lite2)\n"
            "pixels square.\n\n"
            "examples:\n"
            "  export_backbone.py efficientnet_lite0 efficientnet-lite0-57934424.pth \\\n"
            "      -o backbone.onnx\n"
            "  export_backbone.py efficientnet_lite2 efficientnet-lite2-9656183e.pth \\\n"
            "      --with-classifier -o lite2_classifier.onnx\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone", choices=sorted(BACKBONES), help="network architecture")
    parser.add_argument("checkpoint", help="state dict file (.pth/.pt/.npz/.safetensors)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                        help="where to write the ONNX model")
    parser.add_argument("--with-classifier", action="store_true",
                        help="also compute the ImageNet classifier head (output `logits`); "
                             "adds the layers after f3, which features alone do not need")
    parser.add_argument("--opset", type=int, default=17,
                        help="ONNX opset version (default: %(default)s; minimum 11)")
    args = parser.parse_args(argv)
    if not 11 <= args.opset <= onnx.defs.onnx_opset_version():
        parser.error(f"--opset must be between 11 and {onnx.defs.onnx_opset_version()}")
    return args


def export(backbone: str, checkpoint: str, output: str, with_classifier: bool = False,
           opset: int = 17) -> onnx.ModelProto:
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):  # checked first: loading a big checkpoint takes a while
        raise ExportError(f"{output}: output directory {out_dir} does not exist")
    try:
        state = load_state_dict(checkpoint)
        model = build_model(backbone, state, with_classifier, opset, source=checkpoint)
    except ExportError as e:
        raise ExportError(f"{checkpoint}: {e}") from e
    onnx.checker.check_model(model)  # a failure here is a bug in this tool, not user input
    try:
        onnx.save_model(model, output)
    except OSError as e:
        raise ExportError(f"{output}: cannot write: {e.strerror or e}") from e
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = export(args.backbone, args.checkpoint, args.output, args.with_classifier,
                       args.opset)
    except ExportError as e:
        print(f"export_backbone.py: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    outputs = ", ".join(o.name for o in model.graph.output)
    print(f"wrote {args.output}: {args.backbone}, {len(model.graph.node)} nodes, "
          f"outputs {outputs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
