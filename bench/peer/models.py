"""The three `crackseg bench` models in PyTorch, layer for layer (src/models/*.cpp).

Same layers, same shapes, same parameter counts as crackseg's graphs; peer_bench.py checks
the counts (and the forward multiply-adds) against `crackseg models --json` before it times
anything. Initialisation does not matter for throughput and is left at PyTorch's defaults.
"""
import torch
from torch import nn

# Kobayashi's encoder widths (src/models/families.hpp), scaled by max(1, floor(c * width)).
KOBAYASHI_WIDTHS = [64, 128, 256, 512, 512, 512, 512]


def scaled(c, width):
    return max(1, int(c * width))


class PatchCNN(nn.Module):
    """Fan et al. 2018, padding = "same": (N, 3, 2h+1, 2h+1) -> (N, (2s+1)^2) logits."""

    def __init__(self, h=13, s=2, dropout=0.5, perturb=0):
        super().__init__()
        pooled = h // 2
        c1, c2 = 16 - perturb, 32
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(16, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * pooled * pooled, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(64, (2 * s + 1) ** 2),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def unet_block(in_c, c, slope, dropout):
    """[conv3x3 'same', BN, LeakyReLU, dropout] x 2."""
    layers = []
    for j in range(2):
        layers += [nn.Conv2d(in_c if j == 0 else c, c, 3, padding=1), nn.BatchNorm2d(c, eps=1e-5, momentum=0.1),
                   nn.LeakyReLU(slope, inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """src/models/unet.cpp: encoder blocks + maxpool, bottleneck, convT 2x2 + concat [up, skip] + block, 1x1 head."""

    def __init__(self, base=16, depth=4, dropout=0.1, slope=0.01, perturb=0):
        super().__init__()
        self.enc = nn.ModuleList()
        in_c = 3
        for level in range(depth):
            c = base << level
            self.enc.append(unet_block(in_c, c, slope, dropout))
            in_c = c
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = unet_block(in_c, base << depth, slope, dropout)
        in_c = base << depth
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for level in reversed(range(depth)):
            c = base << level
            self.up.append(nn.ConvTranspose2d(in_c, c, 2, stride=2))
            out_c = c - (perturb if level == 0 else 0)
            self.dec.append(unet_block(2 * c, out_c, slope, dropout))
            in_c = out_c
        self.head = nn.Conv2d(in_c, 1, 1)

    def forward(self, x):
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            x = block(torch.cat([up(x), skip], 1))
        return self.head(x)


class SpiralNet(nn.Module):
    """src/models/spiral_net.cpp, skip = "concat": chained skip-free hourglass modules.

    Module k of depth d: encoders 1..d (conv3x3 stride 2 no padding, BN, ReLU) then decoders
    d..1 (convT3x3 stride 2 no padding, BN, ReLU) -> one map. Module 1 reads the image, module
    2 map 1, module k the concatenation of maps 1..k-1; a 1x1 conv over all maps is the logit.
    """

    def __init__(self, depths=(1, 2, 3, 4, 5, 6, 7), width=0.25, perturb=0):
        super().__init__()
        w = [1] + [scaled(c, width) for c in KOBAYASHI_WIDTHS]
        w[1] -= perturb
        self.mods = nn.ModuleList()
        for k, d in enumerate(depths):
            in_c = 3 if k == 0 else (1 if k == 1 else k)
            layers = []
            for j in range(1, d + 1):
                layers += [nn.Conv2d(in_c, w[j], 3, stride=2), nn.BatchNorm2d(w[j]), nn.ReLU(inplace=True)]
                in_c = w[j]
            for j in range(d, 0, -1):
                layers += [nn.ConvTranspose2d(w[j], w[j - 1], 3, stride=2), nn.BatchNorm2d(w[j - 1]),
                           nn.ReLU(inplace=True)]
            self.mods.append(nn.Sequential(*layers))
        self.head = nn.Conv2d(len(depths), 1, 1)

    def forward(self, x):
        maps = []
        for k, m in enumerate(self.mods):
            inp = x if k == 0 else (maps[0] if k == 1 else torch.cat(maps, 1))
            maps.append(m(inp))
        return self.head(maps[0] if len(maps) == 1 else torch.cat(maps, 1))


# The `crackseg bench` cases (launch/commands/bench.cpp): name -> (crackseg model section,
# builder, input side, batch, output shape per sample).
CASES = {
    "patch_cnn": ({"name": "patch_cnn", "h": 13, "s": 2}, lambda p: PatchCNN(13, 2, perturb=p), 27, 128, (25,)),
    "unet": ({"name": "unet", "base": 16, "depth": 4}, lambda p: UNet(16, 4, perturb=p), 400, 4, (1, 400, 400)),
    "spiral_net": ({"name": "spiral_net", "width": 0.25}, lambda p: SpiralNet(width=0.25, perturb=p), 255, 4,
                   (1, 255, 255)),
}


def num_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_macs_per_sample(model, side):
    """Multiply-adds of conv / convT / linear for one sample, counted as crackseg counts them
    (src/layers/shapes.cpp): conv out_numel * in_c * k^2, convT in_numel * out_c * k^2,
    linear in_f * out_f."""
    total = [0]

    def hook(mod, inputs, out):
        if isinstance(mod, nn.ConvTranspose2d):
            total[0] += inputs[0][0].numel() * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Conv2d):
            total[0] += out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total[0]
