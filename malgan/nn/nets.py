"""Torch GAN networks: the report's DCGAN and a conditional BigGAN-style GAN."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# Side of the square cells every network here is built for (matches `malgan.decode.IMG_SIZE`);
# each network carries it as ``img_size``, which export and the app read.
IMG_SIZE = 64
RGB = 3

# ---------------------------------------------------------------------------------------------
# The report's Keras DCGAN.
# ---------------------------------------------------------------------------------------------

DCGAN_Z_DIM = 100
DCGAN_BASE_SIZE = 4  # the generator starts from a 4x4 map and doubles it four times
DCGAN_G_WIDTHS = (256, 256, 256, 128, 128)  # dense map, then the output of each up-block
DCGAN_D_WIDTHS = (32, 64, 128, 256, 512)
DCGAN_D_STRIDES = (2, 2, 2, 1, 1)
# Keras `BatchNormalization(momentum=0.8)` keeps 0.8 of the old running stats; torch's momentum is
# the weight of the new batch, so 1 - 0.8. Keras' default epsilon is 1e-3 (torch's is 1e-5).
KERAS_BN_MOMENTUM = 0.2
KERAS_BN_EPS = 1e-3
LEAKY_SLOPE = 0.2
DCGAN_D_DROPOUT = 0.25
KERNEL = 3


def keras_init(module: nn.Module) -> None:
    """Re-initialise like Keras defaults: Glorot-uniform kernels and zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _keras_same_pad(size: int, stride: int) -> tuple[int, int]:
    """Keras 'same' padding (before, after) of a 3x3 convolution on one axis.

    Keras puts the odd pixel of padding after the image, which torch's symmetric `padding`
    cannot express for a stride-2 convolution on an even size.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + KERNEL - size, 0)
    return total // 2, total - total // 2


class DCGANGenerator(nn.Module):
    """The report's Keras DCGAN generator (Radford et al. 2016), one per class.

    Dense(100 -> 4*4*256) + ReLU, reshape to [256, 4, 4], then four blocks of (UpSampling2D x2
    nearest, Conv3x3 'same', BatchNormalization(momentum=0.8), ReLU) with 256, 256, 128 and 128
    channels, then Conv3x3 to RGB and tanh. BatchNorm uses Keras' momentum 0.8 (torch 0.2) and
    Keras' epsilon 1e-3; weights start from Keras' Glorot-uniform. 2,041,475 trainable parameters.

    Args:
        z_dim: Length of the latent vector.
    """

    def __init__(self, *, z_dim: int = DCGAN_Z_DIM) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.img_size = IMG_SIZE
        self.base_channels = DCGAN_G_WIDTHS[0]
        self.dense = nn.Linear(z_dim, self.base_channels * DCGAN_BASE_SIZE**2)
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise(DCGAN_G_WIDTHS):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, KERNEL, padding=KERNEL // 2),
                nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
                nn.ReLU(),
            ]
        layers += [nn.Conv2d(DCGAN_G_WIDTHS[-1], RGB, KERNEL, padding=KERNEL // 2), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents [N, z_dim] to images [N, 3, 64, 64] in [-1, 1]."""
        h = F.relu(self.dense(z))
        h = h.reshape(-1, self.base_channels, DCGAN_BASE_SIZE, DCGAN_BASE_SIZE)  # [N, 256, 4, 4]
        return self.body(h)


