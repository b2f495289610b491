"""PNG pictures of samples: image grids, segmentation masks in colour, confusion matrices."""

import pathlib

import numpy as np
from PIL import Image

# 11 distinguishable colours: black for background, then one per Fashion-MNIST class.
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    np.uint8,
)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [-1, 1] (the pipelines' and generators' range) → uint8 in [0, 255]."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images_NHWC: np.ndarray, columns: int, border: int = 2) -> np.ndarray:
    """Tiles uint8 images [N, H, W, C] into one [rows·(H+b)+b, columns·(W+b)+b, C] picture."""
    n, h, w, c = images_NHWC.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + border) + border, columns * (w + border) + border, c), 64, np.uint8)
    for i, image in enumerate(images_NHWC):
        top, left = border + (i // columns) * (h + border), border + (i % columns) * (w + border)
        canvas[top : top + h, left : left + w] = image
    return canvas


def colour_masks(masks_NHW: np.ndarray) -> np.ndarray:
    """Class-index masks → RGB uint8 [N, H, W, 3] with `PALETTE`."""
    return PALETTE[np.asarray(masks_NHW) % len(PALETTE)]


def heatmap(matrix: np.ndarray, cell: int = 24) -> np.ndarray:
    """A row-normalised matrix (e.g. a confusion matrix) as an RGB picture, white = 0, dark blue = 1."""
    m = np.asarray(matrix, np.float64)
    m = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-12)
    white, blue = np.array([255, 255, 255]), np.array([8, 48, 107])
    rgb = (white + (blue - white) * m[..., None]).astype(np.uint8)
    return np.kron(rgb, np.ones((cell, cell, 1), np.uint8))


def save_png(picture: np.ndarray, path: pathlib.Path, scale: int = 1) -> pathlib.Path:
    """Writes a uint8 [H, W] / [H, W, 1] / [H, W, 3] picture, enlarged `scale` times (nearest)."""
    picture = np.asarray(picture, np.uint8)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
    return path
