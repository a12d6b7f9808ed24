#!/usr/bin/env python3
"""Build training-step fixtures for ugatit-rs.

One U-GAT-IT training iteration, as UGATIT-pytorch runs it (D step, then G step, then
the rho clamp), generalised to the adversarial losses and gradient penalties that the
official TensorFlow code offers (lsgan, gan, hinge, wgan-gp, wgan-lp, dragan).  For each
case the script builds the six networks from tools/oracle/ugatit_torch.py with PyTorch's
default init, draws the batches (and the gradient-penalty randomness), runs a few
iterations with torch.optim.Adam, and writes one safetensors file per case into
tests/fixtures/train/, plus tests/fixtures/train/lr_schedule.json.

Before writing, it checks itself:
  * the whole run is replayed in float64 from the same start, and again with the images
    nudged by 1e-7; how far the float32 numbers are from those goes into the metadata
    (`diff.f64.*`, `stability.*`), so consumers know how tight a tolerance each fixture
    supports;
  * for cases marked `paddle_check`, PaddleGAN's own UGATITModel.train_iter (lsgan only)
    runs the first iteration from the same weights and batches, in float64 (losses,
    gradients, parameters and u/v must agree to 1e-7; `diff.paddle64.*`) and in float32
    (`diff.paddle.*`, with the element-flip allowance explained in paddle_check32).

Run from anywhere:  python tools/oracle/make_train_fixtures.py [--out DIR] [--only NAME ...]
"""

import argparse
import importlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep tools/oracle free of __pycache__

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ugatit_torch as ut  # noqa: E402
from make_network_fixtures import (Report, diff_stats, is_linear_weight,  # noqa: E402
                                   linear_prefixes, load_paddlegan, save_safetensors)

GAN_TYPES = ("lsgan", "gan", "hinge", "wgan-gp", "wgan-lp", "dragan")
GP_TYPES = ("wgan-gp", "wgan-lp", "dragan")
GP_WEIGHT = 10.0
WEIGHTS = {"adv": 1.0, "cycle": 10.0, "identity": 10.0, "cam": 1000.0}
ADAM = {"betas": (0.5, 0.999), "weight_decay": 1e-4, "eps": 1e-8}
LR = 1e-4
ITERATIONS = 3

NETS = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")
GENS = NETS[:2]
DISS = NETS[2:]
# which discriminators judge which domain, and the generator output they see
DOMAIN_DS = {"A": ("disGA", "disLA"), "B": ("disGB", "disLB")}
DNAME = {"disGA": "GA", "disLA": "LA", "disGB": "GB", "disLB": "LB"}

# the parameters whose Adam moments are stored after iteration 1
ADAM_PROBES = {
    "optimG": [("genA2B", "gamma.weight"), ("genA2B", "UpBlock1_1.norm1.rho"),
               ("genB2A", "UpBlock2.3.rho"), ("genB2A", "conv1x1.bias")],
    "optimD": [("disGA", "model.1.weight_orig"), ("disGA", "model.1.bias"),
               ("disLB", "gap_fc.weight_orig"), ("disLB", "conv1x1.weight")],
}

# Paddle cross-check tolerances (relative to each tensor's max abs)
PADDLE_PARAM_TOL = 1e-4
PADDLE_UV_TOL = 1e-5
PADDLE_GRAD_TOL = 1e-4          # D gradients of the first D step
PADDLE_MAX_FLIP_FRACTION = 1e-3  # G elements allowed to differ by a flipped Adam step
PADDLE_LOSS_TOL = 1e-5
PADDLE64_TOL = 1e-7              # float64 run: everything, relative to each tensor's max abs

# img 96 is the smallest size the global D (n_layers 7) accepts; ndf 1 keeps the two global
# Ds (the bulk of every snapshot) small.  The seeds were picked with --scan-seeds 10 22:
# their three iterations agree element for element (1e-4 of each tensor's max abs) between
# float32, float64 and float64 with the images nudged by 1e-7, and the fewest elements move
# under a 1e-6 nudge (see "Numerical conditioning" in README.md).
CASES = [
    dict(name="light_lsgan", gan_type="lsgan", light=True, ngf=4, ndf=1, n_res=2, img_size=96,
         batch=2, seed=10, paddle_check=True),
    dict(name="full_lsgan", gan_type="lsgan", light=False, ngf=2, ndf=1, n_res=2, img_size=96,
         batch=1, seed=18, paddle_check=False),
    dict(name="light_wgan-gp", gan_type="wgan-gp", light=True, ngf=4, ndf=1, n_res=2, img_size=96,
         batch=1, seed=17, paddle_check=False),
]
NUDGE_SEED = 5


