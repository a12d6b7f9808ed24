#!/usr/bin/env python3
"""CPU timing baseline (PyTorch) for the U-GAT-IT networks, using tools/oracle/ugatit_torch.py.

Cases (default sizes ch 64, n_res 4, batch 1; PyTorch default init):
  light_g_forward_256        light generator forward at 256 px under no_grad (full_g_forward_256 likewise)
  light_g_fwd_bwd_<S>        light generator forward + backward at --img-size S
  global_d_fwd_bwd_<S>       global discriminator (n_layers 7) forward + backward
  local_d_fwd_bwd_<S>        local discriminator (n_layers 5) forward + backward
The loss for backward is the sum of all elements of the three outputs.  Modules are
in train mode (so each D forward does one spectral-norm power iteration).  The global
D cannot run below 96 px (reflection padding larger than its feature map); it is
skipped there.  Each case reports the median wall time of --reps runs after --warmup
runs, in milliseconds:  "torch <case> <ms>".
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep tools/oracle free of __pycache__

import torch  # noqa: E402

import ugatit_torch as ut  # noqa: E402


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def fwd_bwd(module, x):
    def step():
        module.zero_grad(set_to_none=True)
        loss = sum(o.sum() for o in module(x))
        loss.backward()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--img-size", type=int, default=256, help="size for the forward+backward cases")
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--n-res", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="run only these case-name prefixes, e.g. local_d")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    s, b = args.img_size, args.batch

    def wanted(name):
        return not args.only or any(name.startswith(p) for p in args.only)

    results = []

    def report(name, ms):
        results.append({"case": name, "ms": ms})
        print("torch %s %.3f" % (name, ms), flush=True)

    for kind, light in (("light", True), ("full", False)):
        name = "%s_g_forward_256" % kind
        if wanted(name):
            g = ut.ResnetGenerator(args.ch, args.n_res, 256, light=light).train()
            x = torch.empty(1, 3, 256, 256).uniform_(-1, 1)

            def fwd():
                with torch.no_grad():
                    g(x)
            report(name, timed(fwd, args.warmup, args.reps))

        name = "%s_g_fwd_bwd_%d" % (kind, s)
        if wanted(name):
            g = ut.ResnetGenerator(args.ch, args.n_res, s, light=light).train()
            x = torch.empty(b, 3, s, s).uniform_(-1, 1)
            report(name, timed(fwd_bwd(g, x), args.warmup, args.reps))

    name = "global_d_fwd_bwd_%d" % s
    if wanted(name):
        if s < 96:
            print("# skip %s: the global discriminator needs >= 96 px" % name, file=sys.stderr)
        else:
            d = ut.Discriminator(args.ch, 7).train()
            x = torch.empty(b, 3, s, s).uniform_(-1, 1)
            report(name, timed(fwd_bwd(d, x), args.warmup, args.reps))

    name = "local_d_fwd_bwd_%d" % s
    if wanted(name):
        d = ut.Discriminator(args.ch, 5).train()
        x = torch.empty(b, 3, s, s).uniform_(-1, 1)
        report(name, timed(fwd_bwd(d, x), args.warmup, args.reps))

    if args.json:
        meta = {"torch": torch.__version__, "threads": args.threads, "img_size": s, "batch": b,
                "ch": args.ch, "n_res": args.n_res, "reps": args.reps, "warmup": args.warmup,
                "statistic": "median_ms"}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
