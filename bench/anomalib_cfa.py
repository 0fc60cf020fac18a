#!/usr/bin/env python3
"""Reference benchmark: anomalib 2.7.0's CFA training recipe on the project's backbone.

What it reproduces
    anomalib 2.7.0's CFA (Coupled-hypersphere-based Feature Adaptation) as its Lightning
    module trains and evaluates it (anomalib/models/image/cfa/), on MVTec-AD-layout data, with
    the project's frozen EfficientNet-Lite0 backbone (.local/models/backbone.onnx, made by
    tools/export_backbone.py) in place of anomalib's torchvision backbones. Everything that
    is not backbone-specific is anomalib's own code, imported from the installed package:
    CfaModel.initialize_centroid / compute_distance, Descriptor, CoordConv2d, CfaLoss,
    AnomalyMapGenerator and the AUPRO metric. The numbers it writes are what the project's
    `inspectd train` / `inspectd eval` are compared against on the same images.

How to run it
    bench/setup-anomalib        # once: creates .local/anomalib-venv
    .local/anomalib-venv/bin/python bench/anomalib_cfa.py CATEGORY_DIR... \\
        --epochs 30 --batch 32 --seed 0 --out results.json \\
        [--backbone .local/models/backbone.onnx] [--threads 2] [--eval-every 1] \\
        [--normalised-bank]

    CATEGORY_DIR is one MVTec-AD category: train/good/*.png, test/good/*.png,
    test/<defect>/*.png and ground_truth/<defect>/<name>_mask.png (non-zero = defect).

This is a bench script. It is never run in CI, and neither the product nor scripts/setup
needs it or its venv (torch and anomalib are only installed by bench/setup-anomalib).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import types
import warnings
from pathlib import Path

EXIT_USAGE = 2

IMAGE_SIZE = (256, 256)  # anomalib's CFA PreProcessor default: Resize((256, 256), antialias=True)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# anomalib 2.7.0 CFA hyper-parameters (lightning_model.Cfa defaults / configure_optimizers).
GAMMA_C = 1
GAMMA_D = 1
NUM_NEAREST_NEIGHBORS = 3
NUM_HARD_NEGATIVE_FEATURES = 3
RADIUS = 1e-5
LR = 1e-3
WEIGHT_DECAY = 5e-4
AMSGRAD = True
AUPRO_FPR_LIMIT = 0.3
EVAL_BATCH = 8  # evaluation batch size only bounds memory; per-image results do not depend on it
BACKBONE_CHUNK = 8  # images per onnxruntime call


class BenchError(Exception):
    """A problem with the user's input; main() prints it and exits with EXIT_USAGE."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Data (MVTec-AD layout)
# ---------------------------------------------------------------------------------------


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")


def scan_category(root: Path) -> dict:
    """Lists a category's files and checks the layout; raises BenchError with what is missing."""
    if not root.is_dir():
        raise BenchError(f"category directory '{root}' does not exist")
    train_dir = root / "train" / "good"
    if not train_dir.is_dir():
        raise BenchError(f"'{root}' is not in MVTec-AD layout: '{train_dir}' is missing")
    train = _pngs(train_dir)
    if not train:
        raise BenchError(f"no training images: '{train_dir}' has no *.png files")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise BenchError(f"'{root}' is not in MVTec-AD layout: '{test_dir}' is missing")
    test = []  # (image path, defect type or "good", mask path or None)
    missing_masks = []
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for img in _pngs(sub):
            if sub.name == "good":
                test.append((img, "good", None))
                continue
            mask = root / "ground_truth" / sub.name / f"{img.stem}_mask.png"
            if not mask.is_file():
                missing_masks.append(str(mask))
            test.append((img, sub.name, mask))
    if missing_masks:
        shown = "\n  ".join(missing_masks[:5])
        more = f"\n  ... and {len(missing_masks) - 5} more" if len(missing_masks) > 5 else ""
        raise BenchError(f"{len(missing_masks)} ground-truth mask(s) missing in '{root}':\n  {shown}{more}")
    labels = [t for _, t, _ in test]
    if "good" not in labels:
        raise BenchError(f"no good test images: '{test_dir / 'good'}' is missing or empty")
    if all(t == "good" for t in labels):
        raise BenchError(f"no defect test images in '{test_dir}' (only test/good)")
    return {"train": train, "test": test}


