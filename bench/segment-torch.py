#!/usr/bin/python3
"""PyTorch reference for bench/segment.ts: the very ONNX graph ONNX Runtime runs (both students
and the ensemble heads: mean softmax, argmax, max, per-student max, region), evaluated with
PyTorch's operators by bench/onnx_torch.py (float32, no_grad), on the same preprocessed slices,
same batch size and threads.

usage: segment-torch.py MODEL.onnx SLICES.f32 N H W --batch B --threads T [--labels OUT.u8]
Prints one JSON line: slices, seconds, slices_per_s, peak_rss_mb.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("slices")
    ap.add_argument("n", type=int)
    ap.add_argument("h", type=int)
    ap.add_argument("w", type=int)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--labels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(np.fromfile(args.slices, dtype="<f4").reshape(args.n, 1, args.h, args.w))
    model = OnnxTorch(args.model)
    labels = np.empty((args.n, args.h, args.w), dtype=np.uint8)
    with torch.no_grad():
        # Warm-up, as ONNX Runtime's session creation is not timed either.
        model(x[:args.batch])
        t0 = time.perf_counter()
        for s in range(0, args.n, args.batch):
            out = model(x[s:s + args.batch])
            labels[s:s + args.batch] = out["label"].numpy()
        seconds = time.perf_counter() - t0
    if args.labels:
        labels.tofile(args.labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"slices": args.n, "seconds": seconds, "slices_per_s": args.n / seconds, "peak_rss_mb": peak,
                      "torch": torch.__version__, "threads": args.threads, "batch": args.batch}))


if __name__ == "__main__":
    main()
