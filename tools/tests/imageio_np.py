"""Minimal PNG reading and PIL-style resizing in numpy, so the tests need no Pillow.

Only what the sample images need: 8-bit, non-interlaced greyscale/RGB/RGBA PNGs.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def read_png(path: str) -> np.ndarray:
    """Decode an 8-bit PNG into a uint8 array [H, W, C]."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = len(_PNG_SIGNATURE), [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length  # length, type, body, CRC
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or interlace != 0 or colour not in _CHANNELS:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour {colour}, "
                         f"interlace {interlace})")
    bpp = _CHANNELS[colour]
    raw = zlib.decompress(b"".join(idat))
    rows = _unfilter(raw, height, width * bpp, bpp)
    return rows.reshape(height, width, bpp)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], np.frombuffer(raw, np.uint8, stride, start + 1)
        if kind == 0:
            cur = line.copy()
        elif kind == 2:  # Up: vectorises directly
            cur = line + prev
        elif kind == 1:  # Sub: a running sum along each byte lane, modulo 256
            lanes = line.reshape(-1, bpp).astype(np.int64)
            cur = (np.cumsum(lanes, axis=0) % 256).astype(np.uint8).reshape(-1)
        else:  # Average and Paeth depend on the previous output byte: scalar loop
            cur = _unfilter_sequential(kind, line, prev, bpp)
        out[y] = cur
        prev = cur
    return out


def _unfilter_sequential(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = bytearray(line.tobytes())
    up = prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
        else:
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] resampling matrix of PIL's antialiased BILINEAR filter: a triangle
    kernel widened by the scale factor when shrinking, so every input pixel contributes."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    pixels = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(pixels[None, :] - centres[:, None]) / support, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize [H, W, C] to [height, width, C] (float64), like PIL Image.resize(BILINEAR)."""
    wy = _bilinear_weights(image.shape[0], height)
    wx = _bilinear_weights(image.shape[1], width)
    rows = np.tensordot(wy, image.astype(np.float64), axes=(1, 0))  # [height, W, C]
    return np.tensordot(wx, rows, axes=(1, 1)).transpose(1, 0, 2)   # [height, width, C]


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def preprocess(path: str, height: int, width: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """PNG -> normalised float32 NCHW batch of one."""
    rgb = read_png(path)[..., :3]
    x = resize_bilinear(rgb, height, width) / 255.0
    x = (x - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)
