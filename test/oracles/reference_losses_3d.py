"""Independent PyTorch reference of the 3D ALHVR objective (the released BraTS 2019 script as
shared/docs/alhvr-method-3d.md §3 states it), used only by the tests.

Written in PyTorch's own NCDHW layout with the released broadcasting, float64. Reads a JSON
request on stdin, writes JSON on stdout. Tensors travel as {"shape": [...], "b64": <little-endian
float32 bytes>} in NDHWC (the tfjs layout) and are permuted here. Quirk switches (the page's §6)
are request fields; "released" everywhere is the published behaviour.
"""
import base64
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def decode(t):
    a = np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"])
    return torch.tensor(a.astype(np.float64))


def encode(x):
    a = x.detach().to(torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


def to_ncdhw(x):
    return x.permute(0, 4, 1, 2, 3).contiguous()


def to_ndhwc(x):
    return x.permute(0, 2, 3, 4, 1)


def dice_term(score, target, variant):
    inter = (score * target).sum()
    denom = (score * score).sum() + (target * target).sum()
    if variant == "released":
        return 1 - inter / (denom + 1e-10)
    return 1 - (2 * inter + 1e-5) / (denom + 1e-5)


def supervised(logits, labels, classes, variant):
    probs = torch.softmax(logits, dim=1)
    ce = F.cross_entropy(logits, labels)
    dice = torch.stack([dice_term(probs[:, k], (labels == k).double(), variant) for k in range(classes)]).mean()
    return ce, dice


def class_prototypes(feats, classes_index, classes):
    # Per image: Σ_v f·1[k] / (count + 1e-5); summed over images, halved (divided by the batch).
    b = feats.shape[0]
    rows = []
    for k in range(classes):
        total = 0
        for i in range(b):
            mask = (classes_index[i] == k).double()[None, None]
            total = total + (feats[i:i + 1] * mask).sum(dim=(2, 3, 4)) / (mask.sum() + 1e-5)
        rows.append(total / b)
    return rows  # K tensors [1, D]


def prototype_logits(feats_aux, protos, scaler):
    return torch.stack([F.cosine_similarity(feats_aux, p[:, :, None, None, None], dim=1, eps=1e-8) * scaler for p in protos], dim=1)


def objective(t, labels, req):
    bl = req["labeled"]
    classes = t["logitsA"].shape[1]
    pA, pB = torch.softmax(t["logitsA"], 1), torch.softmax(t["logitsB"], 1)
    qA, qB = torch.softmax(t["logitsAuxA"], 1), torch.softmax(t["logitsAuxB"], 1)
    ceA, diceA = supervised(t["logitsA"][:bl], labels, classes, req["diceLoss"])
    ceB, diceB = supervised(t["logitsB"][:bl], labels, classes, req["diceLoss"])

    step = min(req["iteration"] // req["iterationsPerStep"], 200)
    w = 0.1 * float(np.exp(-5.0 * (1.0 - step / 200.0) ** 2))

    uA, uB, uqA, uqB = pA[bl:], pB[bl:], qA[bl:], qB[bl:]
    cA = uqA.max(dim=1)[0].detach()
    cB = uqB.max(dim=1)[0].detach()
    mean_conf = ((cA + cB) / 2).reshape(-1)
    gamma = torch.sort(mean_conf)[0][: int(mean_conf.numel() * req["proportion"])].mean()
    omega3 = ((cA < gamma) & (cB < gamma)).double()
    mA = ((cA <= gamma) & (cB > gamma)).double()
    mB = ((cB <= gamma) & (cA > gamma)).double()
    omega1 = ((cA > gamma) & (cB > gamma)).double()

    # DTCT on Ω3.
    a_wins = (uA.max(dim=1, keepdim=True)[0] > uB.max(dim=1, keepdim=True)[0]).double().detach()
    teacher = uA * a_wins + uB * (1 - a_wins)
    if req["detachTeacher"]:
        teacher = teacher.detach()
    e = 1.0 / req["temperature"]
    sharp = teacher ** e / (teacher ** e + (1 - teacher) ** e)
    m3 = omega3[:, None]
    count3 = omega3.sum() + 1e-16
    mseA = (m3 * (uqA - sharp) ** 2).sum() / count3
    mseB = (m3 * (uqB - sharp) ** 2).sum() / count3

    def entropy(x):
        per_voxel = -(x * torch.log(x + 1e-6)).sum(dim=1)
        if req["entropyMean"] == "released":
            return per_voxel.mean()
        return per_voxel.sum() / count3

    focusA = mseA + entropy(uA * m3) + entropy(uqA * m3)
    focusB = mseB + entropy(uB * m3) + entropy(uqB * m3)

    # CG-CPCL on Ω2: features upsampled trilinearly (align_corners false) to the crop.
    size = uA.shape[2:]
    up = lambda f: F.interpolate(f[bl:], size=size, mode="trilinear", align_corners=False)
    argA, argB = uA.argmax(dim=1).detach(), uB.argmax(dim=1).detach()
    protoA = class_prototypes(up(t["feaA"]), argA, classes)
    protoB = class_prototypes(up(t["feaB"]), argB, classes)
    if req["detachPrototypes"]:
        protoA = [p.detach() for p in protoA]
        protoB = [p.detach() for p in protoB]
    logitsA = prototype_logits(up(t["feaAuxA"]), protoB, req["scaler"])
    logitsB = prototype_logits(up(t["feaAuxB"]), protoA, req["scaler"])
    ce_voxA = F.cross_entropy(logitsA, argB, reduction="none")
    ce_voxB = F.cross_entropy(logitsB, argA, reduction="none")
    if req["protoCe"] == "released":
        # mask [Bu,1,D,H,W] × loss [Bu,D,H,W] broadcasts to [Bu,Bu,D,H,W].
        pceA = (mA[:, None] * ce_voxA).sum() / (mA[:, None].sum() + 1e-16)
        pceB = (mB[:, None] * ce_voxB).sum() / (mB[:, None].sum() + 1e-16)
    else:
        pceA = (mA * ce_voxA).sum() / (mA.sum() + 1e-16)
        pceB = (mB * ce_voxB).sum() / (mB.sum() + 1e-16)
    if req["protoCos"] == "released":
        pcosA = ((1 - logitsA) * mA[:, None]).mean()
        pcosB = ((1 - logitsB) * mB[:, None]).mean()
    else:
        target_cos = lambda lg, tgt: lg.gather(1, tgt[:, None])[:, 0]
        pcosA = ((1 - target_cos(logitsA, argB)) * mA).sum() / (mA.sum() + 1e-16)
        pcosB = ((1 - target_cos(logitsB, argA)) * mB).sum() / (mB.sum() + 1e-16)

    supA, supB = ceA + diceA, ceB + diceB
    proA, proB = pceA + pcosA, pceB + pcosB
    lossA = supA + w * (focusA + proA)
    lossB = supB + w * (focusB + proB)
    terms = dict(loss=lossA + lossB, lossA=lossA, lossB=lossB, supA=supA, supB=supB, ceA=ceA, ceB=ceB,
                 diceA=diceA, diceB=diceB, focusA=focusA, focusB=focusB, mseA=mseA, mseB=mseB,
                 protoA=proA, protoB=proB, protoCeA=pceA, protoCeB=pceB, protoCosA=pcosA, protoCosB=pcosB,
                 gamma=gamma, omega1Fraction=omega1.mean(), omega2Fraction=(mA + mB).mean(), omega3Fraction=omega3.mean())
    return terms, w


def alhvr3d(req):
    t = {k: to_ncdhw(decode(v)).requires_grad_(True) for k, v in req["tensors"].items() if k != "labels"}
    labels = decode(req["tensors"]["labels"]).long()
    terms, w = objective(t, labels, req)
    terms["loss"].backward()
    return {"terms": {k: float(v) for k, v in terms.items()}, "weight": w,
            # An input nothing reaches (clean features once prototypes and teacher are detached) has gradient 0.
            "grads": {k: encode(to_ndhwc(v.grad if v.grad is not None else torch.zeros_like(v))) for k, v in t.items()}}


def trilinear(req):
    x = to_ncdhw(decode(req["x"]))
    return {"y": encode(to_ndhwc(F.interpolate(x, size=req["size"], mode="trilinear", align_corners=req["alignCorners"])))}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump({"alhvr3d": alhvr3d, "trilinear": trilinear}[request["task"]](request), sys.stdout)
