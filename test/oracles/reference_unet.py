"""PyTorch port of the released ALHVR student network (networks/unet.py, UNet_fea_aux with
up_type 1), used only by the tests to check the tfjs network. Reads a JSON request on stdin
(weights by the tfjs parameter names, kernels in [kh, kw, cin, cout]; tensors NHWC as
little-endian float32 base64) and writes JSON on stdout.
"""
import base64
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def decode(t):
    a = np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"])
    return torch.tensor(a.copy())


def encode(x):
    a = x.detach().float().contiguous().numpy()
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


class Block(nn.Module):
    def __init__(self, cin, cout, p):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(p)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.drop(F.leaky_relu(self.bn1(self.conv1(x)), 0.01))
        return F.leaky_relu(self.bn2(self.conv2(x)), 0.01)


class Up(nn.Module):
    def __init__(self, cin, cskip):
        super().__init__()
        self.reduce = nn.Conv2d(cin, cskip, 1)
        self.block = Block(2 * cskip, cskip, 0.0)

    def forward(self, x, skip):
        r = self.reduce(x)
        up = F.interpolate(r, scale_factor=2, mode="bilinear", align_corners=True)
        return self.block(torch.cat([skip, up], dim=1)), r


class Net(nn.Module):
    def __init__(self, cin, n_classes, widths, dropout):
        super().__init__()
        self.enc = nn.ModuleList(
            [Block(cin if l == 0 else widths[l - 1], widths[l], dropout[l]) for l in range(5)])
        self.ups = nn.ModuleList([Up(widths[5 - n], widths[4 - n]) for n in range(1, 5)])
        self.out = nn.Conv2d(widths[0], n_classes, 3, padding=1)

    def encode(self, x):
        feats = []
        h = x
        for l, blk in enumerate(self.enc):
            if l > 0:
                h = F.max_pool2d(h, 2)
            h = blk(h)
            feats.append(h)
        return feats

    def decode(self, feats):
        h = feats[4]
        fea = None
        for n, up in enumerate(self.ups, start=1):
            h, r = up(h, feats[4 - n])
            if n == 2:
                fea = r
        return self.out(h), fea

    def forward(self, x):
        return self.decode(self.encode(x))


def torch_name(name):
    """tfjs parameter name -> (module path, torch attribute)."""
    parts = name.split(".")
    attr = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
            "runningMean": "running_mean", "runningVar": "running_var"}[parts[-1]]
    if parts[0] == "enc":
        return f"enc.{parts[1]}.{parts[2]}", attr
    if parts[1] == "out":
        return "out", attr
    n = int(parts[1][2:]) - 1
    if parts[2] == "reduce":
        return f"ups.{n}.reduce", attr
    return f"ups.{n}.block.{parts[2]}", attr


def build(req):
    net = Net(req["inChannels"], req["numClasses"], req["widths"], req["dropout"]).double()
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, t in req["weights"].items():
            mod, attr = torch_name(name)
            v = decode(t).double()
            if v.dim() == 4:
                v = v.permute(3, 2, 0, 1)
            getattr(modules[mod], attr).copy_(v)
    return net


def main():
    req = json.load(sys.stdin)
    net = build(req)
    x = decode(req["x"]).double().permute(0, 3, 1, 2)
    if req["training"]:
        net.train()  # the test uses dropout 0, so this is deterministic
    else:
        net.eval()
    logits, fea = net(x)
    out = {"logits": encode(logits.permute(0, 2, 3, 1)), "fea": encode(fea.permute(0, 2, 3, 1)),
           "runningStats": {}}
    for l in range(5):
        for bn in ("bn1", "bn2"):
            m = getattr(net.enc[l], bn)
            out["runningStats"][f"enc.{l}.{bn}.runningMean"] = encode(m.running_mean)
            out["runningStats"][f"enc.{l}.{bn}.runningVar"] = encode(m.running_var)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
