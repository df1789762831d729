#!/usr/bin/python3
"""PyTorch's sliding window for bench/segment-3d.ts: the very ONNX graph alhvr-segment runs
(both VNet students and the ensemble heads, evaluated with PyTorch operators by
bench/onnx_torch.py), one window per call as released, over the same model-grid volume the
pipeline builds (resampled and normalised by the card, written by the benchmark), with the same
window placement (stride 64 of 96, windows at min(stride*i, S - P), short sides zero-padded
floor(pad/2) before) and the same accumulation: the averaged softmax and each student's
confidence, uniform weights, then argmax. Only this part is timed (no file reading or writing).

usage: segment-3d-torch.py MODEL.onnx GRID.f32 NX NY NZ --patch 96 --stride 64 --threads T [--labels OUT.u8]
Prints one JSON line: windows, seconds, peak_rss_mb, torch version.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_torch import OnnxTorch  # noqa: E402


def starts_along(size, patch, stride):
    padded = max(size, patch)
    count = -(-(padded - patch) // stride) + 1
    return [min(n * stride, padded - patch) for n in range(count)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("grid")
    ap.add_argument("nx", type=int)
    ap.add_argument("ny", type=int)
    ap.add_argument("nz", type=int)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--labels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nx, ny, nz, p = args.nx, args.ny, args.nz, args.patch
    # Volume order i fastest: as a [k][j][i] array, matching the graph's NCDHW (D = k).
    volume = torch.from_numpy(np.fromfile(args.grid, dtype="<f4").reshape(nz, ny, nx))
    model = OnnxTorch(args.model)
    pad = [(p - s) // 2 if s < p else 0 for s in (nz, ny, nx)]
    size = [max(s, p) for s in (nz, ny, nx)]
    padded = torch.zeros(size)
    padded[pad[0]:pad[0] + nz, pad[1]:pad[1] + ny, pad[2]:pad[2] + nx] = volume
    starts = [starts_along(s, p, args.stride) for s in (nz, ny, nx)]
    with torch.no_grad():
        model(padded[None, None, :p, :p, :p].contiguous())  # warm-up, as the session's creation is not timed
        t0 = time.perf_counter()
        probs = None
        student = torch.zeros((2, *size))
        weight = torch.zeros(size)
        windows = 0
        for sk in starts[0]:
            for sj in starts[1]:
                for si in starts[2]:
                    window = padded[None, None, sk:sk + p, sj:sj + p, si:si + p].contiguous()
                    out = model(window)
                    if probs is None:
                        probs = torch.zeros((out["probabilities"].shape[1], *size))
                    probs[:, sk:sk + p, sj:sj + p, si:si + p] += out["probabilities"][0]
                    student[:, sk:sk + p, sj:sj + p, si:si + p] += out["student_confidence"][0]
                    weight[sk:sk + p, sj:sj + p, si:si + p] += 1
                    windows += 1
        probs /= weight
        student /= weight
        inside = (slice(pad[0], pad[0] + nz), slice(pad[1], pad[1] + ny), slice(pad[2], pad[2] + nx))
        labels = probs[(slice(None), *inside)].argmax(0).to(torch.uint8)
        seconds = time.perf_counter() - t0
    if args.labels:
        labels.numpy().tofile(args.labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"windows": windows, "seconds": seconds, "peak_rss_mb": peak, "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