# --------------------------------------------------------------------------- losses
def bce_const(x, target):
    return F.binary_cross_entropy_with_logits(x, torch.full_like(x, target))


def d_adv(gan_type, real, fake):
    """Discriminator adversarial loss on one output pair (means over all elements)."""
    if gan_type == "lsgan":
        return ((real - 1.0) ** 2).mean() + (fake ** 2).mean()
    if gan_type in ("gan", "dragan"):
        return bce_const(real, 1.0) + bce_const(fake, 0.0)
    if gan_type == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if gan_type in ("wgan-gp", "wgan-lp"):
        return -real.mean() + fake.mean()
    raise ValueError(gan_type)


def g_adv(gan_type, fake):
    """Generator adversarial loss on one discriminator output."""
    if gan_type == "lsgan":
        return ((fake - 1.0) ** 2).mean()
    if gan_type in ("gan", "dragan"):
        return bce_const(fake, 1.0)
    if gan_type in ("hinge", "wgan-gp", "wgan-lp"):
        return -fake.mean()
    raise ValueError(gan_type)


def gp_of(gan_type, out, xhat):
    """Penalty on the per-sample L2 norm of d sum(out) / d xhat, kept differentiable."""
    (g,) = torch.autograd.grad(out.sum(), xhat, create_graph=True, retain_graph=True)
    n = g.flatten(1).norm(dim=1)
    if gan_type == "wgan-lp":
        return GP_WEIGHT * (F.relu(n - 1.0) ** 2).mean()
    return GP_WEIGHT * ((n - 1.0) ** 2).mean()


def check_gp_gradient():
    """The GP terms are differentiated twice (create_graph).  Check d(GP)/d(D params)
    against a central difference in float64 on a small local D in eval mode (no power
    iteration, so repeated forwards are identical)."""
    torch.manual_seed(0)
    D = ut.Discriminator(2, 5).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64) * 2 - 1

    def total():
        xh = x.clone().requires_grad_(True)
        logit, cam, _ = D(xh)
        return gp_of("wgan-gp", logit, xh) + gp_of("wgan-lp", cam, xh)

    params = list(D.parameters())
    D.zero_grad()
    total().backward()
    direction = [torch.randn_like(p) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, direction))
    base = [p.detach().clone() for p in params]
    h, vals = 1e-7, []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, b, d in zip(params, base, direction):
                p.copy_(b + sign * h * d)
        vals.append(float(total().detach()))
    with torch.no_grad():
        for p, b in zip(params, base):
            p.copy_(b)
    numeric = (vals[0] - vals[1]) / (2 * h)
    rel = abs(numeric - analytic) / abs(analytic)
    assert rel < 1e-5, ("gradient-penalty double backward", numeric, analytic)
    print("gp double-backward check: rel diff %.2g" % rel)


# --------------------------------------------------------------------------- networks
def build_nets(case):
    """The six networks, PyTorch default init, drawn from the case seed in NETS order."""
    torch.manual_seed(case["seed"])
    nets = {}
    for name in NETS:
        if name.startswith("gen"):
            nets[name] = ut.ResnetGenerator(case["ngf"], case["n_res"], case["img_size"], case["light"])
        else:
            nets[name] = ut.Discriminator(case["ndf"], 7 if name.startswith("disG") else 5)
    return nets


def nets_from_state(case, state, dtype):
    nets = build_nets(case)
    for name, net in nets.items():
        net.to(dtype)
        net.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in state[name].items()})
        net.train()
    return nets


def snapshot(nets):
    return {n: {k: v.detach().cpu().double().numpy().copy() for k, v in net.state_dict().items()}
            for n, net in nets.items()}


def param_keys(net):
    return [k for k, _ in net.named_parameters()]


def clamp_rho(gen):
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, (ut.adaILN, ut.ILN)):
                m.rho.clamp_(0.0, 1.0)


