#!/usr/bin/python3
"""PyTorch reference for bench/segment.ts: the two ALHVR students' forward pass alone (the
PyTorch port in test/oracles/reference_unet.py, float32, eval, no_grad) plus the same
ensemble heads as the ONNX graph (mean softmax, argmax, max, per-student max), on the same
preprocessed 256² slices, same batch size and threads.

usage: segment-torch.py MODEL_DIR SLICES.f32 N H W --batch B --threads T [--labels OUT.u8]
MODEL_DIR holds weights.f32 / weights.json from bench/segment-model.ts.
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
spec = importlib.util.spec_from_file_location(
    "reference_unet", os.path.join(here, "..", "test", "oracles", "reference_unet.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


def load_students(model_dir):
    index = json.load(open(os.path.join(model_dir, "weights.json")))
    flat = np.fromfile(os.path.join(model_dir, "weights.f32"), dtype="<f4")
    nets = []
    for entries in index["students"]:
        net = ref.Net(1, index["numClasses"], index["widths"], [0, 0, 0, 0, 0])
        modules = dict(net.named_modules())
        with torch.no_grad():
            for name, e in entries.items():
                size = int(np.prod(e["shape"])) if e["shape"] else 1
                v = torch.from_numpy(flat[e["offset"]:e["offset"] + size].reshape(e["shape"]).copy())
                if v.dim() == 4:
                    v = v.permute(3, 2, 0, 1).contiguous()
                mod, attr = ref.torch_name(name)
                getattr(modules[mod], attr).copy_(v)
        net.eval()
        nets.append(net)
    return nets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
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
    net_a, net_b = load_students(args.model_dir)
    labels = np.empty((args.n, args.h, args.w), dtype=np.uint8)
    with torch.no_grad():
        # Warm-up, as ONNX Runtime's session creation is not timed either.
        net_a(x[:args.batch])
        net_b(x[:args.batch])
        t0 = time.perf_counter()
        for s in range(0, args.n, args.batch):
            xb = x[s:s + args.batch]
            pa = torch.softmax(net_a(xb)[0], 1)
            pb = torch.softmax(net_b(xb)[0], 1)
            mean = (pa + pb) * 0.5
            conf, lab = mean.max(1)
            student = torch.stack([pa.max(1).values, pb.max(1).values], 1)
            labels[s:s + args.batch] = lab.to(torch.uint8).numpy()
        seconds = time.perf_counter() - t0
    if args.labels:
        labels.tofile(args.labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"slices": args.n, "seconds": seconds, "slices_per_s": args.n / seconds, "peak_rss_mb": peak,
                      "torch": torch.__version__, "threads": args.threads, "batch": args.batch}))


if __name__ == "__main__":
    main()
