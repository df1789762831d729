#!/usr/bin/python3
"""Write a toy two-student segmentation model with the ALHVR ONNX output contract.

Each "student" is one 3x3 convolution (1 -> C channels, zero padding, fixed weights) followed
by a softmax over classes. The graph then builds exactly the outputs the inference package
expects: probabilities (mean softmax), label (argmax, uint8), confidence (max of the mean),
student_confidence (each student's max), region (1 both > gamma, 2 exactly one, 3 neither).

The weights are also what `reference_forward` below uses, so tests can compare the ONNX
Runtime pipeline against an independent numpy computation.

usage: make-test-model.py OUT.onnx [--card-json CARD_OVERRIDES_JSON] [--reference SLICES.f32 N H W OUT_PREFIX]

--reference reads N preprocessed slices (raw little-endian float32, N x H x W) and writes
OUT_PREFIX.label.u8 (argmax), OUT_PREFIX.margin.f32 (top-1 minus top-2 mean probability) and
OUT_PREFIX.student.f32 (N x 2 x H x W, each student's max probability).
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 3
GAMMA = 0.75


def student_weights():
    """Class 0 likes dark, class 2 likes bright; B sees a sharper kernel than A so they disagree."""
    box = np.full((3, 3), 1.0 / 9.0, dtype=np.float32)
    centre = np.zeros((3, 3), dtype=np.float32)
    centre[1, 1] = 0.6
    centre += 0.05
    wa = np.stack([-8.0 * box, 0.0 * box, 8.0 * box])[:, None].astype(np.float32)
    ba = np.array([3.0, 0.0, -5.0], dtype=np.float32)
    wb = np.stack([-9.0 * centre, 0.5 * centre, 9.0 * centre])[:, None].astype(np.float32)
    bb = np.array([3.5, 0.0, -5.5], dtype=np.float32)
    return (wa, ba), (wb, bb)


def default_card(size):
    return {
        "schema": "alhvr-model-card/1",
        "name": "toy-two-student",
        "description": "Test fixture: two 3x3 convolutions with fixed weights, not a trained model.",
        "classes": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "mid", "color": [0, 200, 0]},
            {"value": 2, "name": "bright", "color": [220, 40, 40]},
        ],
        "input": {"size": size, "channels": 1, "sliceAxis": "largest-spacing", "name": "image", "layout": "NCHW"},
        "normalisation": {"kind": "minmax-volume"},
        "resize": {
            "image": {"interpolation": "nearest", "alignment": "corners"},
            "labelBack": {"interpolation": "nearest", "alignment": "corners"},
            "mapBack": {"interpolation": "linear", "alignment": "corners"},
        },
        "regions": {"gamma": GAMMA, "beta": 0.8, "gammaSource": "default"},
        "students": "both",
        "outputs": {"probabilities": "probabilities", "label": "label", "confidence": "confidence", "region": "region"},
        "training": {"method": "unknown", "iterations": 0},
        "toolkit": {"version": "0.1.0"},
        "createdAt": "2025-01-01T00:00:00Z",
    }


def build(card):
    (wa, ba), (wb, bb) = student_weights()
    gamma = float(card["regions"]["gamma"])
    inits = [
        numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(ba, "ba"),
        numpy_helper.from_array(wb, "wb"), numpy_helper.from_array(bb, "bb"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array(gamma, dtype=np.float32), "gamma"),
        numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three"),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["image", "wa", "ba"], ["logits_a"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Conv", ["image", "wb", "bb"], ["logits_b"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Softmax", ["logits_a"], ["p_a"], axis=1),
        n("Softmax", ["logits_b"], ["p_b"], axis=1),
        n("Add", ["p_a", "p_b"], ["p_sum"]),
        n("Mul", ["p_sum", "half"], ["probabilities"]),
        n("ArgMax", ["probabilities"], ["label64"], axis=1, keepdims=0),
        n("Cast", ["label64"], ["label"], to=TensorProto.UINT8),
        n("ReduceMax", ["probabilities"], ["confidence"], axes=[1], keepdims=0),
        n("ReduceMax", ["p_a"], ["c_a"], axes=[1], keepdims=1),
        n("ReduceMax", ["p_b"], ["c_b"], axes=[1], keepdims=1),
        n("Concat", ["c_a", "c_b"], ["student_confidence"], axis=1),
        n("Greater", ["student_confidence", "gamma"], ["above"]),
        n("Cast", ["above"], ["above_f"], to=TensorProto.FLOAT),
        # Count students above gamma per pixel: slice the two channels apart and add them.
        n("Slice", ["above_f", "s0", "s1", "ax1"], ["above_a4"]),
        n("Slice", ["above_f", "s1", "s2", "ax1"], ["above_b4"]),
        n("Squeeze", ["above_a4", "ax1"], ["above_a"]),
        n("Squeeze", ["above_b4", "ax1"], ["above_b"]),
        n("Add", ["above_a", "above_b"], ["n_above"]),
        n("Sub", ["three", "n_above"], ["region_f"]),
        n("Cast", ["region_f"], ["region"], to=TensorProto.UINT8),
    ]
    inits += [numpy_helper.from_array(np.array([v], dtype=np.int64), name)
              for name, v in [("s0", 0), ("s1", 1), ("s2", 2), ("ax1", 1)]]

    dyn = ["N", "H", "W"]
    f32, u8 = TensorProto.FLOAT, TensorProto.UINT8
    graph = helper.make_graph(
        nodes, "toy_two_student",
        [helper.make_tensor_value_info("image", f32, ["N", 1, "H", "W"])],
        [
            helper.make_tensor_value_info("probabilities", f32, ["N", CLASSES, "H", "W"]),
            helper.make_tensor_value_info("label", u8, dyn),
            helper.make_tensor_value_info("confidence", f32, dyn),
            helper.make_tensor_value_info("region", u8, dyn),
            helper.make_tensor_value_info("student_confidence", f32, ["N", 2, "H", "W"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="alhvr-test")
    model.ir_version = 8
    helper.set_model_props(model, {"alhvr.model_card": json.dumps(card)})
    onnx.checker.check_model(model, full_check=True)
    return model


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def conv3x3(x, w, b):
    """x: N x H x W; w: C x 1 x 3 x 3 (cross-correlation, as ONNX Conv); zero padding 1."""
    n, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for c in range(w.shape[0]):
        for dy in range(3):
            for dx in range(3):
                out[:, c] += w[c, 0, dy, dx] * xp[:, dy:dy + h, dx:dx + wd]
        out[:, c] += b[c]
    return out


def reference_forward(slices):
    """Label, the top-1 minus top-2 margin of the mean probability, and each student's max prob."""
    (wa, ba), (wb, bb) = student_weights()
    pa = softmax(conv3x3(slices, wa, ba))
    pb = softmax(conv3x3(slices, wb, bb))
    mean = (pa + pb) / 2
    top2 = np.sort(mean, axis=1)[:, -2:]
    return mean.argmax(axis=1).astype(np.uint8), top2[:, 1] - top2[:, 0], np.stack([pa.max(1), pb.max(1)], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("W", "H"))
    ap.add_argument("--card-json", default=None, help="JSON object merged over the default card")
    ap.add_argument("--reference", nargs=5, metavar=("SLICES", "N", "H", "W", "OUT_PREFIX"),
                    help="also run the numpy reference on preprocessed slices")
    args = ap.parse_args()
    card = default_card(list(args.size))
    if args.card_json:
        card.update(json.loads(args.card_json))
    onnx.save(build(card), args.out)
    if args.reference:
        path, n, h, w, prefix = args.reference
        slices = np.fromfile(path, dtype="<f4").reshape(int(n), int(h), int(w))
        label, margin, student = reference_forward(slices)
        label.astype(np.uint8).tofile(prefix + ".label.u8")
        margin.astype("<f4").tofile(prefix + ".margin.f32")
        student.astype("<f4").tofile(prefix + ".student.f32")


if __name__ == "__main__":
    main()
