"""Convolutional networks for small images: classifiers, GAN generators and discriminators, a U-Net.

Pure Linen modules, NHWC. Their parameters are small, so they carry no logical axis names and are
replicated over the mesh (ARCHITECTURE.md, "Sharding"); batches are sharded over the data axes, and
BatchNorm's batch statistics, computed inside a jitted step on a sharded batch, are global means over
the whole batch — synchronised across the data axis without an explicit `axis_name`.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def max_pool_2x2(x_BHWC: jax.Array) -> jax.Array:
    """2×2 max-pool, stride 2 (odd edges dropped): the same forward as `nn.max_pool(x, (2, 2),
    strides=(2, 2))`, written as a reshape and a max, with the gradient of `jnp.max` (a window's gradient
    split evenly between its tied maxima; Linen's gives it to the first) computed in one elementwise pass.

    Why: XLA's CPU backward of `reduce_window` (`select_and_scatter`) cost ~119 ms of a 452 ms VGG-BN step
    on an earlier machine, and `jnp.max`'s own gradient counts each window's ties with reductions that
    XLA:CPU ran on one thread (1.7 ms of the ~14 ms cnn_fashion step, profiled on Zen 5). Ties are common:
    a convolution over the images' flat background gives equal outputs.
    """
    return _pooled(x_BHWC)


def _windows(x_BHWC: jax.Array) -> jax.Array:
    B, H, W, C = x_BHWC.shape
    return x_BHWC[:, : H // 2 * 2, : W // 2 * 2].reshape(B, H // 2, 2, W // 2, 2, C)


def _pooled(x_BHWC: jax.Array) -> jax.Array:
    return _windows(x_BHWC).max(axis=(2, 4))


def _max_pool_forward(x_BHWC: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    pooled = _pooled(x_BHWC)
    return pooled, (x_BHWC, pooled)


def _max_pool_backward(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    x_BHWC, pooled = residuals
    at_max = _windows(x_BHWC) == pooled[:, :, None, :, None]
    # the ties counted as a sum of the four window positions, which XLA fuses into this elementwise pass,
    # where `.sum(axis=(2, 4))` would be a separate reduction
    ties = sum(at_max[:, :, i, :, j].astype(g.dtype) for i in (0, 1) for j in (0, 1))
    dx_windows = jnp.where(at_max, (g / ties)[:, :, None, :, None], 0).astype(x_BHWC.dtype)
    B, H, W, C = x_BHWC.shape
    dx = dx_windows.reshape(B, H // 2 * 2, W // 2 * 2, C)
    return (jnp.pad(dx, ((0, 0), (0, H % 2), (0, W % 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_forward, _max_pool_backward)


class BatchNorm(nn.Module):
    """`nn.BatchNorm(momentum=0.9)` over every axis but the last: the same variables (params `scale`,
    `bias`; batch_stats `mean`, `var`, the biased variance), defaults and function, so checkpoints of
    either load in the other.

    It normalises as x · a + b, with a = scale / √(var + ε) and b = bias − mean · a per channel, where
    Linen computes (x − mean) · a + bias. The gradient with respect to the batch mean then flows through
    the per-channel b alone instead of back over the whole activation, which saves XLA's CPU backend
    reductions over the batch: the `cnn_fashion` cpu train step took 14.9 ms against 15.8 with Linen's
    layer (benchmarks/batch_norm_form.py, fresh processes, AMD EPYC Zen 5, 2 cores; 13.9 against 15.1 in an
    earlier run, 36.2 against 43.0 on an earlier EPYC). The DCGAN's step gained 13.6 against 14.5 before its
    3×3 blocks and nothing measurable with them (33.1 against 30.6 ms, rounds 0.97–1.27).
    """

    use_running_average: bool = False
    momentum: float = 0.9  # the weight of the old running average
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (channels,))
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            rows = x.reshape(-1, channels)
            mean = rows.mean(0)
            var = jnp.maximum((rows * rows).mean(0) - mean * mean, 0.0)  # as Linen's fast variance
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1 - m) * mean
                running_var.value = m * running_var.value + (1 - m) * var
        multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
        return x * multiplier + (bias - mean * multiplier)


def _conv_bn_relu(x: jax.Array, features: int, train: bool) -> jax.Array:
    x = nn.Conv(features, (3, 3), use_bias=False)(x)
    x = BatchNorm(use_running_average=not train)(x)
    return nn.relu(x)


class SeedCNN(nn.Module):
    """The source document's classifier (questions 8 and 26): conv 3×3×32 (no padding) → ReLU → max-pool
    2×2 → dense 128 → ReLU → dense classes."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """Returns (logits [B, classes], penultimate features [B, 128])."""
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x_BHWC))
        x = max_pool_2x2(x)
        features = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(features), features


class VggBnCNN(nn.Module):
    """A small VGG-style classifier: stages of 3×3 conv → BatchNorm → ReLU, each ending in a 2×2 max-pool,
    then dropout → dense → ReLU → dropout → dense classes."""

    num_classes: int = 10
    stage_features: Sequence[int] = (32, 64, 128)
    stage_convs: Sequence[int] = (1, 2, 2)
    hidden: int = 256
    dropout_rate: float = 0.3

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """Returns (logits [B, classes], penultimate features [B, hidden])."""
        x = x_BHWC
        for features, convs in zip(self.stage_features, self.stage_convs, strict=True):
            for _ in range(convs):
                x = _conv_bn_relu(x, features, train)
            x = max_pool_2x2(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.reshape(x.shape[0], -1))
        features = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        return nn.Dense(self.num_classes)(x), features


class MlpGenerator(nn.Module):
    """The source's GAN generator (question 3): noise 100 → 256 → 512 → 1024 → 784, LeakyReLU 0.2, tanh."""

    hidden: Sequence[int] = (256, 512, 1024)
    image_shape: Sequence[int] = (28, 28, 1)

    @nn.compact
    def __call__(self, z_BZ: jax.Array, train: bool = False) -> jax.Array:
        x = z_BZ
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return jnp.tanh(nn.Dense(math.prod(self.image_shape))(x)).reshape(-1, *self.image_shape)


class MlpDiscriminator(nn.Module):
    """The source's discriminator: 784 → 1024 → 512 → 256 → 1, LeakyReLU 0.2 and dropout 0.3.

    Returns the logit; the source's final sigmoid lives in the loss (`sigmoid_binary_cross_entropy`),
    which is the same function, computed stably."""

    hidden: Sequence[int] = (1024, 512, 256)
    dropout_rate: float = 0.3

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> jax.Array:
        x = x_BHWC.reshape(x_BHWC.shape[0], -1)
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(1)(x)[:, 0]


class ConvTranspose4x4Stride2(nn.Module):
    """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), use_bias=False)` (SAME padding), computed as four
    2×2 convolutions, one per output phase, interleaved.

    The same function and parameter (a [4, 4, in, out] kernel), faster on XLA's CPU: output pixel
    (2m + p, 2l + q) only ever sees kernel taps [p::2, q::2] over input rows m-1+p, m+p (and likewise for
    columns), so each phase is a plain 2×2 convolution of the input padded on one side. The transposed conv
    XLA would run instead dilates the input with zeros, and its kernel gradient cost 86 of a 99 ms DCGAN
    step here; the phase form's is ~4× cheaper. (For the 1-channel output layer the plain op is faster.)
    """

    features: int

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        B, H, W, C = x_BHWC.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, C, self.features))
        rows = []
        for p in (0, 1):
            phases = []
            for q in (0, 1):
                padded = jnp.pad(x_BHWC, ((0, 0), (1 - p, p), (1 - q, q), (0, 0)))
                phases.append(
                    jax.lax.conv_general_dilated(
                        padded,
                        kernel[p::2, q::2],
                        (1, 1),
                        "VALID",
                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    )
                )
            rows.append(jnp.stack(phases, axis=3))  # [B, H, W, q, features]
        return jnp.stack(rows, axis=2).reshape(B, 2 * H, 2 * W, self.features)  # [B, H, p, W, q, ...]


