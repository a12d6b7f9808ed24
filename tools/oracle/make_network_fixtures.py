#!/usr/bin/env python3
"""Build torch-vs-PaddleGAN network fixtures for ugatit-rs.

For each case the script builds our own torch module (tools/oracle/ugatit_torch.py)
with PyTorch default init, perturbs the norm parameters, copies every weight (and the
spectral-norm u/v vectors) into PaddleGAN's network, runs the same input through both,
asserts that the two frameworks agree, and writes one safetensors file per case into
tests/fixtures/networks/.

Run from anywhere:  python tools/oracle/make_network_fixtures.py [--out DIR] [--threads N]
"""

import argparse
import importlib
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep tools/oracle free of __pycache__

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import ugatit_torch as ut  # noqa: E402

OUT_TOL_ABS = 1e-5     # outputs: absolute (scaled by max(1, max|out|))
GRAD_TOL_REL = 1e-4    # grads: relative to each tensor's max abs
UV_TOL_ABS = 1e-5      # spectral-norm vectors (unit length)

CASES = [
    dict(name="gen_light", kind="generator", light=True, ngf=8, n_blocks=3, img_size=64, batch=2, seed=101),
    dict(name="gen_full", kind="generator", light=False, ngf=8, n_blocks=2, img_size=32, batch=2, seed=202),
    dict(name="dis_global", kind="discriminator", ndf=4, n_layers=7, img_size=128, batch=2, seed=303),
    dict(name="dis_local", kind="discriminator", ndf=8, n_layers=5, img_size=64, batch=2, seed=404),
]

PT_DEFAULT_COUNTS = {
    "light_generator": 10_589_888,
    "full_generator": 278_959_808,
    "global_discriminator": 53_130_176,
    "local_discriminator": 3_290_560,
}


# --------------------------------------------------------------------------- PaddleGAN
def load_paddlegan():
    """Import PaddleGAN's U-GAT-IT networks without running ppgan/models/__init__.py
    (which imports the removed paddle.fluid).  The three package levels are replaced
    by empty namespace modules that point at the real directories."""
    import paddle  # noqa: F401
    import ppgan

    base = os.path.dirname(ppgan.__file__)
    for name, sub in [("ppgan.models", "models"),
                      ("ppgan.models.generators", "models/generators"),
                      ("ppgan.models.discriminators", "models/discriminators")]:
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [os.path.join(base, sub)]
            sys.modules[name] = mod
    gen = importlib.import_module("ppgan.models.generators.resnet_ugatit")
    dis = importlib.import_module("ppgan.models.discriminators.discriminator_ugatit")
    return gen.ResnetUGATITGenerator, dis.UGATITDiscriminator


# --------------------------------------------------------------------------- helpers
def save_safetensors(path, tensors, metadata):
    """Write a float32 safetensors file with a deterministic header (metadata and
    tensors sorted by key), so regenerating the fixtures is byte-for-byte stable.
    (safetensors' own writer orders the metadata map arbitrarily.)"""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for k in sorted(tensors):
        arr = np.ascontiguousarray(tensors[k], dtype="<f4")
        data = arr.tobytes()
        header[k] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for data in blobs:
            f.write(data)
    back = load_file(path)  # round-trip through the official reader
    assert sorted(back) == sorted(tensors)
    for k, v in tensors.items():
        assert np.array_equal(back[k], v), k


