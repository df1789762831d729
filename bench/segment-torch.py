#!/usr/bin/python3
"""PyTorch reference for bench/segment.ts: the toy model's two students' forward pass alone
(conv -> softmax, mean, argmax, max) on the same preprocessed slices, same batch size and threads.

usage: segment-torch.py SLICES.f32 N H W --batch B --threads T
Prints one JSON line: slices, seconds, slices_per_s, peak_rss_mb.
"""
import argparse
import importlib.util
import json
import os
import resource
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("toy", os.path.join(here, "..", "test", "make-test-model.py"))
toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("slices")
    ap.add_argument("n", type=int)
    ap.add_argument("h", type=int)
    ap.add_argument("w", type=int)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(np.fromfile(args.slices, dtype="<f4").reshape(args.n, 1, args.h, args.w))
    (wa, ba), (wb, bb) = toy.student_weights()
    conv_a = torch.nn.Conv2d(1, wa.shape[0], 3, padding=1)
    conv_b = torch.nn.Conv2d(1, wb.shape[0], 3, padding=1)
    with torch.no_grad():
        conv_a.weight.copy_(torch.from_numpy(wa)); conv_a.bias.copy_(torch.from_numpy(ba))
        conv_b.weight.copy_(torch.from_numpy(wb)); conv_b.bias.copy_(torch.from_numpy(bb))
    labels = np.empty((args.n, args.h, args.w), dtype=np.uint8)
    with torch.inference_mode():
        conv_a(x[:1]); conv_b(x[:1])  # warm-up, as ONNX Runtime's session creation is not timed either
        t0 = time.perf_counter()
        for s in range(0, args.n, args.batch):
            xb = x[s:s + args.batch]
            pa = torch.softmax(conv_a(xb), 1)
            pb = torch.softmax(conv_b(xb), 1)
            mean = (pa + pb) / 2
            conf, lab = mean.max(1)
            sa = pa.max(1).values
            sb = pb.max(1).values
            labels[s:s + args.batch] = lab.to(torch.uint8).numpy()
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"slices": args.n, "seconds": seconds, "slices_per_s": args.n / seconds, "peak_rss_mb": peak,
                      "torch": torch.__version__, "threads": args.threads, "batch": args.batch}))


if __name__ == "__main__":
    main()