class DcganGenerator(nn.Module):
    """DCGAN generator (Radford et al., 2016): noise → dense (H/4)×(W/4)×2w → BN → ReLU → transposed conv
    4×4/2 to (H/2)×(W/2)×w → BN → ReLU → transposed conv 4×4/2 to H×W×C → tanh. For 28×28: 7 → 14 → 28.
    `quarter_convs` adds that many 3×3 conv (2w, no bias) → BN → ReLU blocks at (H/4)×(W/4), before the
    first transposed conv."""

    width: int = 64
    image_shape: Sequence[int] = (28, 28, 1)
    quarter_convs: int = 0

    @nn.compact
    def __call__(self, z_BZ: jax.Array, train: bool = False) -> jax.Array:
        def bn(x: jax.Array) -> jax.Array:
            return BatchNorm(use_running_average=not train)(x)

        height, width, channels = self.image_shape
        h, w = height // 4, width // 4
        x = nn.Dense(h * w * 2 * self.width, use_bias=False)(z_BZ).reshape(-1, h, w, 2 * self.width)
        x = nn.relu(bn(x))
        for _ in range(self.quarter_convs):
            x = _conv_bn_relu(x, 2 * self.width, train)
        x = nn.relu(bn(ConvTranspose4x4Stride2(self.width)(x)))
        return jnp.tanh(nn.ConvTranspose(channels, (4, 4), strides=(2, 2))(x))