def linear_prefixes(module):
    """Module paths of every nn.Linear: their weights are [out,in] in torch, [in,out] in Paddle."""
    return {name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def is_linear_weight(key, lin):
    prefix, _, leaf = key.rpartition(".")
    return prefix in lin and leaf in ("weight", "weight_orig")


def perturb_norms(module, gen):
    """Move rho / ILN gamma / ILN beta away from their init so every path matters."""
    with torch.no_grad():
        for _, m in module.named_modules():
            if isinstance(m, (ut.adaILN, ut.ILN)):
                c = m.rho.shape[1]
                m.rho.copy_(torch.empty(1, c, 1, 1).uniform_(0.05, 0.95, generator=gen))
            if isinstance(m, ut.ILN):
                c = m.gamma.shape[1]
                m.gamma.copy_(1.0 + 0.2 * torch.randn(1, c, 1, 1, generator=gen))
                m.beta.copy_(0.2 * torch.randn(1, c, 1, 1, generator=gen))


def copy_to_paddle(tmod, pmod):
    """Copy our torch state into the Paddle network; returns the Paddle-only keys skipped."""
    import paddle

    tsd = tmod.state_dict()
    lin = linear_prefixes(tmod)
    psd = pmod.state_dict()
    skipped = []
    for key, pt in psd.items():
        if key not in tsd:
            # PaddleGAN's InstanceNorm2D carries frozen scale=1 / bias=0 entries.
            leaf = key.rpartition(".")[2]
            assert leaf in ("scale", "bias"), key
            val = pt.numpy()
            assert np.all(val == (1.0 if leaf == "scale" else 0.0)), key
            skipped.append(key)
            continue
        arr = tsd[key].detach().cpu().numpy()
        if is_linear_weight(key, lin):
            arr = arr.T
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        assert tuple(pt.shape) == arr.shape, (key, tuple(pt.shape), arr.shape)
        pt.set_value(paddle.to_tensor(arr))
    missing = [k for k in tsd if k not in psd]
    assert not missing, "torch keys absent in Paddle: %s" % missing
    return skipped


def paddle_state(pmod, key, lin):
    arr = pmod.state_dict()[key].numpy()
    return arr.T if is_linear_weight(key, lin) else arr


def diff_stats(a, b):
    """Max abs diff and that diff relative to max|a|."""
    d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return d, d / max(scale, 1e-30), scale


class Report:
    def __init__(self):
        self.groups = {}

    def add(self, group, key, a, b):
        assert a.shape == b.shape, (group, key, a.shape, b.shape)
        d, rel, scale = diff_stats(a, b)
        g = self.groups.setdefault(group, {"abs": 0.0, "rel": 0.0, "worst_abs": "", "worst_rel": "", "n": 0})
        g["n"] += 1
        if d >= g["abs"]:
            g["abs"], g["worst_abs"] = d, key
        if rel >= g["rel"]:
            g["rel"], g["worst_rel"] = rel, key
        return d, rel, scale

    def check(self, group, key, a, b):
        d, rel, scale = self.add(group, key, a, b)
        if group.endswith("out"):
            ok = d <= OUT_TOL_ABS * max(1.0, scale)
        elif group == "after_uv":
            ok = d <= UV_TOL_ABS
        else:
            ok = rel <= GRAD_TOL_REL
        assert ok, "%s %s: torch vs paddle max abs %.3g rel %.3g (max|x| %.3g)" % (group, key, d, rel, scale)

    def as_json(self):
        return {g: json.dumps({"max_abs": float("%.3g" % v["abs"]), "max_rel": float("%.3g" % v["rel"]),
                               "worst_abs": v["worst_abs"], "worst_rel": v["worst_rel"], "n": v["n"]},
                              separators=(",", ":"))
                for g, v in self.groups.items()}


# --------------------------------------------------------------------------- one case
def run_case(case, PGen, PDis, out_dir):
    import paddle

    torch.manual_seed(case["seed"])
    paddle.seed(case["seed"])
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    is_gen = case["kind"] == "generator"
    b, s = case["batch"], case["img_size"]

    if is_gen:
        tmod = ut.ResnetGenerator(case["ngf"], case["n_blocks"], s, case["light"])
        pmod = PGen(3, 3, ngf=case["ngf"], n_blocks=case["n_blocks"], img_size=s, light=case["light"])
        out_names = ["image", "cam_logit", "heatmap"]
    else:
        tmod = ut.Discriminator(case["ndf"], case["n_layers"])
        pmod = PDis(3, ndf=case["ndf"], n_layers=case["n_layers"])
        out_names = ["logit", "cam_logit", "heatmap"]
    perturb_norms(tmod, gen)
    skipped = copy_to_paddle(tmod, pmod)
    lin = linear_prefixes(tmod)

    init = {k: v.detach().clone().numpy() for k, v in tmod.state_dict().items()}
    x = torch.empty(b, 3, s, s).uniform_(-1.0, 1.0, generator=gen)

    rep = Report()
    fx = {"input": x.numpy()}
    for k, v in init.items():
        fx["param." + k] = v

    # ---- D: eval-mode forward first (no power iteration) ---------------------------
    if not is_gen:
        tmod.eval()
        pmod.eval()
        with torch.no_grad():
            t_eval = [o.numpy() for o in tmod(x)]
        with paddle.no_grad():
            p_eval = [o.numpy() for o in pmod(paddle.to_tensor(x.numpy()))]
        for n, a, c in zip(out_names, t_eval, p_eval):
            fx["torch.eval.out." + n] = a
            fx["paddle.eval.out." + n] = c
            rep.check("eval_out", n, a, c)
        # eval must not have touched u/v
        for k, v in tmod.state_dict().items():
            assert np.array_equal(v.numpy(), init[k]), k
        lossw_shapes = [a.shape for a in t_eval]
    else:
        # G has no running stats or SN state: a no-grad pass only gives the output shapes
        with torch.no_grad():
            tmod.eval()
            lossw_shapes = [tuple(o.shape) for o in tmod(x)]
    lossw = [torch.randn(*shp, generator=gen) for shp in lossw_shapes]
    for n, w in zip(out_names, lossw):
        fx["lossw." + n] = w.numpy()

    # ---- train-mode forward + backward --------------------------------------------
    tmod.train()
    pmod.train()
    xt = x.clone().requires_grad_(True)
    t_out = tmod(xt)
    loss_t = sum((o * w).sum() for o, w in zip(t_out, lossw))
    loss_t.backward()

    xp = paddle.to_tensor(x.numpy(), stop_gradient=False)
    p_out = pmod(xp)
    loss_p = paddle.add_n([(o * paddle.to_tensor(w.numpy())).sum() for o, w in zip(p_out, lossw)])
    loss_p.backward()

    for n, a, c in zip(out_names, t_out, p_out):
        a, c = a.detach().numpy(), c.numpy()
        fx["torch.out." + n] = a
        fx["paddle.out." + n] = c
        rep.check("out", n, a, c)

    p_params = dict(pmod.named_parameters())
    for k, p in tmod.named_parameters():
        g_t = p.grad.numpy()
        pg = p_params[k].grad
        assert pg is not None, "no paddle grad for " + k
        g_p = pg.numpy()
        if is_linear_weight(k, lin):
            g_p = g_p.T
        fx["torch.grad." + k] = g_t
        fx["paddle.grad." + k] = g_p
        rep.check("grad", k, g_t, g_p)
    gi_t, gi_p = xt.grad.numpy(), xp.grad.numpy()
    fx["torch.grad.input"] = gi_t
    fx["paddle.grad.input"] = gi_p
    rep.check("grad_input", "input", gi_t, gi_p)

    if not is_gen:
        tsd = tmod.state_dict()
        n_uv = 0
        for k in tsd:
            if k.endswith("_u") or k.endswith("_v"):
                a = tsd[k].numpy()
                c = paddle_state(pmod, k, lin)
                # a length-1 u (Linear with one output) is always +-1 and cannot change
                assert a.size == 1 or not np.array_equal(a, init[k]), "train forward did not update " + k
                fx["torch.after." + k] = a
                fx["paddle.after." + k] = c
                rep.check("after_uv", k, a, c)
                n_uv += 1
        assert n_uv > 0

    meta = {"kind": case["kind"], "batch": str(b), "img_size": str(s), "seed": str(case["seed"]),
            "loss": "sum_o sum(out_o * lossw_o)",
            "paddle_only_keys_ignored": str(len(skipped))}
    if is_gen:
        meta.update(light=str(case["light"]).lower(), ngf=str(case["ngf"]), n_blocks=str(case["n_blocks"]))
    else:
        meta.update(light="false", ndf=str(case["ndf"]), n_layers=str(case["n_layers"]))
    for g, js in rep.as_json().items():
        meta["diff." + g] = js

    fx = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in fx.items()}
    path = os.path.join(out_dir, case["name"] + ".safetensors")
    save_safetensors(path, fx, meta)
    print("%-11s %5d tensors %8.1f KiB -> %s" % (case["name"], len(fx), os.path.getsize(path) / 1024,
                                                 os.path.relpath(path, REPO)))
    for g, v in rep.groups.items():
        print("    %-10s max_abs %.3g (%s)  max_rel %.3g (%s)  n=%d"
              % (g, v["abs"], v["worst_abs"], v["rel"], v["worst_rel"], v["n"]))
    return rep


def check_default_counts():
    with torch.device("meta"):
        counts = {
            "light_generator": ut.count_params(ut.ResnetGenerator(64, 4, 256, light=True)),
            "full_generator": ut.count_params(ut.ResnetGenerator(64, 4, 256, light=False)),
            "global_discriminator": ut.count_params(ut.Discriminator(64, 7)),
            "local_discriminator": ut.count_params(ut.Discriminator(64, 5)),
        }
    for k, v in counts.items():
        print("params %-21s %12s" % (k, format(v, ",")))
        assert v == PT_DEFAULT_COUNTS[k], (k, v, PT_DEFAULT_COUNTS[k])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "networks"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="case names to build (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    check_default_counts()
    PGen, PDis = load_paddlegan()
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        run_case(case, PGen, PDis, args.out)
    print("all torch-vs-paddle checks passed")


if __name__ == "__main__":
    main()
