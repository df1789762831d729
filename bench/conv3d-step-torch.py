"""One ALHVR-shaped training iteration of two VNet students in PyTorch, for bench/conv3d-kernels.ts.

The network is the released vnet_fea_aux at the given widths (conv blocks of depths 1, 2, 3, 3, 3
with BatchNorm3d + ReLU, 2^3 stride-2 down convs, ConvTranspose3d up convs, additive skips,
Dropout3d on the deepest features and before the head) with the auxiliary decoder pass on
perturbed encoder features (uniform feature noise), as the toolkit's vnet3d.ts runs it. The
objective is a stand-in of the ALHVR loss with the same tensors: cross-entropy of both students'
clean and auxiliary logits on the labelled half, and a mean-squared consistency between the two
students' softmax over the whole batch. Its cost is small next to the convolutions.

  python3 bench/conv3d-step-torch.py THREADS REPS BATCH PATCH WIDTHS(comma-separated) CLASSES

Prints JSON on stdout: torch version, the allocator in use, CPU seconds (time.process_time, all
threads) and wall seconds per step (median of REPS after one warm-up).
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTHS = [1, 2, 3, 3, 3]


def block(cin, cout, depth):
    layers = []
    for i in range(depth):
        layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def down(cin, cout):
    return nn.Sequential(nn.Conv3d(cin, cout, 2, stride=2), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


def up(cin, cout):
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class VNet(nn.Module):
    def __init__(self, widths, classes):
        super().__init__()
        self.enc = nn.ModuleList(block(1 if l == 0 else w, w, DEPTHS[l]) for l, w in enumerate(widths))
        self.downs = nn.ModuleList(down(widths[l - 1], widths[l]) for l in range(1, len(widths)))
        self.ups = nn.ModuleList(up(widths[l + 1], widths[l]) for l in reversed(range(len(widths) - 1)))
        self.dec = nn.ModuleList(block(widths[l], widths[l], DEPTHS[l]) for l in reversed(range(len(widths) - 1)))
        self.head = nn.Conv3d(widths[0], classes, 1)

    def encode(self, x):
        feats = []
        h = x
        for l, b in enumerate(self.enc):
            if l > 0:
                h = self.downs[l - 1](h)
            h = b(h)
            feats.append(h)
        feats[-1] = F.dropout3d(feats[-1], 0.5, True)
        return feats

    def decode(self, feats):
        h = feats[-1]
        for n, (u, b) in enumerate(zip(self.ups, self.dec)):
            h = b(u(h) + feats[-2 - n])
        return self.head(F.dropout3d(h, 0.5, True))

    def forward(self, x):
        feats = self.encode(x)
        clean = self.decode(feats)
        noisy = [f + f * torch.empty_like(f).uniform_(-0.3, 0.3) for f in feats]
        return clean, self.decode(noisy)


def main():
    threads, reps, batch, patch = (int(a) for a in sys.argv[1:5])
    widths = [int(w) for w in sys.argv[5].split(",")]
    classes = int(sys.argv[6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nets = [VNet(widths, classes), VNet(widths, classes)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4) for n in nets]
    x = torch.randn(2 * batch, 1, patch, patch, patch)
    y = torch.randint(0, classes, (batch, patch, patch, patch))

    def step():
        for o in opts:
            o.zero_grad(set_to_none=True)
        outs = [n(x) for n in nets]
        loss = sum(F.cross_entropy(o[:batch], y) for pair in outs for o in pair)
        pa, pb = (torch.softmax(pair[0], 1) for pair in outs)
        loss = loss + F.mse_loss(pa, pb)
        loss.backward()
        for o in opts:
            o.step()

    step()
    runs = []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        runs.append((time.process_time() - c0, time.perf_counter() - t0))
    cpu = sorted(r[0] for r in runs)[len(runs) // 2]
    wall = sorted(r[1] for r in runs)[len(runs) // 2]
    allocator = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"
    print(json.dumps({"torch": torch.__version__, "threads": threads, "allocator": allocator, "cpuS": cpu, "wallS": wall, "reps": reps}))


if __name__ == "__main__":
    main()
