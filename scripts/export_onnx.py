#!/usr/bin/env python3
"""Export a crackseg checkpoint to PyTorch and ONNX, and check it against `crackseg predict`.

  scripts/export_onnx.py CHECKPOINT.h5 --out model.onnx [--pt model.pt]
                         [--check --crackseg build/cpu/crackseg [--image photo.png]]

Any family (patch_cnn, unet, hourglass_unet, spiral_net, flex_unet) is rebuilt as a
torch.nn.Module whose state_dict names are exactly the checkpoint's /params and /buffers
names (docs/CHECKPOINT.md describes the layout), loaded strictly (every tensor used, every
shape equal), and exported to ONNX (opset 17, dynamic batch, height and width where the
architecture allows). The ONNX graph takes (N, 3, H, W) float RGB in [0, 1] (pixel / 255)
and returns "prob": the crack probability per pixel (N, 1, H, W), or for the patch CNN the
(2s+1)^2 window probabilities per patch (N, (2s+1)^2).

--check runs `crackseg predict --save-npy` on an image (default: a random 61x47 PNG) and
reproduces its whole-image pipeline in NumPy (reflect padding to the size rule, 50%-overlap
tiles averaged for Spiral-Net / hourglass, structured-prediction votes for the patch CNN)
around both the PyTorch module and the ONNX model (onnxruntime); both must equal crackseg's
float32 probabilities within --tol (default 1e-4). Exit 0 on success, 1 on a mismatch,
2 on bad input.

PyTorch, onnx and onnxruntime come from PyPI into a virtual environment this script creates
on first use: $CRACKSEG_EXPORT_VENV, default <repository>/.venv-export (pip install torch
onnx onnxruntime h5py numpy pillow). Nothing else in crackseg needs it; `--no-install`
fails instead of installing. The ctest test_export_onnx runs this script only when that
environment already has torch.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("CRACKSEG_EXPORT_VENV", os.path.join(REPO, ".venv-export"))
PACKAGES = ["torch", "onnx", "onnxruntime", "h5py", "numpy", "pillow"]


def ensure_environment(allow_install):
    """Re-executes this script in the export venv unless torch & co. are importable here."""
    try:
        import torch  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        sys.exit("export_onnx.py: the venv %s lacks one of %s (delete it to reinstall)" % (VENV, " ".join(PACKAGES)))
    if not os.path.exists(py) or subprocess.run([py, "-c", "import torch, onnx, onnxruntime, h5py, numpy"]).returncode:
        if not allow_install:
            sys.exit("export_onnx.py: no PyTorch environment at %s (run without --no-install to create it)" % VENV)
        print("export_onnx.py: creating %s with %s from PyPI (once; several GB)" % (VENV, " ".join(PACKAGES)),
              file=sys.stderr)
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet"] + PACKAGES, check=True)
    os.execv(py, [py] + sys.argv)


# ---- checkpoint ------------------------------------------------------------------------------

def read_checkpoint(path):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") not in ("checkpoint", b"checkpoint"):
            raise ValueError("%s is not a crackseg checkpoint (root attribute kind != 'checkpoint')" % path)
        cfg = f["config"].attrs["json"]
        cfg = json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg)
        cfg["model"] = resolved_model(cfg["model"])
        tensors = {}
        for group in ("params", "buffers"):
            if group in f:
                for name, d in f[group].items():
                    tensors[name] = np.asarray(d[...], dtype=np.float32)
    return cfg, tensors


# ---- the model families as PyTorch modules -----------------------------------------------------

KOBAYASHI_WIDTHS = [64, 128, 256, 512, 512, 512, 512]

# Each family's defaults (src/models/<family>.cpp, `crackseg models`): a run config's [model]
# section may name only the keys it changes.
MODEL_DEFAULTS = {
    "patch_cnn": {"h": 13, "s": 2, "dropout": 0.5, "padding": "same"},
    "unet": {"base": 16, "depth": 4, "dropout": 0.1, "activation": "leaky_relu", "slope": 0.01},
    "hourglass_unet": {"width": 1.0},
    "spiral_net": {"depths": [1, 2, 3, 4, 5, 6, 7], "width": 1.0, "skip": "concat"},
    "flex_unet": {"layers": 8, "base": 16, "kernel": 9, "dropout": 0.05, "classes": 2},
}


def resolved_model(model_cfg):
    name = model_cfg.get("name")
    if name not in MODEL_DEFAULTS:
        raise ValueError("unknown model family '%s' (one of %s)" % (name, ", ".join(MODEL_DEFAULTS)))
    out = dict(MODEL_DEFAULTS[name])
    out.update(model_cfg)
    return out


def scaled(c, width):
    return max(1, int(math.floor(c * width)))


def build(model_cfg):
    """torch.nn.Module for a resolved [model] section; parameter names as crackseg's."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()

        def put(self, name, module):
            parent = self
            parts = name.split(".")
            for p in parts[:-1]:
                if not hasattr(parent, p):
                    parent.add_module(p, nn.Module())
                parent = getattr(parent, p)
            parent.add_module(parts[-1], module)
            return module

        def get(self, name):
            m = self
            for p in name.split("."):
                m = getattr(m, p)
            return m

    def conv(net, name, i, o, k, stride=1, pad=0):
        net.put(name, nn.Conv2d(i, o, k, stride=stride, padding=pad))

    def convt(net, name, i, o, k, stride):
        net.put(name, nn.ConvTranspose2d(i, o, k, stride=stride))

    def bn(net, name, c):
        net.put(name, nn.BatchNorm2d(c, eps=1e-5, momentum=0.1))

    fam = model_cfg["name"]
    net = Net()
    net.family = fam
    if fam == "patch_cnn":
        h, s = int(model_cfg["h"]), int(model_cfg["s"])
        context = model_cfg.get("padding", "same") == "context"
        pooled = h // 2
        in_c = 3
        for stage, width in enumerate([16, 32], start=1):
            for j in (1, 2):
                conv(net, "conv%d_%d" % (stage, j), in_c, width, 3, pad=0 if context else 1)
                in_c = width
        net.put("fc1", nn.Linear(32 * pooled * pooled, 64))
        net.put("fc2", nn.Linear(64, 64))
        net.put("fc3", nn.Linear(64, (2 * s + 1) ** 2))

        def forward(x):
            for stage in (1, 2):
                for j in (1, 2):
                    x = F.relu(net.get("conv%d_%d" % (stage, j))(x))
                x = F.max_pool2d(x, 2, 2)
            x = torch.flatten(x, 1)  # (c, h, w) order, as crackseg's flatten
            x = F.relu(net.fc1(x))
            x = F.relu(net.fc2(x))
            return torch.sigmoid(net.fc3(x))

    elif fam == "unet":
        base, depth = int(model_cfg["base"]), int(model_cfg["depth"])
        leaky = model_cfg.get("activation", "leaky_relu") == "leaky_relu"
        slope = float(model_cfg.get("slope", 0.01))

        def block_params(p, in_c, c):
            for j in (1, 2):
                conv(net, "%s.conv%d" % (p, j), in_c if j == 1 else c, c, 3, pad=1)
                bn(net, "%s.bn%d" % (p, j), c)

        def block(p, x):
            for j in (1, 2):
                x = net.get("%s.bn%d" % (p, j))(net.get("%s.conv%d" % (p, j))(x))
                x = F.leaky_relu(x, slope) if leaky else F.relu(x)
            return x

        in_c = 3
        for l in range(depth):
            block_params("enc%d" % (l + 1), in_c, base << l)
            in_c = base << l
        block_params("bottleneck", in_c, base << depth)
        in_c = base << depth
        for l in range(depth - 1, -1, -1):
            c = base << l
            convt(net, "dec%d.up" % (l + 1), in_c, c, 2, 2)
            block_params("dec%d" % (l + 1), 2 * c, c)
            in_c = c
        conv(net, "head", in_c, 1, 1)

        def forward(x):
            skips = []
            for l in range(depth):
                x = block("enc%d" % (l + 1), x)
                skips.append(x)
                x = F.max_pool2d(x, 2, 2)
            x = block("bottleneck", x)
            for l in range(depth - 1, -1, -1):
                x = net.get("dec%d.up" % (l + 1))(x)
                x = torch.cat([x, skips[l]], 1)
                x = block("dec%d" % (l + 1), x)
            return torch.sigmoid(net.head(x))

    elif fam in ("hourglass_unet", "spiral_net"):
        width = float(model_cfg.get("width", 1.0))

        def down_params(p, i, o):
            conv(net, p + ".conv", i, o, 3, stride=2)
            bn(net, p + ".bn", o)

        def down(p, x):
            return F.relu(net.get(p + ".bn")(net.get(p + ".conv")(x)))

        def up_params(p, i, o, bare):
            convt(net, p + ".convt", i, o, 3, 2)
            if not bare:
                bn(net, p + ".bn", o)

        def up(p, x, bare):
            x = net.get(p + ".convt")(x)
            return x if bare else F.relu(net.get(p + ".bn")(x))

        if fam == "hourglass_unet":
            w = [3] + [scaled(c, width) for c in KOBAYASHI_WIDTHS]
            for j in range(1, 8):
                down_params("enc%d" % j, w[j - 1], w[j])
            in_c = w[7]
            for j in range(7, 0, -1):
                if j < 7:
                    in_c += w[j]
                out_c = 1 if j == 1 else w[j - 1]
                up_params("dec%d" % j, in_c, out_c, j == 1)
                in_c = out_c

            def forward(x):
                enc = [x]
                for j in range(1, 8):
                    enc.append(down("enc%d" % j, enc[j - 1]))
                x = enc[7]
                for j in range(7, 0, -1):
                    if j < 7:
                        x = torch.cat([x, enc[j]], 1)
                    x = up("dec%d" % j, x, j == 1)
                return torch.sigmoid(x)
        else:
            depths = model_cfg["depths"]
            if isinstance(depths, str):
                depths = [int(v) for v in depths.replace(",", "-").split("-")]
            depths = [int(d) for d in depths]
            summed = model_cfg.get("skip", "concat") == "sum"
            w = [1] + [scaled(c, width) for c in KOBAYASHI_WIDTHS]
            for k, d in enumerate(depths):
                p = "m%d" % (k + 1)
                in_c = 3 if k == 0 else 1 if (k == 1 or summed) else k
                for j in range(1, d + 1):
                    down_params("%s.enc%d" % (p, j), in_c, w[j])
                    in_c = w[j]
                for j in range(d, 0, -1):
                    up_params("%s.dec%d" % (p, j), w[j], w[j - 1], False)
            conv(net, "head", len(depths), 1, 1)

            def forward(image):
                maps = []
                for k, d in enumerate(depths):
                    p = "m%d" % (k + 1)
                    if k == 0:
                        x = image
                    elif k == 1:
                        x = maps[0]
                    else:
                        x = sum(maps[1:], maps[0]) if summed else torch.cat(maps, 1)
                    for j in range(1, d + 1):
                        x = down("%s.enc%d" % (p, j), x)
                    for j in range(d, 0, -1):
                        x = up("%s.dec%d" % (p, j), x, False)
                    maps.append(x)
                x = maps[0] if len(maps) == 1 else torch.cat(maps, 1)
                return torch.sigmoid(net.head(x))

    elif fam == "flex_unet":
        layers, base, kernel = int(model_cfg["layers"]), int(model_cfg["base"]), int(model_cfg["kernel"])
        classes = int(model_cfg["classes"])

        def k_of(i):
            return max(min(3, kernel), kernel - 2 * i)

        def level_params(p, in_c, c, k):
            conv(net, p + ".conv1", in_c, c, k, pad=(k - 1) // 2)
            conv(net, p + ".conv2", c, c, k, pad=(k - 1) // 2)

        def level(p, x):  # dropout is the identity at inference
            return F.relu(net.get(p + ".conv2")(F.relu(net.get(p + ".conv1")(x))))

        in_c = 3
        for i in range(layers):
            level_params("enc%d" % (i + 1), in_c, base << i, k_of(i))
            in_c = base << i
        for i in range(layers - 2, -1, -1):
            convt(net, "dec%d.up" % (i + 1), in_c, base << i, 2, 2)
            level_params("dec%d" % (i + 1), 2 * (base << i), base << i, k_of(i))
            in_c = base << i
        conv(net, "head", in_c, classes, 1)

        def forward(x):
            skips = []
            for i in range(layers):
                if i > 0:
                    x = F.max_pool2d(x, 2, 2)
                x = level("enc%d" % (i + 1), x)
                skips.append(x)
            for i in range(layers - 2, -1, -1):
                x = net.get("dec%d.up" % (i + 1))(x)
                x = torch.cat([x, skips[i]], 1)
                x = level("dec%d" % (i + 1), x)
            y = net.head(x)
            if classes == 2:  # crack = class 1
                return torch.softmax(y, 1)[:, 1:2]
            return torch.sigmoid(y)
    else:
        raise ValueError("unknown model family '%s'" % fam)
    net.forward = forward
    return net


def load_weights(net, tensors, path):
    """Strict: every checkpoint tensor lands in a tensor of the same name and shape and every
    module tensor is filled (PyTorch's num_batches_tracked is not used in eval mode)."""
    import torch
    state = net.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    missing = sorted(wanted - set(tensors))
    extra = sorted(set(tensors) - wanted)
    if missing or extra:
        raise ValueError("%s does not match the %s module: missing %s, unexpected %s" % (path, net.family, missing, extra))
    for k in wanted:
        if tuple(state[k].shape) != tuple(tensors[k].shape):
            raise ValueError("%s: %s has shape %s, the module expects %s" % (path, k, tensors[k].shape,
                                                                             tuple(state[k].shape)))
        state[k] = torch.from_numpy(tensors[k].copy())
    net.load_state_dict(state, strict=True)
    net.eval()
    return net


# ---- crackseg's whole-image pipeline (src/train/inference.cpp) in NumPy ------------------------

def size_rule(cfg):
    m = cfg["model"]
    fam = m["name"]
    if fam == "unet":
        return "multiple", 1 << int(m["depth"])
    if fam == "flex_unet":
        return "multiple", 1 << (int(m["layers"]) - 1)
    if fam == "hourglass_unet":
        return "pow2_minus1", 128
    if fam == "spiral_net":
        d = m["depths"]
        if isinstance(d, str):
            d = [int(v) for v in d.replace(",", "-").split("-")]
        return "pow2_minus1", 1 << max(int(v) for v in d)
    return "exact", None


def predict_image(run_net, cfg, img, tile):
    """img: (H, W, 3) float32 in [0, 1]. run_net: (N, 3, h, w) array -> probabilities."""
    import numpy as np
    H, W = img.shape[:2]
    fam = cfg["model"]["name"]
    kind, value = size_rule(cfg)
    if fam in ("unet", "flex_unet"):
        H2 = max(1, -(-H // value)) * value
        W2 = max(1, -(-W // value)) * value
        x = np.pad(img, ((0, H2 - H), (0, W2 - W), (0, 0)), mode="reflect")
        return run_net(x.transpose(2, 0, 1)[None])[0, 0, :H, :W]
    if fam in ("hourglass_unet", "spiral_net"):
        T = tile
        H2, W2 = max(H, T), max(W, T)
        x = np.pad(img, ((0, H2 - H), (0, W2 - W), (0, 0)), mode="reflect")

        def origins(n):
            o, v, stride = [], 0, max(1, T // 2)
            while True:
                if v + T >= n:
                    o.append(n - T)
                    return o
                o.append(v)
                v += stride
        acc = np.zeros((H2, W2), np.float64)
        cnt = np.zeros((H2, W2), np.int64)
        for ty in origins(H2):
            for tx in origins(W2):
                p = run_net(x[ty:ty + T, tx:tx + T].transpose(2, 0, 1)[None])[0, 0]
                acc[ty:ty + T, tx:tx + T] += p
                cnt[ty:ty + T, tx:tx + T] += 1
        return (acc / cnt)[:H, :W].astype(np.float32)
    # patch CNN: one patch per pixel, cut from the symmetric-padded image with the pixel at
    # offset `before`; each patch's (2s+1)^2 probabilities vote for the window around its
    # pixel; the sums are divided by the number of votes.
    m = cfg["model"]
    h, s = int(m["h"]), int(m["s"])
    context = m.get("padding", "same") == "context"
    side = 4 * (h // 2) + 12 if context else 2 * h + 1
    before = h + 6 if context else h
    x = np.pad(img, ((before, side - 1 - before), (before, side - 1 - before), (0, 0)), mode="symmetric")
    votes = np.zeros((H, W), np.float64)
    count = np.zeros((H, W), np.int64)
    k = 2 * s + 1
    coords = [(y, xx) for y in range(H) for xx in range(W)]
    for start in range(0, len(coords), 512):
        chunk = coords[start:start + 512]
        batch = np.stack([x[y:y + side, xx:xx + side] for y, xx in chunk]).transpose(0, 3, 1, 2)
        probs = run_net(np.ascontiguousarray(batch))
        for (y, xx), p in zip(chunk, probs):
            for q in range(k * k):
                yy, x2 = y + q // k - s, xx + q % k - s
                if 0 <= yy < H and 0 <= x2 < W:
                    votes[yy, x2] += p[q]
                    count[yy, x2] += 1
    return np.where(count > 0, votes / np.maximum(count, 1), 0).astype(np.float32)


def example_input(cfg, tile):
    fam = cfg["model"]["name"]
    kind, value = size_rule(cfg)
    if fam in ("unet", "flex_unet"):
        return (value * 2, value * 3)
    if fam in ("hourglass_unet", "spiral_net"):
        return (tile, tile)
    m = cfg["model"]
    h = int(m["h"])
    side = 4 * (h // 2) + 12 if m.get("padding", "same") == "context" else 2 * h + 1
    return (side, side)


def export(net, cfg, tile, out):
    import warnings
    import torch
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
    h, w = example_input(cfg, tile)
    x = torch.rand(1, 3, h, w)
    fam = cfg["model"]["name"]
    axes = {"image": {0: "batch"}, "prob": {0: "batch"}}
    if fam in ("unet", "flex_unet", "hourglass_unet", "spiral_net"):
        axes["image"].update({2: "height", 3: "width"})
        axes["prob"].update({2: "height", 3: "width"})
    kwargs = dict(input_names=["image"], output_names=["prob"], dynamic_axes=axes, opset_version=17)
    try:
        torch.onnx.export(net, (x,), out, dynamo=False, **kwargs)
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(net, (x,), out, **kwargs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--out", help="ONNX file to write (default: CHECKPOINT with .onnx)")
    ap.add_argument("--pt", help="also save the PyTorch state_dict here (torch.save)")
    ap.add_argument("--check", action="store_true", help="compare with `crackseg predict` on an image")
    ap.add_argument("--crackseg", default=os.path.join(REPO, "build", "cpu", "crackseg"), help="crackseg binary")
    ap.add_argument("--image", help="image for --check (default: a random 61x47 PNG)")
    ap.add_argument("--tile", type=int, default=0, help="Spiral-Net / hourglass tile (default: the run's eval.tile)")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest allowed |difference| of probabilities")
    ap.add_argument("--no-install", action="store_true", help="never create the PyTorch venv")
    args = ap.parse_args()
    ensure_environment(not args.no_install)

    import numpy as np
    import torch
    torch.set_grad_enabled(False)
    try:
        cfg, tensors = read_checkpoint(args.checkpoint)
        net = load_weights(build(cfg["model"]), tensors, args.checkpoint)
    except (OSError, KeyError, ValueError) as e:
        print("export_onnx.py: %s" % e, file=sys.stderr)
        return 2
    tile = args.tile or int(cfg.get("eval", {}).get("tile", 255))
    out = args.out or os.path.splitext(args.checkpoint)[0] + ".onnx"
    export(net, cfg, tile, out)
    n_params = sum(p.numel() for p in net.parameters())
    print("%s: %s, %d parameters (%d tensors) -> %s" % (args.checkpoint, cfg["model"]["name"], n_params, len(tensors), out))
    if args.pt:
        torch.save(net.state_dict(), args.pt)
        print("state_dict -> %s" % args.pt)
    if not args.check:
        return 0

    import onnxruntime as ort
    from PIL import Image
    with tempfile.TemporaryDirectory(prefix="crackseg-export-") as tmp:
        image = args.image
        if not image:
            rng = np.random.default_rng(7)
            image = os.path.join(tmp, "random.png")
            Image.fromarray(rng.integers(0, 256, (47, 61, 3), dtype=np.uint8)).save(image)
        cmd = [args.crackseg, "predict", "--checkpoint", args.checkpoint, image, "--out", tmp, "--save-npy",
               "--backend", "onednn"]
        if cfg["model"]["name"] in ("hourglass_unet", "spiral_net"):
            cmd += ["--tile", str(tile)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print("export_onnx.py: %s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr),
                  file=sys.stderr)
            return 1
        ref = np.load(os.path.join(tmp, os.path.splitext(os.path.basename(image))[0] + "_prob.npy"))
        img = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 255.0

        def torch_net(x):
            return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

        sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])

        def onnx_net(x):
            return sess.run(["prob"], {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]

        ok = True
        for label, fn in (("pytorch", torch_net), ("onnx", onnx_net)):
            p = predict_image(fn, cfg, img, tile)
            diff = float(np.max(np.abs(p - ref)))
            good = p.shape == ref.shape and diff <= args.tol
            ok &= good
            print("check %-7s vs crackseg predict on %s (%dx%d): max |diff| %.3g %s" %
                  (label, os.path.basename(image), img.shape[1], img.shape[0], diff, "ok" if good else "FAIL"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
