"""Independent PyTorch reference for the ALHVR loss terms, used only by the tests.

It follows the released ALHVR training script (train_ALHVR_acdc.py, utils/losses.py,
utils/Generate_Prototype.py) in PyTorch's own NCHW layout, including its broadcasting. Reads a
JSON request on stdin, writes JSON on stdout. Tensors travel as {"shape": [...], "b64": <little-
endian float32 bytes>} in NHWC (the tfjs layout) and are permuted here.
"""
import base64
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def decode(t, dtype=torch.float64):
    a = np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"])
    return torch.tensor(a.astype(np.float64), dtype=dtype)


def encode(x):
    a = x.detach().to(torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


def nchw(x):
    return x.permute(0, 3, 1, 2).contiguous()


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def dice_released(score, target):
    # utils/losses.py DiceLoss._dice_loss: no factor 2, smooth 1e-10 in the denominator only.
    inter = torch.sum(score * target)
    union = torch.sum(score * score) + torch.sum(target * target) + 1e-10
    return 1 - inter / union


def dice_standard(score, target):
    # SSL4MIS DiceLoss._dice_loss
    smooth = 1e-5
    inter = torch.sum(score * target)
    union = torch.sum(score * score) + torch.sum(target * target) + smooth
    return 1 - (2 * inter + smooth) / union


def dice_loss(probs, labels, n_classes, variant):
    f = dice_released if variant == "released" else dice_standard
    onehot = torch.cat([(labels.unsqueeze(1) == k).double() for k in range(n_classes)], dim=1)
    return sum(f(probs[:, k], onehot[:, k]) for k in range(n_classes)) / n_classes


def threshold(con, proportion):
    k = int(con.numel() * proportion)
    low, _ = torch.topk(con.reshape(-1), k, largest=False)
    return torch.mean(low)


def sharpen(p, temperature):
    e = 1 / temperature
    return p ** e / (p ** e + (1 - p) ** e)


def prototypes(fts, onehot):
    b, k = onehot.shape[0], onehot.shape[1]
    per_class = []
    for c in range(k):
        acc = 0
        for i in range(b):
            m = onehot[i, c].unsqueeze(0).unsqueeze(0)  # 1 x 1 x H x W
            acc = acc + torch.sum(fts[i:i + 1] * m, dim=(2, 3)) / (m.sum(dim=(2, 3)) + 1e-5)
        per_class.append(acc / b)  # 1 x D
    return per_class


def alhvr_terms(t, labels, req):
    """The ALHVR objective on NCHW network outputs t (logitsA/B, logitsAuxA/B, feaA/B, feaAuxA/B).

    Returns (scalars, masks); scalars["loss"] is the total. Works in the dtype of the inputs.
    """
    bl, it = req["labeled"], req["iteration"]
    n_classes = t["logitsA"].shape[1]
    dtype = t["logitsA"].dtype
    soft = {k: F.softmax(t[k], dim=1) for k in ("logitsA", "logitsB", "logitsAuxA", "logitsAuxB")}
    s1, s2, sa1, sa2 = soft["logitsA"], soft["logitsB"], soft["logitsAuxA"], soft["logitsAuxB"]

    ce1 = F.cross_entropy(t["logitsA"][:bl], labels)
    ce2 = F.cross_entropy(t["logitsB"][:bl], labels)
    d1 = dice_loss(s1[:bl], labels, n_classes, req["diceLoss"])
    d2 = dice_loss(s2[:bl], labels, n_classes, req["diceLoss"])
    sup1, sup2 = ce1 + d1, ce2 + d2

    current = min(it // 150, 200)
    w = 0.1 * float(np.exp(-5.0 * (1.0 - current / 200.0) ** 2))

    c_aux1, _ = sa1[bl:].max(dim=1)
    c_aux2, _ = sa2[bl:].max(dim=1)
    c1, idx1 = s1[bl:].max(dim=1)
    c2, idx2 = s2[bl:].max(dim=1)
    g = threshold((c_aux1 + c_aux2) * 0.5, req["proportion"])
    low = ((c_aux1 < g) & (c_aux2 < g)).to(dtype)
    m1 = ((c_aux1 <= g) & (c_aux2 > g)).to(dtype)
    m2 = ((c_aux2 <= g) & (c_aux1 > g)).to(dtype)
    high = ((c_aux1 > g) & (c_aux2 > g)).to(dtype)

    teacher = torch.where((c1 > c2).unsqueeze(1), s1[bl:], s2[bl:])
    if req["detachTeacher"]:
        teacher = teacher.detach()
    sharp = sharpen(teacher, req["temperature"])
    lm = low.unsqueeze(1)
    mse1 = torch.sum(lm * (sa1[bl:] - sharp) ** 2) / (torch.sum(lm) + 1e-16)
    mse2 = torch.sum(lm * (sa2[bl:] - sharp) ** 2) / (torch.sum(lm) + 1e-16)

    def ent(x):
        return torch.mean(-torch.sum(x * torch.log(x + 1e-6), dim=1, keepdim=True))

    focus1 = mse1 + ent(s1[bl:] * lm) + ent(sa1[bl:] * lm)
    focus2 = mse2 + ent(s2[bl:] * lm) + ent(sa2[bl:] * lm)

    size = idx1.shape[-2:]
    up = lambda f: F.interpolate(f[bl:], size=size, mode="bilinear", align_corners=False)
    fts1, fts2, fts_aux1, fts_aux2 = up(t["feaA"]), up(t["feaB"]), up(t["feaAuxA"]), up(t["feaAuxB"])
    oh1 = F.one_hot(idx1, n_classes).permute(0, 3, 1, 2).to(dtype)
    oh2 = F.one_hot(idx2, n_classes).permute(0, 3, 1, 2).to(dtype)
    proto1, proto2 = prototypes(fts1, oh1), prototypes(fts2, oh2)
    cos1 = torch.stack([F.cosine_similarity(fts_aux1, p[..., None, None], dim=1) * req["scaler"] for p in proto2], dim=1)
    cos2 = torch.stack([F.cosine_similarity(fts_aux2, p[..., None, None], dim=1) * req["scaler"] for p in proto1], dim=1)
    pce1 = F.cross_entropy(cos1, idx2, reduction="none")
    pce2 = F.cross_entropy(cos2, idx1, reduction="none")
    if req["protoCe"] == "released":
        # The released expression: [Bu,1,H,W] * [Bu,H,W] broadcasts to [Bu,Bu,H,W].
        pce1 = torch.sum(m1.unsqueeze(1) * pce1) / (torch.sum(m1.unsqueeze(1)) + 1e-16)
        pce2 = torch.sum(m2.unsqueeze(1) * pce2) / (torch.sum(m2.unsqueeze(1)) + 1e-16)
    else:
        pce1 = torch.sum(m1 * pce1) / (torch.sum(m1) + 1e-16)
        pce2 = torch.sum(m2 * pce2) / (torch.sum(m2) + 1e-16)
    pcos1 = ((1 - cos1) * m1.unsqueeze(1)).mean()
    pcos2 = ((1 - cos2) * m2.unsqueeze(1)).mean()
    pro1, pro2 = pce1 + pcos1, pce2 + pcos2

    loss1 = sup1 + w * (focus1 + pro1)
    loss2 = sup2 + w * (focus2 + pro2)
    loss = loss1 + loss2
    scalars = dict(loss=loss, lossA=loss1, lossB=loss2, supA=sup1, supB=sup2, ceA=ce1, ceB=ce2, diceA=d1, diceB=d2,
                   focusA=focus1, focusB=focus2, mseA=mse1, mseB=mse2, protoA=pro1, protoB=pro2,
                   protoCeA=pce1, protoCeB=pce2, protoCosA=pcos1, protoCosB=pcos2, gamma=g,
                   omega1Fraction=high.mean(), omega2Fraction=(m1 + m2).mean(), omega3Fraction=low.mean())
    return scalars, {"omega1": high, "mA": m1, "mB": m2, "omega3": low}, w


def alhvr(req):
    t = {name: nchw(decode(v)).requires_grad_(True) for name, v in req["tensors"].items() if name != "labels"}
    labels = decode(req["tensors"]["labels"]).long()
    scalars, masks, w = alhvr_terms(t, labels, req)
    scalars["loss"].backward()
    out = {}
    out["terms"] = {k: float(v) for k, v in scalars.items()}
    out["weight"] = w
    out["grads"] = {k: encode(nhwc(v.grad)) for k, v in t.items()}
    out["masks"] = {k: encode(v) for k, v in masks.items()}
    return out


def resize(req):
    x = nchw(decode(req["x"]))
    return {"ys": [encode(nhwc(F.interpolate(x, size=c["size"], mode="bilinear", align_corners=c["alignCorners"])))
                   for c in req["cases"]]}


def main():
    req = json.load(sys.stdin)
    handlers = {"alhvr": alhvr, "resize": resize}
    json.dump(handlers[req["task"]](req), sys.stdout)


if __name__ == "__main__":
    main()
