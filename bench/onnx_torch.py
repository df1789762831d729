"""Run an ONNX graph with PyTorch operators: the benchmarks' way of giving PyTorch exactly the
model ONNX Runtime runs (the shipped card's graph, BatchNorm already folded into the
convolutions, the ensemble heads included), with no hand-written port to keep in step.

Covers the operators alhvr-export writes (2D U-Net and 3D VNet graphs, fp32); anything else
raises with the operator's name. Weights become torch tensors once; shapes are evaluated as
the graph asks, like ONNX Runtime does.
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _axes(node, values, a):
    if len(node.input) > 1 and node.input[1]:
        return [int(v) for v in values[node.input[1]].tolist()]
    return a.get("axes")


def _pads(a, rank):
    pads = a.get("pads", [0] * (2 * rank))
    begin, end = pads[:rank], pads[rank:]
    if begin != end:
        raise NotImplementedError(f"asymmetric pads {pads}")
    return begin


def _conv(x, w, b, a, transpose=False):
    rank = w.dim() - 2
    stride = a.get("strides", [1] * rank)
    dilation = a.get("dilations", [1] * rank)
    group = a.get("group", 1)
    pad = _pads(a, rank)
    if transpose:
        fn = F.conv_transpose2d if rank == 2 else F.conv_transpose3d
        out_pad = a.get("output_padding", [0] * rank)
        return fn(x, w, b, stride, pad, out_pad, group, dilation)
    fn = F.conv2d if rank == 2 else F.conv3d
    return fn(x, w, b, stride, pad, dilation, group)


def _resize(x, sizes, a):
    mode = a.get("mode", b"nearest").decode()
    ctm = a.get("coordinate_transformation_mode", b"half_pixel").decode()
    size = [int(s) for s in sizes.tolist()[2:]]
    if mode == "linear":
        interp = "bilinear" if x.dim() == 4 else "trilinear"
        if ctm == "align_corners":
            return F.interpolate(x, size=size, mode=interp, align_corners=True)
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            return F.interpolate(x, size=size, mode=interp, align_corners=False)
    if mode == "nearest" and ctm == "asymmetric":
        return F.interpolate(x, size=size, mode="nearest")
    raise NotImplementedError(f"Resize mode={mode} coordinate_transformation_mode={ctm}")


def _reduce(fn, x, axes, keep):
    out = x
    for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
        out = fn(out, ax, keep)
    return out


def _run(node, values, a):
    i = [values[n] if n else None for n in node.input]
    op = node.op_type
    if op == "Conv":
        return _conv(i[0], i[1], i[2] if len(i) > 2 else None, a)
    if op == "ConvTranspose":
        return _conv(i[0], i[1], i[2] if len(i) > 2 else None, a, transpose=True)
    if op == "Relu":
        return F.relu(i[0])
    if op == "LeakyRelu":
        return F.leaky_relu(i[0], a.get("alpha", 0.01))
    if op == "MaxPool":
        k = a["kernel_shape"]
        fn = F.max_pool2d if len(k) == 2 else F.max_pool3d
        return fn(i[0], k, a.get("strides", k), _pads(a, len(k)))
    if op == "Concat":
        return torch.cat(i, a["axis"])
    if op == "Shape":
        shape = list(i[0].shape)[a.get("start", 0):a.get("end", None)]
        return torch.tensor(shape, dtype=torch.int64)
    if op == "Resize":
        return _resize(i[0], i[3], a)
    if op == "Cast":
        return i[0].to(_DTYPES[a["to"]])
    if op == "Mul":
        return i[0] * i[1]
    if op == "Add":
        return i[0] + i[1]
    if op == "Sub":
        return i[0] - i[1]
    if op == "Div":
        return i[0] / i[1]
    if op == "Greater":
        return i[0] > i[1]
    if op == "Max":
        out = i[0]
        for t in i[1:]:
            out = torch.maximum(out, t)
        return out
    if op == "Log":
        return torch.log(i[0])
    if op == "Softmax":
        return torch.softmax(i[0], a.get("axis", -1))
    if op == "ArgMax":
        return torch.argmax(i[0], a.get("axis", 0), keepdim=bool(a.get("keepdims", 1)))
    if op == "ReduceMax":
        return _reduce(lambda t, ax, k: t.amax(ax, keepdim=k), i[0], _axes(node, values, a), bool(a.get("keepdims", 1)))
    if op == "ReduceSum":
        return _reduce(lambda t, ax, k: t.sum(ax, keepdim=k), i[0], _axes(node, values, a), bool(a.get("keepdims", 1)))
    if op == "ReduceMean":
        return _reduce(lambda t, ax, k: t.mean(ax, keepdim=k), i[0], _axes(node, values, a), bool(a.get("keepdims", 1)))
    if op == "Reshape":
        return i[0].reshape([int(v) for v in i[1].tolist()])
    if op == "Transpose":
        return i[0].permute(a["perm"])
    if op == "MatMul":
        return torch.matmul(i[0], i[1])
    if op == "Unsqueeze":
        out = i[0]
        for ax in sorted(_axes(node, values, a)):
            out = out.unsqueeze(ax)
        return out
    if op == "Squeeze":
        return i[0].squeeze(_axes(node, values, a)[0])
    if op == "Identity":
        return i[0]
    raise NotImplementedError(f"ONNX operator {op} (node {node.name})")


class OnnxTorch:
    """`model(x) -> {output name: tensor}` evaluating the graph node by node under no_grad."""

    def __init__(self, path):
        self.graph = onnx.load(path).graph
        self.constants = {t.name: torch.from_numpy(np.array(numpy_helper.to_array(t))) for t in self.graph.initializer}
        self.steps = [(n, _attrs(n)) for n in self.graph.node]
        self.input = self.graph.input[0].name
        self.outputs = [o.name for o in self.graph.output]
        # Free each intermediate after its last reader, as ONNX Runtime's planner does, so
        # PyTorch's allocator reuses memory rather than touching fresh pages for every layer.
        last = {}
        for k, node in enumerate(self.graph.node):
            for name in node.input:
                last[name] = k
        keep = set(self.outputs) | set(self.constants)
        self.release = [[n for n in node.input if n and last.get(n) == k and n not in keep] for k, node in enumerate(self.graph.node)]

    def __call__(self, x):
        values = dict(self.constants)
        values[self.input] = x
        for (node, a), release in zip(self.steps, self.release):
            values[node.output[0]] = _run(node, values, a)
            for name in release:
                del values[name]
        return {name: values[name] for name in self.outputs}