def draw_inputs(case):
    """Batches and gradient-penalty randomness for every iteration (one generator, fixed order)."""
    gen = torch.Generator().manual_seed(case["seed"] + 7)
    b, s = case["batch"], case["img_size"]
    its = []
    for _ in range(ITERATIONS):
        it = {"real_A": torch.empty(b, 3, s, s).uniform_(-1.0, 1.0, generator=gen),
              "real_B": torch.empty(b, 3, s, s).uniform_(-1.0, 1.0, generator=gen)}
        if case["gan_type"] == "dragan":
            it["noise_A"] = torch.rand(b, 3, s, s, generator=gen)
            it["noise_B"] = torch.rand(b, 3, s, s, generator=gen)
        if case["gan_type"] in GP_TYPES:
            it["alpha_A"] = torch.rand(b, 1, 1, 1, generator=gen)
            it["alpha_B"] = torch.rand(b, 1, 1, 1, generator=gen)
        its.append(it)
    return its


# --------------------------------------------------------------------------- one step
def grab_grads(nets, names, out):
    if out is not None:
        for n in names:
            for k, p in nets[n].named_parameters():
                out["%s.%s" % (n, k)] = p.grad.detach().double().numpy().copy()


def train_step(nets, opt_g, opt_d, it, gan_type, dtype, grads=None):
    """One UGATIT-pytorch iteration; returns {loss name: float}.  With `grads` (a dict),
    also records the raw .grad of every D parameter before D_optim.step (keys `D.<net>.<key>`)
    and of every G parameter before G_optim.step (`G.<net>.<key>`)."""
    x = {k: v.to(dtype) for k, v in it.items()}
    real = {"A": x["real_A"], "B": x["real_B"]}
    L = {}
    w = WEIGHTS

    # ---- D step -------------------------------------------------------------------
    opt_d.zero_grad()
    with torch.no_grad():
        fake = {"B": nets["genA2B"](real["A"])[0], "A": nets["genB2A"](real["B"])[0]}
    d_dom = {}
    for dom in ("A", "B"):
        total = 0.0
        for dn in DOMAIN_DS[dom]:
            D = nets[dn]
            r_logit, r_cam, _ = D(real[dom])
            f_logit, f_cam, _ = D(fake[dom])
            L["D_ad_" + DNAME[dn]] = d_adv(gan_type, r_logit, f_logit)
            L["D_ad_cam_" + DNAME[dn]] = d_adv(gan_type, r_cam, f_cam)
            total = total + L["D_ad_" + DNAME[dn]] + L["D_ad_cam_" + DNAME[dn]]
        if gan_type in GP_TYPES:
            gp_fake = fake[dom]
            if gan_type == "dragan":
                std = real[dom].var(unbiased=False).sqrt()  # tf.nn.moments over all axes
                gp_fake = real[dom] + 0.5 * std * x["noise_" + dom]
            xhat = (real[dom] + x["alpha_" + dom] * (gp_fake - real[dom])).detach().requires_grad_(True)
            gp = 0.0
            for dn in DOMAIN_DS[dom]:
                h_logit, h_cam, _ = nets[dn](xhat)
                L["GP_" + DNAME[dn]] = gp_of(gan_type, h_logit, xhat)
                L["GP_cam_" + DNAME[dn]] = gp_of(gan_type, h_cam, xhat)
                gp = gp + L["GP_" + DNAME[dn]] + L["GP_cam_" + DNAME[dn]]
            L["GP_" + dom] = gp
            total = total + gp
        d_dom[dom] = w["adv"] * total
    L["d_loss_A"], L["d_loss_B"] = d_dom["A"], d_dom["B"]
    L["d_loss"] = d_dom["A"] + d_dom["B"]
    L["d_loss"].backward()
    gd = {} if grads is not None else None
    grab_grads(nets, DISS, gd)
    opt_d.step()

    # ---- G step -------------------------------------------------------------------
    opt_g.zero_grad()
    gA2B, gB2A = nets["genA2B"], nets["genB2A"]
    fake_A2B, cam_A2B, _ = gA2B(real["A"])
    fake_B2A, cam_B2A, _ = gB2A(real["B"])
    fake_A2B2A = gB2A(fake_A2B)[0]
    fake_B2A2B = gA2B(fake_B2A)[0]
    fake_A2A, cam_A2A, _ = gB2A(real["A"])
    fake_B2B, cam_B2B, _ = gA2B(real["B"])
    judged = {"A": fake_B2A, "B": fake_A2B}
    recon = {"A": (fake_A2B2A - real["A"]).abs().mean(), "B": (fake_B2A2B - real["B"]).abs().mean()}
    ident = {"A": (fake_A2A - real["A"]).abs().mean(), "B": (fake_B2B - real["B"]).abs().mean()}
    cam = {"A": bce_const(cam_B2A, 1.0) + bce_const(cam_A2A, 0.0),
           "B": bce_const(cam_A2B, 1.0) + bce_const(cam_B2B, 0.0)}
    g_dom = {}
    for dom in ("A", "B"):
        ad = 0.0
        for dn in DOMAIN_DS[dom]:
            f_logit, f_cam, _ = nets[dn](judged[dom])
            L["G_ad_" + DNAME[dn]] = g_adv(gan_type, f_logit)
            L["G_ad_cam_" + DNAME[dn]] = g_adv(gan_type, f_cam)
            ad = ad + L["G_ad_" + DNAME[dn]] + L["G_ad_cam_" + DNAME[dn]]
        L["G_recon_" + dom], L["G_identity_" + dom], L["G_cam_" + dom] = recon[dom], ident[dom], cam[dom]
        g_dom[dom] = (w["adv"] * ad + w["cycle"] * recon[dom] + w["identity"] * ident[dom]
                      + w["cam"] * cam[dom])
    L["g_loss_A"], L["g_loss_B"] = g_dom["A"], g_dom["B"]
    L["g_loss"] = g_dom["A"] + g_dom["B"]
    L["g_loss"].backward()
    gg = {} if grads is not None else None
    grab_grads(nets, GENS, gg)
    if grads is not None:
        grads.update({"D." + k: v for k, v in gd.items()})
        grads.update({"G." + k: v for k, v in gg.items()})
    opt_g.step()
    clamp_rho(gA2B)
    clamp_rho(gB2A)
    return {k: float(v.detach()) for k, v in L.items()}


