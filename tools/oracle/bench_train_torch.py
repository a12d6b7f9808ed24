"""Seconds per training iteration of UGATIT-pytorch's step, with our torch modules of its networks
(ugatit_torch.py), on random batches: the Python baseline for `ugatit bench`.

The step is the reference's as written in its train() loop: the D step computes the generators'
outputs without detaching them (so its backward also runs through both generators), then the G
step recomputes them; LSGAN, weights 1/10/10/1000, Adam(lr 1e-4, betas (0.5, 0.999), weight decay
1e-4), rho clamp.  Prints one line like `ugatit bench` and, with --json, writes it.

    python bench_train_torch.py --light --img-size 64 --n-dis 5 --iters 5 [--device cuda]
"""
import argparse
import json
import os
import resource
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ugatit_torch as ut  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--light", action="store_true")
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--n-res", type=int, default=4)
    ap.add_argument("--n-dis", type=int, default=6, help="global D gets n_dis+1 layers, local n_dis-1")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 in cuDNN (torch's default is on)")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    gA2B = ut.ResnetGenerator(a.ch, a.n_res, a.img_size, a.light).to(dev)
    gB2A = ut.ResnetGenerator(a.ch, a.n_res, a.img_size, a.light).to(dev)
    dGA, dGB = (ut.Discriminator(a.ch, a.n_dis + 1).to(dev) for _ in range(2))
    dLA, dLB = (ut.Discriminator(a.ch, a.n_dis - 1).to(dev) for _ in range(2))
    kw = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    opt_g = torch.optim.Adam(list(gA2B.parameters()) + list(gB2A.parameters()), **kw)
    opt_d = torch.optim.Adam([p for d in (dGA, dGB, dLA, dLB) for p in d.parameters()], **kw)
    mse, l1, bce = F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits

    def adv_d(d, real, fake):
        r, rc, _ = d(real)
        f, fc, _ = d(fake)
        return (mse(r, torch.ones_like(r)) + mse(f, torch.zeros_like(f))
                + mse(rc, torch.ones_like(rc)) + mse(fc, torch.zeros_like(fc)))

    def adv_g(d, fake):
        f, fc, _ = d(fake)
        return mse(f, torch.ones_like(f)) + mse(fc, torch.ones_like(fc))

    def step(real_A, real_B):
        opt_d.zero_grad()
        fake_A2B, _, _ = gA2B(real_A)
        fake_B2A, _, _ = gB2A(real_B)
        d_loss = adv_d(dGA, real_A, fake_B2A) + adv_d(dLA, real_A, fake_B2A) \
            + adv_d(dGB, real_B, fake_A2B) + adv_d(dLB, real_B, fake_A2B)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        fake_A2B, cam_A2B, _ = gA2B(real_A)
        fake_B2A, cam_B2A, _ = gB2A(real_B)
        fake_A2B2A, _, _ = gB2A(fake_A2B)
        fake_B2A2B, _, _ = gA2B(fake_B2A)
        fake_A2A, cam_A2A, _ = gB2A(real_A)
        fake_B2B, cam_B2B, _ = gA2B(real_B)
        g_ad = adv_g(dGA, fake_B2A) + adv_g(dLA, fake_B2A) + adv_g(dGB, fake_A2B) + adv_g(dLB, fake_A2B)
        cam = (bce(cam_B2A, torch.ones_like(cam_B2A)) + bce(cam_A2A, torch.zeros_like(cam_A2A))
               + bce(cam_A2B, torch.ones_like(cam_A2B)) + bce(cam_B2B, torch.zeros_like(cam_B2B)))
        g_loss = g_ad + 10 * (l1(fake_A2B2A, real_A) + l1(fake_B2A2B, real_B)) \
            + 10 * (l1(fake_A2A, real_A) + l1(fake_B2B, real_B)) + 1000 * cam
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():
            for g in (gA2B, gB2A):
                for m in g.modules():
                    if hasattr(m, "rho"):
                        m.rho.clamp_(0, 1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(a.warmup + a.iters):
        real_A = torch.rand(1, 3, a.img_size, a.img_size, device=dev) * 2 - 1
        real_B = torch.rand(1, 3, a.img_size, a.img_size, device=dev) * 2 - 1
        sync()
        t = time.perf_counter()
        step(real_A, real_B)
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    kind = "light" if a.light else "full"
    extra = ""
    if dev.type == "cuda":
        extra = ", peak CUDA allocated %.0f MiB" % (torch.cuda.max_memory_allocated() / 2**20)
    line = "torch %s img %d device %s tf32 %s: %.4f s/iter (median of %d), peak RSS %.0f MiB%s" % (
        kind, a.img_size, a.device, a.tf32, median, a.iters, rss, extra)
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(kind=kind, img_size=a.img_size, device=a.device, s_per_iter=median, peak_rss_mib=rss), f)


if __name__ == "__main__":
    main()
