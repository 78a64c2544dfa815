"""A small synthetic CIFAR-shaped data set with a learnable signal (the demo)."""

from __future__ import annotations

import numpy as np

from .classes import CLASS_NAMES, NUM_CLASSES


def _shape_masks() -> np.ndarray:
    """Ten 36x36 float masks (one simple shape per class), cropped to 32x32 with jitter."""
    s = 36
    r, c = np.mgrid[0:s, 0:s].astype(np.float64)
    cr = cc = (s - 1) / 2
    d = np.hypot(r - cr, c - cc)
    m = np.zeros((10, s, s))
    m[0, 6:12, 6:30] = 1  # bar across the top
    m[1, 24:30, 6:30] = 1  # bar across the bottom
    m[2, 6:30, 6:12] = 1  # bar down the left
    m[3, 6:30, 24:30] = 1  # bar down the right
    m[4, 11:25, 11:25] = 1  # filled square
    m[5] = d <= 8  # filled disc
    m[6] = np.abs(r - c) <= 2.5  # diagonal
    m[7] = np.abs(r + c - (s - 1)) <= 2.5  # anti-diagonal
    m[8] = (np.abs(r - cr) <= 2.5) | (np.abs(c - cc) <= 2.5)  # cross
    m[9] = (d >= 9) & (d <= 13)  # ring
    return m


_CLASS_COLOURS = np.array(
    [
        [90, 120, 170],  # airplane: sky blue
        [160, 60, 60],  # automobile: red
        [120, 140, 80],  # bird: olive
        [150, 110, 90],  # cat: brown
        [110, 150, 100],  # deer: green
        [140, 120, 150],  # dog: mauve
        [70, 130, 70],  # frog: dark green
        [130, 90, 60],  # horse: dark brown
        [60, 100, 150],  # ship: sea blue
        [170, 150, 80],  # truck: mustard
    ],
    dtype=np.float64,
)


def make_synthetic_images(n_per_class_train: int, n_per_class_test: int, seed: int):
    """A small CIFAR-shaped uint8 dataset with a learnable signal.

    Each class has a mean background colour (jittered per image) and a bright class-specific
    shape (bars in four positions, square, disc, two diagonals, cross, ring) shifted by up to
    +-2 pixels, all under Gaussian noise (sigma 25). Classes are balanced; images are shuffled.
    Returns ``(x_train, y_train, x_test, y_test, class_names)`` with uint8 ``(n, 32, 32, 3)``
    images, int64 labels and the official CIFAR-10 class names.
    """
    rng = np.random.default_rng(seed)
    masks = _shape_masks()

    def make(n_per_class: int):
        y = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), n_per_class)
        y = y[rng.permutation(len(y))]
        n = len(y)
        r0 = rng.integers(0, 5, size=n)
        c0 = rng.integers(0, 5, size=n)
        ar = np.arange(32)
        rows = r0[:, None, None] + ar[None, :, None]
        cols = c0[:, None, None] + ar[None, None, :]
        shape = masks[y[:, None, None], rows, cols]
        colour = _CLASS_COLOURS[y] + rng.normal(0, 20, size=(n, 3))
        strength = rng.uniform(50, 90, size=(n, 1, 1, 1))
        img = colour[:, None, None, :] + strength * shape[..., None]
        img += rng.normal(0, 25, size=img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), y

    x_train, y_train = make(int(n_per_class_train))
    x_test, y_test = make(int(n_per_class_test))
    return x_train, y_train, x_test, y_test, list(CLASS_NAMES)