def make_optims(nets, lr):
    kw = dict(lr=lr, betas=ADAM["betas"], eps=ADAM["eps"], weight_decay=ADAM["weight_decay"],
              foreach=False, fused=False)
    opt_g = torch.optim.Adam([p for n in GENS for p in nets[n].parameters()], **kw)
    opt_d = torch.optim.Adam([p for n in DISS for p in nets[n].parameters()], **kw)
    return opt_g, opt_d


def adam_probe(nets, opts):
    out = {}
    for oname, probes in ADAM_PROBES.items():
        for net, key in probes:
            p = dict(nets[net].named_parameters())[key]
            st = opts[oname].state[p]
            assert int(st["step"]) == 1, (oname, net, key, st["step"])
            for s in ("exp_avg", "exp_avg_sq"):
                out["%s.%s.%s.%s" % (oname, net, key, s)] = st[s].detach().double().numpy().copy()
    return out


def run_training(case, init, inputs, dtype):
    """Run ITERATIONS steps from `init`; returns losses, after1, after3, the Adam probes and
    the iteration-0 gradients."""
    nets = nets_from_state(case, init, dtype)
    opt_g, opt_d = make_optims(nets, LR)
    losses, after1, probes, grad0 = [], None, None, {}
    for i, it in enumerate(inputs):
        losses.append(train_step(nets, opt_g, opt_d, it, case["gan_type"], dtype, grad0 if i == 0 else None))
        if i == 0:
            after1 = snapshot(nets)
            probes = adam_probe(nets, {"optimG": opt_g, "optimD": opt_d})
    return dict(losses=losses, after1=after1, after3=snapshot(nets), probes=probes, grad0=grad0,
                pkeys={n: param_keys(nets[n]) for n in NETS})