class DcganDiscriminator(nn.Module):
    """DCGAN discriminator: conv 4×4/2 (w) → LeakyReLU 0.2 → conv 4×4/2 (2w) → BN → LeakyReLU →
    dense 1 (a logit). No BatchNorm on the input layer, as in the paper. `quarter_convs` adds that many
    3×3 conv (2w, no bias) → BN → LeakyReLU blocks at (H/4)×(W/4), before the dense layer."""

    width: int = 64
    quarter_convs: int = 0

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> jax.Array:
        x = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=(2, 2))(x_BHWC), 0.2)
        x = nn.Conv(2 * self.width, (4, 4), strides=(2, 2), use_bias=False)(x)
        x = nn.leaky_relu(BatchNorm(use_running_average=not train)(x), 0.2)
        for _ in range(self.quarter_convs):
            x = nn.Conv(2 * self.width, (3, 3), use_bias=False)(x)
            x = nn.leaky_relu(BatchNorm(use_running_average=not train)(x), 0.2)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class UpConv2x2(nn.Module):
    """`nn.ConvTranspose(features, (2, 2), strides=(2, 2))` (the same parameters and function) as one
    matrix product: with stride equal to kernel size every input pixel writes its own 2×2 output block,
    kernel[1 - p, 1 - q] giving output pixel (2m + p, 2l + q) (Linen's orientation). XLA's CPU backend
    runs the transposed convolution as a dilated one instead, whose kernel gradient took ~74 of a ~200 ms
    step of a wider U-Net (profiled on 2 Zen 5 cores)."""

    features: int

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        B, H, W, C = x_BHWC.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (2, 2, C, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        blocks = jnp.einsum("bhwc,pqcf->bhpwqf", x_BHWC, kernel[::-1, ::-1])
        return blocks.reshape(B, 2 * H, 2 * W, self.features) + bias


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) for per-pixel classification: each encoder level is two 3×3
    conv → BN → ReLU blocks then a 2×2 max-pool; each decoder level upsamples with a 2×2 transposed
    conv (`UpConv2x2`), concatenates the encoder's skip features and applies two blocks; a 1×1 conv gives
    logits. Spatial sizes must divide by 2 ** (levels - 1).

    With `level_logits`, every decoder level below the top also gives logits (a 1×1 conv of its
    features), resized bilinearly to the input's size and added to the top level's, as FCN-8s adds its
    pool-3 and pool-4 scores (Long et al., 2015). Why: a narrow net's top level has fewer channels than
    there are classes (8 for 11 in the cpu preset), so its 1×1 conv alone must read each pixel's class
    from a bottleneck; the deeper levels' wider features carry the item's class to the logits directly."""

    num_classes: int
    level_features: Sequence[int] = (16, 32, 64, 128)
    level_logits: bool = False

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits [B, H, W, classes]."""

        def block(x: jax.Array, features: int) -> jax.Array:
            return _conv_bn_relu(_conv_bn_relu(x, features, train), features, train)

        skips = []
        x = x_BHWC
        for features in self.level_features[:-1]:
            x = block(x, features)
            skips.append(x)
            x = max_pool_2x2(x)
        x = block(x, self.level_features[-1])
        coarse_logits = []
        for level, (features, skip) in enumerate(
            zip(reversed(self.level_features[:-1]), reversed(skips), strict=True)
        ):
            if self.level_logits and level > 0:
                downscale = 2 ** (len(self.level_features) - 1 - level)
                coarse_logits.append(nn.Conv(self.num_classes, (1, 1), name=f"Logits_down{downscale}")(x))
            # named as the nn.ConvTranspose it replaced, so earlier checkpoints still load
            x = UpConv2x2(features, name=f"ConvTranspose_{level}")(x)
            x = block(jnp.concatenate([x, skip], axis=-1), features)
        logits = nn.Conv(self.num_classes, (1, 1))(x)
        for coarse in coarse_logits:
            logits += jax.image.resize(coarse, logits.shape, "bilinear")
        return logits
