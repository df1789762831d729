"""One full ALHVR training iteration in PyTorch on the CPU: two students (encoder, clean decoder,
feature-perturbed auxiliary decoder), the ALHVR objective, one backward pass, both SGD steps.
The reference for bench/alhvr-step.ts; network and loss come from the test suite's independent
PyTorch references (test/oracles/reference_unet.py, test/oracles/reference_losses.py).

Usage: python3 alhvr-step-torch.py BL BU SIZE W0,W1,W2,W3,W4 STEPS THREADS [--profile]
Prints one JSON object: {"msPerStep", "times", "peakRssMB", "loss", "torch"}; with --profile also
"profile": one further step under torch.profiler, self CPU ms of the convolutions (forward,
backward) and of everything.
"""
import json
import os
import random
import resource
import statistics
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, "..", "test", "oracles")]

import torch  # noqa: E402
from reference_losses import alhvr_terms  # noqa: E402
from reference_unet import Net  # noqa: E402

torch.set_default_dtype(torch.float32)  # reference_losses switches it to float64 for the tests

DROPOUT = [0.05, 0.1, 0.2, 0.3, 0.5]


def perturb(feats):
    """Released UNet_fea_aux: FeatureDropout or FeatureNoise on every encoder output."""
    if random.random() > 0.5:
        out = []
        for x in feats:
            a = torch.mean(x, dim=1, keepdim=True)
            threshold = torch.max(a.view(a.size(0), -1), dim=1, keepdim=True)[0] * random.uniform(0.7, 0.9)
            out.append(x * (a < threshold.view(a.size(0), 1, 1, 1)).float())
        return out
    return [x + x * torch.empty(x.shape[1:]).uniform_(-0.3, 0.3).unsqueeze(0) for x in feats]


def main():
    bl, bu, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    widths = [int(w) for w in sys.argv[4].split(",")]
    steps, threads = int(sys.argv[5]), int(sys.argv[6])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    random.seed(1)
    nets = [Net(1, 4, widths, DROPOUT).train() for _ in range(2)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4) for n in nets]
    x = torch.rand(bl + bu, 1, size, size)
    labels = torch.randint(0, 4, (bl, size, size))
    req = {"labeled": bl, "iteration": 100, "proportion": 0.8, "temperature": 0.1, "scaler": 1.0,
           "diceLoss": "released", "detachTeacher": False, "protoCe": "released"}

    def step():
        t = {}
        for key, net in zip("AB", nets):
            feats = net.encode(x)
            t["logits" + key], t["fea" + key] = net.decode(feats)
            t["logitsAux" + key], t["feaAux" + key] = net.decode(perturb(feats))
        scalars, _, _ = alhvr_terms(t, labels, req)
        for o in opts:
            o.zero_grad()
        scalars["loss"].backward()
        for o in opts:
            o.step()
        return float(scalars["loss"])

    loss = step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1000)
    out = {"msPerStep": statistics.median(times), "times": times, "loss": loss,
           "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__}
    if "--profile" in sys.argv:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        ms = {e.key: e.self_cpu_time_total / 1000 for e in prof.key_averages()}
        out["profile"] = {"convolutionForwardMs": ms.get("aten::mkldnn_convolution", 0.0),
                          "convolutionBackwardMs": ms.get("aten::convolution_backward", 0.0),
                          "allMs": sum(ms.values())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