# --------------------------------------------------------------------------- PaddleGAN
def paddle_one_iteration(case, init, it, dtype):
    """PaddleGAN's own UGATITModel.train_iter, one iteration, from the same state, in
    dtype ("float32" or "float64").  Returns the state after it, its two logged losses,
    and the raw gradients each optimiser saw (captured by wrapping the two optimiser
    objects' step())."""
    import paddle

    load_paddlegan()  # registers the generator and discriminator and the stub packages
    ug = importlib.import_module("ppgan.models.ugatit_model")
    paddle.seed(case["seed"])
    old_dtype = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        model = ug.UGATITModel(
            generator=dict(name="ResnetUGATITGenerator", input_nc=3, output_nc=3, ngf=case["ngf"],
                           n_blocks=case["n_res"], img_size=case["img_size"], light=case["light"]),
            discriminator_g=dict(name="UGATITDiscriminator", input_nc=3, ndf=case["ndf"], n_layers=7),
            discriminator_l=dict(name="UGATITDiscriminator", input_nc=3, ndf=case["ndf"], n_layers=5),
            l1_criterion=dict(name="L1Loss"), mse_criterion=dict(name="MSELoss"),
            bce_criterion=dict(name="BCEWithLogitsLoss"),
            adv_weight=WEIGHTS["adv"], cycle_weight=WEIGHTS["cycle"],
            identity_weight=WEIGHTS["identity"], cam_weight=WEIGHTS["cam"])
        # the optimiser section of configs/ugatit_selfie2anime_light.yaml, beta2/epsilon spelled out
        opt_cfg = {o: {"name": "Adam", "net_names": list(names), "weight_decay": ADAM["weight_decay"],
                       "beta1": ADAM["betas"][0], "beta2": ADAM["betas"][1], "epsilon": ADAM["eps"]}
                   for o, names in (("optimG", GENS), ("optimD", DISS))}
        tnets = build_nets(case)
        lins, tkeys, frozen = {}, {}, {}
        for name in NETS:
            lins[name] = linear_prefixes(tnets[name])
            tkeys[name] = list(tnets[name].state_dict())
            psd = model.nets[name].state_dict()
            for k, pt in psd.items():
                if k not in init[name]:
                    continue  # InstanceNorm2D's frozen scale/bias
                arr = init[name][k]
                arr = arr.T if is_linear_weight(k, lins[name]) else arr
                pt.set_value(paddle.to_tensor(np.ascontiguousarray(arr, dtype=dtype), dtype=dtype))
            assert all(k in psd for k in tkeys[name]), name
            frozen[name] = {k: v.numpy().copy() for k, v in psd.items() if k not in init[name]}
            model.nets[name].train()
        optims = model.setup_optimizers(LR, opt_cfg)

        grads = {}

        def capture(opt, tag, names):
            inner = opt.step

            def step():
                for n in names:
                    for k, p in model.nets[n].named_parameters():
                        if p.grad is not None:
                            g = p.grad.numpy().astype(np.float64)
                            grads["%s.%s.%s" % (tag, n, k)] = g.T if is_linear_weight(k, lins[n]) else g
                return inner()
            opt.step = step

        capture(optims["optimD"], "D", DISS)
        capture(optims["optimG"], "G", GENS)
        model.setup_input({"A": it["real_A"].numpy().astype(dtype), "B": it["real_B"].numpy().astype(dtype)})
        model.train_iter(optims)
        after = {}
        for name in NETS:
            sd = model.nets[name].state_dict()
            assert str(sd[tkeys[name][0]].dtype).endswith(dtype), (sd[tkeys[name][0]].dtype, dtype)
            after[name] = {}
            for k in tkeys[name]:
                arr = sd[k].numpy().astype(np.float64)
                after[name][k] = arr.T if is_linear_weight(k, lins[name]) else arr
            for k, v in frozen[name].items():  # InstanceNorm2D's fixed affine must not move
                assert np.array_equal(sd[k].numpy(), v), (name, k)
        losses = {"d_loss": float(model.losses["discriminator_loss"]),
                  "g_loss": float(model.losses["generator_loss"])}
    finally:
        paddle.set_default_dtype(old_dtype)
    return after, losses, grads


def paddle_check64(case, init, inputs, run64, pkeys):
    """PaddleGAN's first iteration in float64 against ours in float64: with rounding out
    of the way the two must agree to near float64 precision."""
    after, losses, pgrads = paddle_one_iteration(case, init, inputs[0], "float64")
    rep = Report()
    for name in NETS:
        for k, ours in run64["after1"][name].items():
            d, rel, _ = rep.add("paddle64.after1", "%s.%s" % (name, k), ours, after[name][k])
            assert rel <= PADDLE64_TOL, ("paddle64 after1", name, k, d, rel)
    for k, ours in run64["grad0"].items():
        d, rel, _ = rep.add("paddle64.grad0", k, ours, pgrads[k])
        assert rel <= PADDLE64_TOL, ("paddle64 grad0", k, d, rel)
    for k in ("d_loss", "g_loss"):
        d, rel, _ = rep.add("paddle64.loss", k, np.array([run64["losses"][0][k]]), np.array([losses[k]]))
        assert rel <= PADDLE64_TOL, ("paddle64 loss", k, d, rel)
    return rep