def load_image(path: Path):
    """As anomalib's read_image + PreProcessor Resize: RGB float in [0, 1], 256x256."""
    import torch
    from PIL import Image
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    with Image.open(path) as im:
        im = im.convert("RGB")  # grayscale PNGs become 3 equal channels, as in read_image
        img = TF.to_dtype(TF.to_image(im), torch.float32, scale=True)
    if tuple(img.shape[-2:]) != IMAGE_SIZE:
        # anomalib appends the model's Resize(image_size, antialias=True) to the dataset's
        # augmentations; torchvision's default interpolation is bilinear.
        img = TF.resize(tv_tensors.Image(img), list(IMAGE_SIZE), antialias=True)
    return img.as_subclass(torch.Tensor)


def load_mask(path: Path | None):
    """Ground truth as uint8 {0, 1}, 256x256. Pixels > 127 are defect (anomalib: > 0; the same
    on MVTec's 0/255 masks). Resized with nearest-neighbour, as torchvision does for a Mask."""
    import torch
    from PIL import Image
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    if path is None:
        return torch.zeros(IMAGE_SIZE, dtype=torch.uint8)
    with Image.open(path) as im:
        m = TF.to_image(im.convert("L"))[0]
    m = (m > 127).to(torch.uint8)
    if tuple(m.shape) != IMAGE_SIZE:
        m = TF.resize(tv_tensors.Mask(m[None]), list(IMAGE_SIZE))[0]
    return m.as_subclass(torch.Tensor)


# ---------------------------------------------------------------------------------------
# Backbone and model
# ---------------------------------------------------------------------------------------


def build_backbone_module(onnx_path: Path, threads: int):
    """The frozen backbone as the torch module CfaModel expects as `feature_extractor`.

    anomalib's feature extractor is a torchvision GraphModule returning a dict
    {layer1, layer2, layer3} (resnet18 return nodes); this one runs the ONNX model on
    onnxruntime's CPU provider and returns f1/f2/f3 under those names, so that anomalib's
    initialize_centroid / get_scale / forward run unchanged.
    """
    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != ["image"] or outputs[:3] != ["f1", "f2", "f3"]:
        raise BenchError(f"'{onnx_path}' has inputs {inputs} and outputs {outputs}; expected image -> f1, f2, f3")

    class OnnxBackbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # anomalib reads the device as next(feature_extractor.parameters()).device.
            self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            parts = [session.run(["f1", "f2", "f3"], {"image": arr[i : i + BACKBONE_CHUNK]})
                     for i in range(0, arr.shape[0], BACKBONE_CHUNK)]
            return {name: torch.from_numpy(np.concatenate([p[k] for p in parts]))
                    for k, name in enumerate(("layer1", "layer2", "layer3"))}

    return OnnxBackbone()


