"""One plain U-Net training step (forward + backward + SGD) in PyTorch on the CPU, the reference
for bench/train-step.ts. Same network, loss and update as the TypeScript side.

Usage: python3 train-step-torch.py BATCH SIZE W0,W1,W2,W3,W4 STEPS THREADS
Prints one JSON object: {"msPerStep": ..., "peakRssMB": ...}.
"""
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01))


class UNet(nn.Module):
    def __init__(self, widths, classes=4):
        super().__init__()
        self.enc = nn.ModuleList([block(1 if i == 0 else widths[i - 1], w) for i, w in enumerate(widths)])
        self.reduce = nn.ModuleList([nn.Conv2d(widths[i + 1], widths[i], 1) for i in reversed(range(4))])
        self.dec = nn.ModuleList([block(2 * widths[i], widths[i]) for i in reversed(range(4))])
        self.out = nn.Conv2d(widths[0], classes, 3, padding=1)

    def forward(self, x):
        skips = []
        for i, b in enumerate(self.enc):
            x = b(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for r, b in zip(self.reduce, self.dec):
            skip = skips.pop()
            x = F.interpolate(r(x), size=skip.shape[2:], mode='bilinear', align_corners=True)
            x = b(torch.cat([skip, x], 1))
        return self.out(x)


def main():
    batch, size, widths, steps, threads = int(sys.argv[1]), int(sys.argv[2]), [int(v) for v in sys.argv[3].split(',')], int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = UNet(widths)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.rand(batch, 1, size, size)
    y = torch.randint(0, 4, (batch, size, size))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - t0) * 1000 / steps
    print(json.dumps({"msPerStep": ms, "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == '__main__':
    main()