def paddle_check32(case, init, inputs, run, pkeys):
    """PaddleGAN's first iteration in float32 against our float32 fixture.

    Losses, the D gradients and the u/v vectors must agree tightly.  Parameters are
    compared element-wise: Adam's first step moves each element by about +-lr, the sign
    of its gradient, so an element whose gradient is within the two frameworks' noise
    of zero can land up to 2*lr away.  Elements off by more than PADDLE_PARAM_TOL of the
    tensor's max abs are counted (`paddle.flips_G`, `paddle.flips_D`) and must stay rare;
    every element must still be within 2*lr + tolerance."""
    after, losses, pgrads = paddle_one_iteration(case, init, inputs[0], "float32")
    rep = Report()
    flips, n_el = {"G": 0, "D": 0}, {"G": 0, "D": 0}
    for name in NETS:
        is_gen = name in GENS
        for k, ours in run["after1"][name].items():
            theirs = after[name][k]
            label = "%s.%s" % (name, k)
            if k not in pkeys[name]:
                d, rel, _ = rep.add("paddle.after1_uv", label, ours, theirs)
                assert d <= PADDLE_UV_TOL, ("after1 u/v", label, d)
                continue
            d, rel, scale = rep.add("paddle.after1_" + ("G" if is_gen else "D"), label, ours, theirs)
            rep.add("paddle.delta1_" + ("G" if is_gen else "D"), label, ours - init[name][k],
                    theirs - init[name][k])
            tol = PADDLE_PARAM_TOL * scale
            side = "G" if is_gen else "D"
            flips[side] += int(np.sum(np.abs(ours - theirs) > tol))
            n_el[side] += ours.size
            assert d <= 2.0 * LR * (1 + 1e-3) + tol, ("after1 beyond one flipped Adam step", label, d)
    for side in ("G", "D"):
        assert flips[side] <= PADDLE_MAX_FLIP_FRACTION * n_el[side], ("too many elements differ", side,
                                                                      flips[side], n_el[side])
        rep.groups["paddle.flips_" + side] = {"abs": float(flips[side]), "rel": flips[side] / n_el[side],
                                              "worst_abs": "elements", "worst_rel": "fraction",
                                              "n": n_el[side]}
    for k, ours in run["grad0"].items():
        grp = "paddle.grad0_" + k[0]
        d, rel, _ = rep.add(grp, k, ours, pgrads[k])
        if k[0] == "D":
            assert rel <= PADDLE_GRAD_TOL, ("grad D", k, rel)
    for k in ("d_loss", "g_loss"):
        ours, theirs = run["losses"][0][k], losses[k]
        rel = abs(ours - theirs) / max(abs(ours), 1e-30)
        assert rel <= PADDLE_LOSS_TOL, (k, ours, theirs)
        rep.add("paddle.loss", k, np.array([ours]), np.array([theirs]))
    return rep


# --------------------------------------------------------------------------- conditioning
def compare_runs(ref, other, pkeys):
    """Parameter elements (after1 and after3) that differ by more than 1e-4 of their tensor's
    max abs, and the worst relative difference of the iteration-0 gradients."""
    bad, total = 0, 0
    for tag in ("after1", "after3"):
        for n in NETS:
            for k in pkeys[n]:
                a, b = ref[tag][n][k], other[tag][n][k]
                bad += int(np.sum(np.abs(a - b) > 1e-4 * np.abs(a).max()))
                total += a.size
    worst = max(diff_stats(ref["grad0"][k], other["grad0"][k])[1] for k in ref["grad0"])
    return {"param_elements_off": bad, "param_elements": total, "grad0_max_rel": float("%.3g" % worst)}