def build_model(backbone_module, in_dim: int, seed: int):
    """anomalib's CfaModel around the ONNX backbone, with a Descriptor for `in_dim` channels."""
    import torch
    from anomalib.models.image.cfa.anomaly_map import AnomalyMapGenerator
    from anomalib.models.image.cfa.torch_model import CfaModel, CoordConv2d, Descriptor

    # Descriptor knows only vgg19_bn/resnet18/wide_resnet50_2/efficientnet_b5 channel counts.
    # Build it as "resnet18" (the plain branch: avg_pool2d(feature, 3, 1, 1) without the
    # efficientnet_b5-only division by the channel count and without its doubled output width;
    # anomalib never reaches that branch anyway, get_return_nodes raises for efficientnet_b5),
    # then swap its only layer for one of the right width. forward() is anomalib's, unchanged.
    # Re-seeding before the swap gives exactly the PyTorch default init that
    # `CoordConv2d(in_dim, in_dim // gamma_d, 1)` gets when it is the first thing built after
    # torch.manual_seed(seed). (In anomalib the draw also depends on the RNG consumed by building
    # the torchvision backbone first, so no seed could match it bit for bit anyway.)
    torch.manual_seed(seed)
    descriptor = Descriptor(gamma_d=GAMMA_D, backbone="resnet18")
    torch.manual_seed(seed)
    descriptor.layer = CoordConv2d(in_channels=in_dim, out_channels=in_dim // GAMMA_D, kernel_size=1)
    # Note: CoordConv2d subclasses nn.Conv2d, so it also owns an unused weight/bias of its own
    # (only .conv2d, with in_dim + 2 inputs, is applied). Their grads stay None, so AdamW
    # skips them - as in anomalib.

    class OnnxCfaModel(CfaModel):
        """CfaModel.__init__ builds a torchvision backbone (downloading weights); this sets the
        same attributes with the ONNX backbone instead. All methods are anomalib's."""

        def __init__(self) -> None:
            super(CfaModel, self).__init__()  # DynamicBufferMixin / nn.Module, skipping CfaModel's
            self.gamma_c = GAMMA_C
            self.gamma_d = GAMMA_D
            self.num_nearest_neighbors = NUM_NEAREST_NEIGHBORS
            self.num_hard_negative_features = NUM_HARD_NEGATIVE_FEATURES
            self.register_buffer("memory_bank", torch.tensor(0.0))
            # Only used by get_scale() -> get_return_nodes(): names the three outputs layer1..3.
            self.backbone = "resnet18"
            self.feature_extractor = backbone_module
            self.descriptor = descriptor
            # As in anomalib: a plain tensor, not an nn.Parameter - the radius is never trained.
            self.radius = torch.ones(1, requires_grad=True) * RADIUS
            self.anomaly_map_generator = AnomalyMapGenerator(num_nearest_neighbors=NUM_NEAREST_NEIGHBORS)

    return OnnxCfaModel()


def extract_features(backbone_module, images, normalize):
    """Backbone features of every image, computed once (the backbone is frozen and anomalib
    runs it under no_grad, so every epoch would see these same values)."""
    import torch

    feats = {"layer1": [], "layer2": [], "layer3": []}
    with torch.no_grad():
        for i in range(0, images.shape[0], BACKBONE_CHUNK):
            out = backbone_module(normalize(images[i : i + BACKBONE_CHUNK]))
            for k in feats:
                feats[k].append(out[k])
    return [torch.cat(feats[k]) for k in ("layer1", "layer2", "layer3")]


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def aupro_anomalib(maps, masks) -> float:
    """anomalib.metrics.AUPRO's computation (its torchmetrics core _AUPRO, without the
    AnomalibMetric batch-field wrapper): OpenCV 8-connected regions, FPR over all
    non-defect pixels, curve cut at FPR 0.3 and the area divided by 0.3."""
    from anomalib.metrics.aupro import _AUPRO

    metric = _AUPRO(fpr_limit=AUPRO_FPR_LIMIT)
    metric.update(maps, masks)
    return float(metric.compute())


def aupro_mvtec(maps, masks) -> float:
    """Fallback when anomalib's AUPRO fails: the MVTec-AD evaluation's AUPRO. Per-region overlap
    (8-connected components) averaged over regions, against the FPR over non-defect pixels,
    at every distinct score threshold; trapezoid area up to FPR 0.3, divided by 0.3."""
    import numpy as np
    from scipy import ndimage

    maps = maps.numpy().astype(np.float64)
    masks = masks.numpy().astype(bool)
    labels = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    for i in range(masks.shape[0]):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3), dtype=int))
        labels[i][lab > 0] = lab[lab > 0] + n_regions
        n_regions += n
    if n_regions == 0:
        return float("nan")
    labels = labels.ravel()
    scores = maps.ravel()
    sizes = np.bincount(labels, minlength=n_regions + 1).astype(np.float64)
    fp = (labels == 0).astype(np.float64)
    pro = np.where(labels > 0, 1.0 / sizes[labels], 0.0)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    fpr = np.cumsum(fp[order]) / fp.sum()
    pro = np.cumsum(pro[order]) / n_regions
    last = np.r_[s[:-1] != s[1:], True]  # one point per distinct threshold
    fpr = np.r_[0.0, fpr[last]]
    pro = np.r_[0.0, pro[last]]
    i = np.searchsorted(fpr, AUPRO_FPR_LIMIT, side="right")
    x, y = fpr[:i], pro[:i]
    if i < fpr.size and x[-1] < AUPRO_FPR_LIMIT:
        t = (AUPRO_FPR_LIMIT - x[-1]) / (fpr[i] - x[-1])
        x = np.r_[x, AUPRO_FPR_LIMIT]
        y = np.r_[y, y[-1] + t * (pro[i] - y[-1])]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz
    return float(trapezoid(y, x) / AUPRO_FPR_LIMIT)