class DCGANDiscriminator(nn.Module):
    """The report's Keras DCGAN discriminator; returns logits (the sigmoid lives in the loss).

    Conv3x3 stride 2 -> 32 (LeakyReLU 0.2, Dropout 0.25, no BatchNorm); Conv s2 -> 64, then
    ZeroPadding2D(((0, 1), (0, 1))) to 17x17, BatchNorm, LeakyReLU, Dropout; Conv s2 -> 128;
    Conv s1 -> 256; Conv s1 -> 512 (each with BatchNorm, LeakyReLU, Dropout); Flatten
    (9*9*512 = 41,472 at 64x64) -> Dense(1). Convolutions pad like Keras 'same' (the odd pixel
    after the image). 1,611,969 trainable parameters at 64x64.

    Args:
        img_size: Side of the square input images.
    """

    def __init__(self, *, img_size: int = IMG_SIZE) -> None:
        super().__init__()
        self.img_size = img_size
        layers: list[nn.Module] = []
        size, c_in = img_size, RGB
        for i, (c_out, stride) in enumerate(zip(DCGAN_D_WIDTHS, DCGAN_D_STRIDES, strict=True)):
            before, after = _keras_same_pad(size, stride)
            layers += [
                nn.ZeroPad2d((before, after, before, after)),
                nn.Conv2d(c_in, c_out, KERNEL, stride=stride),
            ]
            size = math.ceil(size / stride)
            if i == 1:
                # The report pads the 16x16 map to 17x17 after the second convolution.
                layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
                size += 1
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM))
            layers += [nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(DCGAN_D_DROPOUT)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * size * size, 1)
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images [N, 3, H, W] in [-1, 1]; returns real-vs-fake logits [N]."""
        return self.head(self.body(x)).squeeze(1)


# ---------------------------------------------------------------------------------------------
# Class-conditional BigGAN-style GAN.
# ---------------------------------------------------------------------------------------------

COND_Z_DIM = 128
# Base width of both conditional networks (BigGAN uses one ch for G and D). At 48 the generator
# makes one cell in about 9 ms with ONNX Runtime on two CPU cores; 56 takes 13 ms, 40 takes 7 ms.
COND_CH = 48
SHARED_EMBED_DIM = 128  # BigGAN's shared class-embedding width
COND_BASE_SIZE = 4
# Width multipliers of ch: the 4x4 input map, then the output of each up-block (4 -> 64 pixels).
COND_G_MULTIPLIERS = (8, 4, 2, 2, 1)
# Width multipliers of ch for the discriminator blocks; the last block keeps the 4x4 resolution.
COND_D_MULTIPLIERS = (1, 2, 4, 8, 16)


def _orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialisation: orthogonal weights, zero biases (Brock et al. 2019)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear | nn.Embedding):
            nn.init.orthogonal_(layer.weight)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias are linear in a conditioning vector.

    Conditional BatchNorm (de Vries et al. 2017; Dumoulin et al. 2017, "A Learned Representation
    for Artistic Style"): normalise without an affine transform, then scale by 1 + W_g c and shift
    by W_b c. The conditioning vector c is linear in the class weights, so a blend of classes
    blends their gains and biases. W_g and W_b start at zero, so the layer starts as plain
    BatchNorm: the generator has no spectral norm to bound an unlucky initial gain. In eval mode
    the running statistics make every sample independent of the rest of the batch.

    Args:
        num_features: Channels of the normalised map.
        cond_dim: Length of the conditioning vector.
    """

    def __init__(self, *, num_features: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features)
        self.bias = nn.Linear(cond_dim, num_features)
        self.reset_conditioning()

    def reset_conditioning(self) -> None:
        """Zero the conditioning layers, making this a plain (gain 1, bias 0) BatchNorm."""
        for layer in (self.gain, self.bias):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Normalise x [N, C, H, W] and modulate it with cond [N, cond_dim]."""
        gain = 1.0 + self.gain(cond)[:, :, None, None]
        bias = self.bias(cond)[:, :, None, None]
        return self.norm(x) * gain + bias


class GeneratorBlock(nn.Module):
    """BigGAN residual up-block: CBN, ReLU, upsample x2, conv3x3, CBN, ReLU, conv3x3.

    The shortcut is a 1x1 convolution then the nearest upsample; the two commute, and convolving
    first costs a quarter of the multiply-adds.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        cond_dim: Length of the conditioning vector fed to both batch norms.
    """

    def __init__(self, *, in_channels: int, out_channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(num_features=in_channels, cond_dim=cond_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, KERNEL, padding=KERNEL // 2)
        self.bn2 = ConditionalBatchNorm2d(num_features=out_channels, cond_dim=cond_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, KERNEL, padding=KERNEL // 2)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Upsample x [N, C_in, H, W] to [N, C_out, 2H, 2W]."""
        h = self.upsample(F.relu(self.bn1(x, cond)))
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, cond)))
        return h + self.upsample(self.shortcut(x))