def stability(case, init, inputs, run64, pkeys, eps):
    """Replay in float64 with every real image nudged by eps * N(0,1) and compare."""
    gen = torch.Generator().manual_seed(NUDGE_SEED)
    nudged = [{k: (v + eps * torch.randn(v.shape, generator=gen) if k.startswith("real") else v)
               for k, v in it.items()} for it in inputs]
    return compare_runs(run64, run_training(case, init, nudged, torch.float64), pkeys)


def scan_seeds(lo, hi, only):
    """Print the conditioning of each case for seeds lo..hi-1 (nothing is written)."""
    for base in CASES:
        if only and base["name"] not in only:
            continue
        for seed in range(lo, hi):
            case = dict(base, seed=seed)
            nets = build_nets(case)
            init = snapshot(nets)
            pkeys = {n: param_keys(nets[n]) for n in NETS}
            inputs = draw_inputs(case)
            run64 = run_training(case, init, inputs, torch.float64)
            res = {"float32": compare_runs(run64, run_training(case, init, inputs, torch.float32), pkeys)}
            if res["float32"]["param_elements_off"] == 0:
                for eps in (1e-7, 1e-6):
                    res["nudge%g" % eps] = stability(case, init, inputs, run64, pkeys, eps)
            print(case["name"], seed, json.dumps(res), flush=True)


# --------------------------------------------------------------------------- one case
def run_case(case, out_dir, with_paddle):
    assert case["gan_type"] in GAN_TYPES, case["gan_type"]
    torch.set_default_dtype(torch.float32)
    nets = build_nets(case)
    init = snapshot(nets)
    pkeys = {n: param_keys(nets[n]) for n in NETS}
    inputs = draw_inputs(case)

    run32 = run_training(case, init, inputs, torch.float32)
    run64 = run_training(case, init, inputs, torch.float64)

    # every parameter must have moved after iteration 1, except a rho held at 0 by the clamp
    n_clamped = 0
    for n in NETS:
        for k in pkeys[n]:
            a1 = run32["after1"][n][k]
            moved = a1 != init[n][k]
            if k.endswith("rho"):
                assert np.all(moved | (a1 == 0.0)), ("no update", n, k)
                n_clamped += int(np.sum(a1 == 0.0))
            else:
                assert moved.all(), ("no update", n, k)

    rep = Report()
    for tag in ("after1", "after3"):
        for n in NETS:
            for k, v in run32[tag][n].items():
                rep.add("f64." + tag, "%s.%s" % (n, k), run64[tag][n][k], v)
    for n in NETS:
        for k in pkeys[n]:
            rep.add("f64.delta1", "%s.%s" % (n, k), run64["after1"][n][k] - init[n][k],
                    run32["after1"][n][k] - init[n][k])
    for i in range(ITERATIONS):
        for k, v in run32["losses"][i].items():
            rep.add("f64.loss", "iter%d.%s" % (i, k), np.array([run64["losses"][i][k]]), np.array([v]))
    for k, v in run32["probes"].items():
        rep.add("f64.adam", k, run64["probes"][k], v)
    for k, v in run32["grad0"].items():
        rep.add("f64.grad0_" + k[0], k, run64["grad0"][k], v)

    meta_extra = {}
    if with_paddle and case["paddle_check"]:
        rep.groups.update(paddle_check64(case, init, inputs, run64, pkeys).groups)
        rep.groups.update(paddle_check32(case, init, inputs, run32, pkeys).groups)
        # the yardstick for the Paddle differences: the same float64 run with images
        # nudged by 1e-6 (about Paddle's forward noise)
        stab = stability(case, init, inputs, run64, pkeys, 1e-6)
        meta_extra["stability.nudge1e-6"] = json.dumps(stab, separators=(",", ":"))
    stab = stability(case, init, inputs, run64, pkeys, 1e-7)
    meta_extra["stability.nudge1e-7"] = json.dumps(stab, separators=(",", ":"))
    meta_extra["stability.float32"] = json.dumps(compare_runs(run64, run32, pkeys), separators=(",", ":"))

    fx = {}
    for n in NETS:
        for k, v in init[n].items():
            fx["init.%s.%s" % (n, k)] = v
            fx["after1.%s.%s" % (n, k)] = run32["after1"][n][k]
            fx["after3.%s.%s" % (n, k)] = run32["after3"][n][k]
        for k in pkeys[n]:
            # fp32 after1 minus fp32 init, so consumers can recompute it exactly
            fx["delta1.%s.%s" % (n, k)] = (run32["after1"][n][k].astype(np.float32)
                                           - init[n][k].astype(np.float32))
    for k, v in run32["probes"].items():
        fx["after1." + k] = v
    for k, v in run32["grad0"].items():
        fx["iter0.grad." + k] = v
    for i, it in enumerate(inputs):
        for k, v in it.items():
            fx["iter%d.%s" % (i, k)] = v.numpy()
        for k, v in run32["losses"][i].items():
            fx["iter%d.loss.%s" % (i, k)] = np.array(v)

    meta = {
        "gan_type": case["gan_type"], "light": str(case["light"]).lower(), "ngf": str(case["ngf"]),
        "ndf": str(case["ndf"]), "n_res": str(case["n_res"]), "img_size": str(case["img_size"]),
        "batch": str(case["batch"]), "seed": str(case["seed"]), "lr": repr(LR),
        "betas": json.dumps(list(ADAM["betas"])), "weight_decay": repr(ADAM["weight_decay"]),
        "eps": repr(ADAM["eps"]), "gp_weight": repr(GP_WEIGHT),
        "weights": json.dumps(WEIGHTS, separators=(",", ":")), "iterations": str(ITERATIONS),
        "n_layers_global": "7", "n_layers_local": "5", "torch_version": torch.__version__,
        "rho_clamped_at_0_after1": str(n_clamped),
        "adam_probes": json.dumps({o: ["%s.%s" % p for p in ps] for o, ps in ADAM_PROBES.items()},
                                  separators=(",", ":")),
    }
    for g, js in rep.as_json().items():
        meta["diff." + g] = js
    meta.update(meta_extra)

    fx = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in fx.items()}
    path = os.path.join(out_dir, case["name"] + ".safetensors")
    save_safetensors(path, fx, meta)
    print("%-14s %5d tensors %8.1f KiB -> %s" % (case["name"], len(fx), os.path.getsize(path) / 1024,
                                                  os.path.relpath(path, REPO)))
    print("    losses iter0: d_loss %.6f  g_loss %.6f" % (run32["losses"][0]["d_loss"], run32["losses"][0]["g_loss"]))
    for g, v in rep.groups.items():
        print("    %-17s max_abs %.3g (%s)  max_rel %.3g (%s)  n=%d"
              % (g, v["abs"], v["worst_abs"], v["rel"], v["worst_rel"], v["n"]))
    return rep