class Aupro:
    """Uses anomalib's AUPRO; falls back to aupro_mvtec (once, with a warning) if it fails."""

    def __init__(self) -> None:
        self.impl = "anomalib.metrics.AUPRO (_AUPRO core, fpr_limit=0.3)"
        self.use_anomalib = True

    def __call__(self, maps, masks) -> float:
        if self.use_anomalib:
            try:
                return aupro_anomalib(maps, masks)
            except Exception as exc:  # noqa: BLE001 - any failure means: use the fallback
                log(f"warning: anomalib AUPRO failed ({type(exc).__name__}: {exc}); "
                    "using the built-in MVTec AUPRO instead")
                self.use_anomalib = False
                self.impl = "built-in MVTec AUPRO (scipy 8-connected regions, fpr_limit=0.3)"
        return aupro_mvtec(maps, masks)


def auroc(labels, scores) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


# ---------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------


def run_category(root: Path, args, backbone_module, aupro: Aupro) -> dict:
    import numpy as np
    import torch
    from anomalib.models.image.cfa.loss import CfaLoss
    from torch.utils.data import DataLoader
    from torchvision.transforms.v2 import Normalize

    name = root.resolve().name
    files = scan_category(root)
    log(f"[{name}] {len(files['train'])} train images, {len(files['test'])} test images")

    t0 = time.perf_counter()
    train_images = torch.stack([load_image(p) for p in files["train"]])
    test_images = torch.stack([load_image(p) for p, _, _ in files["test"]])
    test_masks = torch.stack([load_mask(m) for _, _, m in files["test"]])
    test_types = [t for _, t, _ in files["test"]]
    test_labels = np.array([t != "good" for t in test_types], dtype=np.int64)
    load_s = time.perf_counter() - t0

    # anomalib's PreProcessor transform, applied at batch time in on_*_batch_start.
    normalize = Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    identity = lambda x: x  # noqa: E731

    t_train = time.perf_counter()
    train_feats = extract_features(backbone_module, train_images, normalize)
    in_dim = sum(f.shape[1] for f in train_feats)
    model = build_model(backbone_module, in_dim, args.seed)

    # One generator for every shuffle in this category: the memory-bank pass, then one
    # permutation per epoch. (anomalib's DataLoader(shuffle=True) draws from torch's global RNG;
    # the orders cannot match Lightning's bit for bit, only the procedure.)
    gen = torch.Generator().manual_seed(args.seed)

    # --- Memory bank: anomalib's own CfaModel.initialize_centroid. ----------------------
    # Quirk reproduced: Cfa.on_train_start passes trainer.datamodule.train_dataloader(), whose
    # images are resized but NOT normalised - anomalib 2.x normalises in the PreProcessor's
    # on_train_batch_start hook, which this loop bypasses. So the bank is
    # descriptor(backbone(images in [0, 1])), while training and inference feed ImageNet-
    # normalised images. --normalised-bank builds it from normalised images instead.
    # Quirk reproduced: the bank is a running mean over *batches* of that shuffled loader,
    # bank = (bank * i + batch.mean(0)) / (i + 1), so a partial last batch weighs as much as a
    # full one. gamma_c = 1: no k-means; bank is [C, H*W] = one centroid per feature position.
    bank_transform = normalize if args.normalised_bank else identity
    bank_loader = DataLoader(
        list(range(train_images.shape[0])), batch_size=args.batch, shuffle=True, generator=gen,
        collate_fn=lambda idx: types.SimpleNamespace(image=bank_transform(train_images[idx])),
    )
    model.initialize_centroid(data_loader=bank_loader)
    scale = tuple(train_feats[0].shape[-2:])  # the largest (stride-4) feature map: 64x64

    loss_fn = CfaLoss(
        num_nearest_neighbors=NUM_NEAREST_NEIGHBORS,
        num_hard_negative_features=NUM_HARD_NEGATIVE_FEATURES,
        radius=RADIUS,  # a constant tensor inside CfaLoss, as in anomalib: never trained
    )
    # anomalib optimises self.model.parameters(); only the descriptor's ever get gradients
    # (the backbone runs under no_grad, the memory bank is a buffer, the radius a plain tensor),
    # so this is the same optimisation.
    optimizer = torch.optim.AdamW(model.descriptor.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, amsgrad=AMSGRAD)
    train_s = time.perf_counter() - t_train

    def distances(feats):
        # CfaModel.forward after its no_grad feature extraction, with cached features.
        target = model.descriptor(feats)
        return target, model.compute_distance(target)

    def nearest(phi, k):
        # The k smallest of compute_distance's rows and their indices, one image at a time
        # (cache-sized blocks: 2-3x faster than one [B, h*w, N] tensor on a 2-core CPU).
        # Same formula as CfaModel.compute_distance: |phi|^2 + |c|^2 - 2 phi.c.
        bank = model.memory_bank
        c2 = bank.pow(2).sum(dim=0, keepdim=True)
        vals, idxs = [], []
        for b in range(phi.shape[0]):
            d = torch.addmm(c2, phi[b], bank, alpha=-2) + phi[b].pow(2).sum(dim=1, keepdim=True)
            v, i = d.topk(k, largest=False)
            vals.append(v)
            idxs.append(i)
        return torch.stack(vals), torch.stack(idxs)

    def train_distances(feats):
        # The loss reads only the K+J smallest distances of each patch (CfaLoss's topk), so
        # the gradient flows only through those entries. Backpropagating through the dense
        # [B, h*w, N] distance matrix (anomalib's code path) costs a second huge matmul and a
        # 2 GiB zero-filled gradient for nothing: here the neighbours are found without grad
        # and their distances recomputed with grad, which gives the same loss and the same
        # gradient (up to float rounding) at a fraction of the time. --dense-grad restores
        # anomalib's literal path.
        target, distance = distances(feats) if args.dense_grad else (model.descriptor(feats), None)
        if args.dense_grad:
            return distance
        phi = target.flatten(2).transpose(1, 2)  # "b c h w -> b (h w) c", as compute_distance
        with torch.no_grad():
            _, idx = nearest(phi.detach(), NUM_NEAREST_NEIGHBORS + NUM_HARD_NEGATIVE_FEATURES)
        centres = model.memory_bank.t()[idx]  # [B, h*w, K+J, C]
        return ((phi * phi).sum(-1, keepdim=True) + (centres * centres).sum(-1)
                - 2 * (phi.unsqueeze(2) * centres).sum(-1))

    def evaluate() -> tuple[dict, dict, "torch.Tensor"]:
        model.eval()  # Lightning's validation loop: eval mode, no grad
        maps = []
        with torch.no_grad():
            for i in range(0, test_images.shape[0], EVAL_BATCH):
                feats = [f[i : i + EVAL_BATCH] for f in test_feats]
                if args.dense_grad:
                    target, distance = distances(feats)
                else:
                    # The map reads only each patch's K smallest distances (its own topk), so
                    # passing exactly those gives the same map without the [B, h*w, N] tensor.
                    target = model.descriptor(feats)
                    distance, _ = nearest(target.flatten(2).transpose(1, 2), NUM_NEAREST_NEIGHBORS)
                # CfaModel.forward's inference branch.
                anomaly_map = model.anomaly_map_generator(
                    distance=distance, scale=target.shape[-2:], image_size=IMAGE_SIZE,
                ).squeeze(dim=1)
                maps.append(anomaly_map)
        model.train()
        maps = torch.cat(maps)
        scores = torch.amax(maps, dim=(-2, -1)).numpy()  # pred_score as in CfaModel.forward
        metrics = {
            "image_auroc": auroc(test_labels, scores),
            "pixel_auroc": auroc(test_masks.numpy().ravel(), maps.numpy().ravel()),
            "aupro": aupro(maps, test_masks),
        }
        good = [i for i, t in enumerate(test_types) if t == "good"]
        per_defect = {}
        for d in sorted(set(test_types) - {"good"}):
            idx = good + [i for i, t in enumerate(test_types) if t == d]
            per_defect[d] = {"image_auroc": auroc(test_labels[idx], scores[idx]),
                             "images": len(idx) - len(good)}
        return metrics, per_defect, maps

    t_feat = time.perf_counter()
    test_feats = extract_features(backbone_module, test_images, normalize)
    test_feat_s = time.perf_counter() - t_feat

    print(f"\n{name}  ({len(files['train'])} train, {len(files['test'])} test, "
          f"bank from {'normalised' if args.normalised_bank else 'un-normalised'} images)")
    print(f"{'epoch':>5}  {'loss':>12}  {'image_auroc':>11}  {'pixel_auroc':>11}  {'aupro':>7}")
    curve = []
    per_defect = {}
    eval_s = 0.0
    n = train_images.shape[0]
    model.train()
    for epoch in range(1, args.epochs + 1):
        t_ep = time.perf_counter()
        losses = []
        # Lightning's automatic optimisation: zero_grad, training_step, backward, step.
        for idx in DataLoader(list(range(n)), batch_size=args.batch, shuffle=True, generator=gen):
            distance = train_distances([f[idx] for f in train_feats])
            loss = loss_fn(distance)
            optimizer.zero_grad()
            # Quirk reproduced: Cfa.backward calls loss.backward(retain_graph=True) (its TODO
            # asks why). The reason is CfaLoss.radius = torch.ones(1, requires_grad=True) * r,
            # made once at construction: a non-leaf tensor whose tiny graph every loss shares,
            # so a second plain backward() fails. The leaf's .grad just accumulates and is in no
            # optimizer, so the radius stays constant. retain_graph changes no values.
            loss.backward(retain_graph=True)
            optimizer.step()
            losses.append(float(loss.detach()))
        mean_loss = float(np.mean(losses))
        train_s += time.perf_counter() - t_ep
        log(f"[{name}] epoch {epoch}/{args.epochs}  loss {mean_loss:.6f}  ({time.perf_counter() - t_ep:.1f}s)")
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            t_ev = time.perf_counter()
            metrics, per_defect, maps = evaluate()
            eval_s += time.perf_counter() - t_ev
            curve.append({"epoch": epoch, **metrics, "loss": mean_loss})
            print(f"{epoch:>5}  {mean_loss:>12.6f}  {metrics['image_auroc']:>11.4f}  "
                  f"{metrics['pixel_auroc']:>11.4f}  {metrics['aupro']:>7.4f}", flush=True)

    # Self-check: anomalib's own CfaModel.forward on raw images (backbone run on the fly) must
    # give the maps computed above from cached features.
    model.eval()
    with torch.no_grad():
        k = min(2, test_images.shape[0])
        ref = model(normalize(test_images[:k]))
    model.train()
    forward_check = float((ref.anomaly_map - maps[:k]).abs().max())
    if not forward_check <= 1e-4 * max(1.0, float(maps[:k].abs().max())):
        raise RuntimeError(f"cached-feature maps differ from CfaModel.forward by {forward_check}")

    final = dict(curve[-1])
    return {
        "curve": curve,
        "final": final,
        "train_s": round(train_s, 3),
        "per_defect": per_defect,
        "timing_s": {"load_images": round(load_s, 3), "test_features": round(test_feat_s, 3),
                     "eval_total": round(eval_s, 3)},
        "images": {"train": len(files["train"]), "test": len(files["test"]),
                   "test_defect": int(test_labels.sum())},
        "feature_size": list(scale),
        "descriptor_channels": in_dim,
        "forward_check_max_abs_diff": forward_check,
    }


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(
        description="Reference benchmark: anomalib 2.7.0 CFA on MVTec-AD-layout categories "
                    "with the project's ONNX backbone.")
    p.add_argument("categories", nargs="+", type=Path, metavar="CATEGORY_DIR")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32, help="training batch size (anomalib default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--backbone", type=Path, default=root / ".local" / "models" / "backbone.onnx")
    p.add_argument("--threads", type=int, default=2, help="torch, onnxruntime and OpenCV threads")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    p.add_argument("--dense-grad", action="store_true",
                   help="backpropagate through the whole distance matrix as anomalib's code does "
                        "(same gradient, several times slower)")
    p.add_argument("--normalised-bank", action="store_true",
                   help="experiment: build the memory bank from ImageNet-normalised images "
                        "(anomalib 2.7 builds it from un-normalised ones)")
    args = p.parse_args(argv)
    for flag in ("epochs", "batch", "threads", "eval_every"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def repo_relative(path: Path) -> str:
    """`path` relative to the repository root when it lies inside it, else as given."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Thread limits must be in place before torch / OpenCV start their pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    try:
        if not args.backbone.is_file():
            raise BenchError(f"backbone '{args.backbone}' not found; run scripts/setup to create it")
        for c in args.categories:
            scan_category(c)  # fail on layout problems before any slow work
        try:
            import cv2
            import onnxruntime
            import sklearn
            import torch

            with warnings.catch_warnings():
                # anomalib.models imports deprecated timm / dinov2 modules on the way; not ours to fix.
                warnings.simplefilter("ignore", FutureWarning)
                import anomalib
                import anomalib.metrics.aupro
                import anomalib.models.image.cfa.torch_model  # noqa: F401
        except ImportError as exc:
            raise BenchError(f"{exc}; run this with .local/anomalib-venv/bin/python "
                             "(create it with bench/setup-anomalib)") from exc
    except BenchError as exc:
        print(f"anomalib_cfa: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    cv2.setNumThreads(args.threads)
    backbone_sha = hashlib.sha256(args.backbone.read_bytes()).hexdigest()
    backbone_module = build_backbone_module(args.backbone, args.threads)
    aupro = Aupro()

    results = {}
    for c in args.categories:
        name = c.resolve().name
        if name in results:
            print(f"anomalib_cfa: error: two categories named '{name}'", file=sys.stderr)
            return EXIT_USAGE
        results[name] = run_category(c, args, backbone_module, aupro)

    out = {
        "reference": "anomalib 2.7.0 CFA",
        "backbone": backbone_sha,
        "recipe": {
            "anomalib_version": anomalib.__version__,
            "torch_version": torch.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "sklearn_version": sklearn.__version__,
            # Relative to the repository when inside it: results are committed and must not
            # name one machine's paths.
            "backbone_path": repo_relative(args.backbone),
            "epochs": args.epochs,
            "batch": args.batch,
            "seed": args.seed,
            "threads": args.threads,
            "eval_every": args.eval_every,
            "image_size": list(IMAGE_SIZE),
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "gradient": "dense (anomalib literal)" if args.dense_grad else "sparse through the K+J selected distances (same gradient)",
            "memory_bank_images": "normalised" if args.normalised_bank else "unnormalised [0,1] (anomalib 2.7 quirk)",
            "memory_bank": "running mean over shuffled training batches, gamma_c=1 (no k-means)",
            "gamma_c": GAMMA_C,
            "gamma_d": GAMMA_D,
            "num_nearest_neighbors": NUM_NEAREST_NEIGHBORS,
            "num_hard_negative_features": NUM_HARD_NEGATIVE_FEATURES,
            "radius": RADIUS,
            "optimizer": {"name": "AdamW", "lr": LR, "weight_decay": WEIGHT_DECAY, "amsgrad": AMSGRAD},
            "anomaly_map": "AnomalyMapGenerator(k=3): sqrt, softmin-weighted nearest, bilinear to 256, gaussian sigma=4",
            "image_score": "amax of the anomaly map",
            "pixel_auroc": "sklearn roc_auc_score over all pixels of all test images",
            "aupro": aupro.impl,
            "mask_threshold": "> 127",
            "train_s": "backbone features of train images + memory bank + epochs, evaluation excluded",
        },
        "categories": results,
    }

    def clean(x):  # JSON has no NaN
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(clean(out), indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