class CondGenerator(nn.Module):
    """Class-conditional BigGAN-style generator (Brock et al. 2019) for 64x64 cells.

    Class weights y [N, num_classes] (one-hot for a class, a convex blend to interpolate classes)
    go through a shared linear class embedding. As in BigGAN-deep, the embedding is concatenated
    to z and that vector both feeds the input linear layer (-> [16ch, 4, 4]) and conditions every
    batch norm (conditional BatchNorm, Dumoulin et al. 2017; de Vries et al. 2017). Four residual
    up-blocks with widths 8ch, 4ch, 2ch, ch bring the map to 64x64; BatchNorm, ReLU, a 3x3
    convolution to RGB and tanh give the image. No spectral norm or attention, so the exported
    graph holds only Gemm, Conv, BatchNormalization, Resize, Relu and Tanh and exports with either
    ONNX exporter. The default ch=48 (9,951,427 parameters) generates one cell in about 9 ms
    (batch 1, median) with ONNX Runtime on two CPU cores.

    Args:
        z_dim: Length of the latent vector.
        num_classes: Number of classes in y.
        ch: Base width; the block widths are multiples of it.
    """

    def __init__(self, *, z_dim: int = COND_Z_DIM, num_classes: int = 2, ch: int = COND_CH) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.img_size = IMG_SIZE
        self.ch = ch
        widths = [ch * m for m in COND_G_MULTIPLIERS]
        cond_dim = z_dim + SHARED_EMBED_DIM
        self.base_channels = widths[0]
        self.embed = nn.Linear(num_classes, SHARED_EMBED_DIM, bias=False)
        self.dense = nn.Linear(cond_dim, widths[0] * COND_BASE_SIZE**2)
        self.blocks = nn.ModuleList(
            GeneratorBlock(in_channels=c_in, out_channels=c_out, cond_dim=cond_dim)
            for c_in, c_out in pairwise(widths)
        )
        self.out_norm = nn.BatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], RGB, KERNEL, padding=KERNEL // 2)
        _orthogonal_init(self)
        for layer in self.modules():
            if isinstance(layer, ConditionalBatchNorm2d):
                layer.reset_conditioning()

    def _stem(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = torch.cat([z, self.embed(y)], dim=1)  # [N, z_dim + SHARED_EMBED_DIM]
        h = self.dense(cond).unflatten(1, (self.base_channels, COND_BASE_SIZE, COND_BASE_SIZE))
        return h, cond

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Generate images [N, 3, 64, 64] in [-1, 1] from z [N, z_dim] and y [N, num_classes]."""
        h, cond = self._stem(z, y)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.out_conv(F.relu(self.out_norm(h))))

    def early_features(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Flattened activations after the first up-block, [N, 8ch*8*8], for GANSpace PCA."""
        h, cond = self._stem(z, y)
        return self.blocks[0](h, cond).flatten(1)


def _sn(layer: nn.Module) -> nn.Module:
    """Orthogonal init (BigGAN) then spectral norm (Miyato et al. 2018), in that order so the
    parametrisation wraps the initialised weight."""
    _orthogonal_init(layer)
    return spectral_norm(layer)


class DiscriminatorBlock(nn.Module):
    """BigGAN residual down-block with spectral norm on every convolution.

    Pre-activation (ReLU, conv3x3, ReLU, conv3x3, avg-pool 2) except for the first block, which
    sees raw pixels and skips the leading ReLU; there the shortcut pools before its 1x1
    convolution (Miyato et al. 2018's "optimized" block), elsewhere after it.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        downsample: Halve the resolution with 2x2 average pooling.
        first: This block reads the image.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, downsample: bool, first: bool = False
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.first = first
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, KERNEL, padding=KERNEL // 2))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, KERNEL, padding=KERNEL // 2))
        self.learnable_shortcut = downsample or in_channels != out_channels
        self.shortcut = (
            _sn(nn.Conv2d(in_channels, out_channels, 1))
            if self.learnable_shortcut
            else nn.Identity()
        )

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x [N, C_in, H, W] to [N, C_out, H/2, W/2] (or H, W without downsampling)."""
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        h = self._pool(h)
        skip = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + skip


class ProjectionDiscriminator(nn.Module):
    """Spectral-normalised residual discriminator with a class projection, for the hinge loss.

    Spectral normalisation (Miyato et al. 2018) on every layer; BigGAN-style down-blocks with
    widths ch, 2ch, 4ch, 8ch (64 -> 4 pixels) and a last 16ch block at 4x4; ReLU and global sum
    pooling give h. The logit is linear(h) + <embed(y), h>, the projection discriminator of
    Miyato & Koyama (2018). The default ch=48 has 10,995,985 parameters. In eval mode the
    spectral-norm parametrisation exports with `torch.onnx.export(..., dynamo=True)`; the
    TorchScript exporter needs `torch.nn.utils.parametrize.remove_parametrizations` first.

    With ``aux_classifier`` a linear head on h also classifies the image (AC-GAN, Odena et al.
    2017): trained on real cells, it keeps D's features looking for what tells the classes
    apart, such as a parasite a few pixels wide.

    With ``minibatch_std`` the last block also sees, as one more channel, how much the images
    of each group of that many consecutive images differ (Karras et al. 2018), so a generator
    that draws every cell alike is told apart from real cells. Groups never straddle real and
    generated images as long as each part of a batch is a multiple of the group size.

    Args:
        num_classes: Number of classes.
        ch: Base width; the block widths are multiples of it.
        aux_classifier: Add the auxiliary classification head.
        minibatch_std: Group size of the minibatch standard deviation channel (0: none).
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        ch: int = COND_CH,
        aux_classifier: bool = False,
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.img_size = IMG_SIZE
        self.ch = ch
        self.minibatch_std = minibatch_std
        widths = [RGB] + [ch * m for m in COND_D_MULTIPLIERS]
        last = len(widths) - 2
        self.blocks = nn.Sequential(
            *(
                DiscriminatorBlock(
                    in_channels=c_in + (1 if i == last and minibatch_std else 0),
                    out_channels=c_out,
                    downsample=i < last,
                    first=i == 0,
                )
                for i, (c_in, c_out) in enumerate(pairwise(widths))
            )
        )
        self.feature_dim = widths[-1]
        self.linear = _sn(nn.Linear(self.feature_dim, 1))
        self.embed = _sn(nn.Embedding(num_classes, self.feature_dim))
        self.aux = _sn(nn.Linear(self.feature_dim, num_classes)) if aux_classifier else None

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features h [N, 16ch] of images x."""
        h = self.blocks[:-1](x)
        if self.minibatch_std:
            h = torch.cat([h, group_std(h, self.minibatch_std)], dim=1)
        return F.relu(self.blocks[-1](h)).sum(dim=(2, 3))

    def _score(self, h: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
        projection = (self.embed(y_index) * h).sum(dim=1)
        return self.linear(h).squeeze(1) + projection

    def forward(self, x: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
        """Score images x [N, 3, 64, 64] of classes y_index (int64 [N]); returns logits [N]."""
        return self._score(self._features(x), y_index)

    def score_and_classify(
        self, x: torch.Tensor, y_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Realness logits [N] and auxiliary class logits [N, num_classes] in one pass.

        Raises:
            ValueError: If the network was built without the auxiliary head.
        """
        if self.aux is None:
            raise ValueError("this discriminator has no auxiliary classifier")
        h = self._features(x)
        return self._score(h, y_index), self.aux(h)


def group_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """One channel [N, 1, H, W]: the mean standard deviation over each group of ``group``
    consecutive samples of x [N, C, H, W] (groups of gcd(N, group) when N is not a multiple)."""
    n, _, height, width = x.shape
    size = math.gcd(n, group)
    grouped = x.float().reshape(n // size, size, -1)
    spread = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=1)  # [N / size]
    return spread.repeat_interleave(size).view(n, 1, 1, 1).expand(n, 1, height, width).to(x.dtype)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (spectral-norm originals counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