# --------------------------------------------------------------------------- lr schedule
def write_lr_schedule(out_dir, iteration=20, lr=1e-4):
    """UGATIT-pytorch's linear decay: from step iteration//2 + 1 on, the lr of both
    optimisers drops by lr/(iteration//2) at the start of every step (loop from step 1)."""
    cur, used = lr, []
    for step in range(1, iteration + 1):
        if step > iteration // 2:
            cur -= lr / (iteration // 2)
        used.append(cur)
    doc = {"iteration": iteration, "decay_flag": True, "lr": lr,
           "steps": list(range(1, iteration + 1)), "lr_used": used,
           "rule": "if decay_flag and step > iteration//2: lr -= lr0/(iteration//2), before the step"}
    path = os.path.join(out_dir, "lr_schedule.json")
    with open(path, "w") as f:  # one key per line, lists on one line
        f.write("{\n" + ",\n".join(" %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in doc.items())
                + "\n}\n")
    with open(path) as f:
        assert json.load(f) == doc
    print("lr_schedule    -> %s (last lr %r)" % (os.path.relpath(path, REPO), used[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "train"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="case names to build (default: all)")
    ap.add_argument("--no-paddle", action="store_true", help="skip the PaddleGAN cross-check")
    ap.add_argument("--scan-seeds", nargs=2, type=int, metavar=("LO", "HI"),
                    help="only print the conditioning of seeds LO..HI-1 for each case")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.scan_seeds:
        scan_seeds(args.scan_seeds[0], args.scan_seeds[1], args.only)
        return
    os.makedirs(args.out, exist_ok=True)

    write_lr_schedule(args.out)
    if any(c["gan_type"] in GP_TYPES for c in CASES if not args.only or c["name"] in args.only):
        check_gp_gradient()
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        run_case(case, args.out, not args.no_paddle)
    print("done")


if __name__ == "__main__":
    main()
