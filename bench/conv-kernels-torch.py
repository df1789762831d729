"""Per-layer 3x3 convolution timings in PyTorch (CPU): forward, input gradient, filter gradient.

Usage: python3 conv-kernels-torch.py THREADS REPS SHAPES_JSON   (shapes: [[B, H, W, Cin, Cout], ...])
Prints one JSON list of {shape, fwd_ms, dx_ms, dw_ms} (medians).
"""
import json
import statistics
import sys
import time

import torch

threads, reps, shapes = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(threads)


def median_ms(fn):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


out = []
for b, h, w, cin, cout in shapes:
    x = torch.randn(b, cin, h, w, requires_grad=True)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    g = torch.randn(b, cout, h, w)
    with torch.no_grad():
        fwd = median_ms(lambda: conv(x))
    y = conv(x)
    dx = median_ms(lambda: torch.autograd.grad(y, [x], g, retain_graph=True))
    dw = median_ms(lambda: torch.autograd.grad(y, [conv.weight], g, retain_graph=True))
    out.append({"shape": [b, h, w, cin, cout], "fwd_ms": fwd, "dx_ms": dx, "dw_ms": dw})
print(json.dumps({"torch": torch.__version__, "threads": threads, "layers": out}))
