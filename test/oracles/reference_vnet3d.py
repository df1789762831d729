"""PyTorch port of the released 3D ALHVR student (VNet of vnet_fea_aux: plain conv blocks with
BatchNorm3d + ReLU, 2^3 stride-2 down convs, ConvTranspose3d up convs, additive skips), written
from shared/docs/alhvr-method-3d.md section 2 for the tests only (in float32, or float64 on request). Reads a JSON request on stdin
(weights by the tfjs parameter names: conv kernels [k, k, k, cin, cout], transposed [2, 2, 2,
cout, cin]; tensors NDHWC as little-endian float32 base64) and writes JSON on stdout: the clean
branch's logits and prototype features (training- or eval-mode BatchNorm, no dropout) and, for
a training-mode request, the gradients of sum(logits * probe) by parameter name and for x.
"""
import base64
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F


DTYPE = torch.float32


def decode(t):
    a = np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"])
    return torch.tensor(a.copy()).to(DTYPE)


def encode(x):
    a = x.detach().float().contiguous().numpy()
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


DEPTHS = [1, 2, 3, 3, 3]


def main():
    global DTYPE
    req = json.load(sys.stdin)
    # float64: a reference free of float32 summation order, to tell rounding from a wrong formula.
    DTYPE = torch.float64 if req.get("float64") else torch.float32
    training = req["training"]
    params = {}
    for name, t in req["params"].items():
        v = decode(t)
        if name.endswith(".kernel"):
            # tfjs [k, k, k, a, b] -> torch [b, a, k, k, k]: Conv3d [cout, cin, ...] for plain
            # kernels, ConvTranspose3d [cin, cout, ...] for the transposed ones (stored cout, cin).
            v = v.permute(4, 3, 0, 1, 2).contiguous()
        params[name] = v.requires_grad_(not name.endswith(("runningMean", "runningVar")))
    x = decode(req["x"]).permute(0, 4, 1, 2, 3).contiguous().requires_grad_(True)

    def bn_relu(h, prefix):
        h = F.batch_norm(h, params[prefix + ".runningMean"].clone(), params[prefix + ".runningVar"].clone(),
                         params[prefix + ".gamma"], params[prefix + ".beta"], training, 0.1, 1e-5)
        return F.relu(h)

    def conv(h, name, pad=1):
        return F.conv3d(h, params[name + ".kernel"], params[name + ".bias"], padding=pad)

    def block(h, prefix, depth):
        for i in range(1, depth + 1):
            h = bn_relu(conv(h, f"{prefix}.conv{i}"), f"{prefix}.bn{i}")
        return h

    feats = []
    h = x
    for level in range(5):
        if level > 0:
            name = f"enc.{level}.down"
            h = bn_relu(F.conv3d(h, params[name + ".kernel"], params[name + ".bias"], stride=2), f"enc.{level}.downBn")
        h = block(h, f"enc.{level}", DEPTHS[level])
        feats.append(h)
    fea = None
    for n in range(4):
        level = 3 - n
        name = f"dec.{n}.up"
        up = F.conv_transpose3d(h, params[name + ".kernel"], params[name + ".bias"], stride=2)
        h = bn_relu(up, f"dec.{n}.upBn") + feats[level]
        h = block(h, f"dec.{n}", DEPTHS[level])
        if n == 0:
            fea = h
    logits = conv(h, "dec.out", 0)
    out = {"logits": encode(logits.permute(0, 2, 3, 4, 1)), "fea": encode(fea.permute(0, 2, 3, 4, 1))}
    if training:
        probe = decode(req["probe"]).permute(0, 4, 1, 2, 3)
        (logits * probe).sum().backward()
        grads = {}
        for name, v in params.items():
            if v.grad is None:
                continue
            g = v.grad
            if name.endswith(".kernel"):
                g = g.permute(2, 3, 4, 1, 0)
            grads[name] = encode(g)
        out["grads"] = grads
        out["dx"] = encode(x.grad.permute(0, 2, 3, 4, 1))
    json.dump(out, sys.stdout)


main()
