"""Training data: random augmented patches, the validation split and validation tiles."""

from __future__ import annotations

import math

import numpy as np

from .losses import _IGNORE


class _PatchSampler:
    """Random augmented patches from normalised (float32) images and masks."""

    def __init__(self, images, masks, n_classes, patch, rng, augment, class_balance, scale_range):
        import cv2  # noqa: F401  (checked early)

        self.images, self.masks = images, masks
        self.patch, self.rng, self.augment = patch, rng, augment
        self.class_balance = class_balance
        self.scale_range = scale_range
        self.weights = np.array([m.size for m in masks], dtype=np.float64)
        self.weights /= self.weights.sum()
        # a few coordinates of every class in every image, for class-balanced crops
        self.coords: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, m in enumerate(masks):
            flat = m.reshape(-1)
            for c in range(n_classes):
                idx = np.flatnonzero((flat == c) | (flat == c + n_classes))  # c + n_classes: c, weighted
                if idx.size:
                    if idx.size > 4000:
                        idx = rng.choice(idx, 4000, replace=False)
                    self.coords.setdefault(c, []).append((i, idx))

    def _crop(self, img, msk, size, center=None):
        H, W = img.shape
        py, px = max(0, size - H), max(0, size - W)
        if py or px:
            img = np.pad(
                img,
                ((py // 2, py - py // 2), (px // 2, px - px // 2)),
                mode="reflect" if (py < H and px < W) else "symmetric",
            )
            msk = np.pad(msk, ((py // 2, py - py // 2), (px // 2, px - px // 2)), constant_values=_IGNORE)
            if center is not None:
                center = (center[0] + py // 2, center[1] + px // 2)
            H, W = img.shape
        if center is None:
            y0 = int(self.rng.integers(0, H - size + 1))
            x0 = int(self.rng.integers(0, W - size + 1))
        else:
            jitter = self.rng.integers(-size // 4, size // 4 + 1, size=2)
            y0 = int(np.clip(center[0] - size // 2 + jitter[0], 0, H - size))
            x0 = int(np.clip(center[1] - size // 2 + jitter[1], 0, W - size))
        return img[y0 : y0 + size, x0 : x0 + size], msk[y0 : y0 + size, x0 : x0 + size]

    def sample(self):
        import cv2

        rng, p = self.rng, self.patch
        center = None
        if self.coords and rng.random() < self.class_balance:
            c = list(self.coords)[int(rng.integers(len(self.coords)))]
            i, idx = self.coords[c][int(rng.integers(len(self.coords[c])))]
            flat = int(idx[int(rng.integers(idx.size))])
            center = divmod(flat, self.masks[i].shape[1])
        else:
            i = int(rng.choice(len(self.images), p=self.weights))
        img, msk = self.images[i], self.masks[i]
        size = p
        if self.augment and self.scale_range != (1.0, 1.0):
            lo, hi = self.scale_range
            s = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            size = max(8, int(round(p * s)))
        a, m = self._crop(img, msk, size, center)
        if size != p:
            a = cv2.resize(a, (p, p), interpolation=cv2.INTER_LINEAR)
            m = cv2.resize(m.astype(np.int32), (p, p), interpolation=cv2.INTER_NEAREST)
        a = np.array(a, dtype=np.float32)
        m = np.array(m, dtype=np.int64)
        if self.augment:
            k = int(rng.integers(4))
            a, m = np.rot90(a, k), np.rot90(m, k)
            if rng.random() < 0.5:
                a, m = a[:, ::-1], m[:, ::-1]
            # brightness / contrast in normalised units, then noise
            a = a * np.float32(rng.uniform(0.8, 1.25)) + np.float32(rng.uniform(-0.25, 0.25))
            if rng.random() < 0.5:
                a = a + rng.normal(0.0, rng.uniform(0.0, 0.15), size=a.shape).astype(np.float32)
        return np.ascontiguousarray(a), np.ascontiguousarray(m)


def _split_validation(images, masks, val_fraction, rng, min_size):
    """Hold out whole images when there are enough, else a strip of every image."""
    n = len(images)
    if val_fraction <= 0:
        return images, masks, [], []
    n_val = int(round(n * val_fraction))
    if n >= 3 and n_val >= 1:
        order = rng.permutation(n)
        val_idx = set(order[:n_val].tolist())
        tr = [i for i in range(n) if i not in val_idx]
        return (
            [images[i] for i in tr],
            [masks[i] for i in tr],
            [images[i] for i in sorted(val_idx)],
            [masks[i] for i in sorted(val_idx)],
        )
    ti, tm, vi, vm = [], [], [], []
    for img, msk in zip(images, masks):
        axis = 0 if img.shape[0] >= img.shape[1] else 1
        length = img.shape[axis]
        cut = int(round(length * (1 - val_fraction)))
        if length - cut < min_size // 2 or cut < min_size // 2:
            ti.append(img)
            tm.append(msk)
            continue
        sl_tr = (slice(0, cut), slice(None)) if axis == 0 else (slice(None), slice(0, cut))
        sl_va = (slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))
        ti.append(img[sl_tr])
        tm.append(msk[sl_tr])
        vi.append(img[sl_va])
        vm.append(msk[sl_va])
    return ti, tm, vi, vm


def _val_tiles(images, masks, patch, max_tiles, rng):
    tiles_x, tiles_y = [], []
    for img, msk in zip(images, masks):
        H, W = img.shape
        Hp, Wp = int(math.ceil(H / patch) * patch), int(math.ceil(W / patch) * patch)
        py, px = Hp - H, Wp - W
        if py or px:
            img = np.pad(img, ((0, py), (0, px)), mode="reflect" if (py < H and px < W) else "symmetric")
            msk = np.pad(msk, ((0, py), (0, px)), constant_values=_IGNORE)
        for y in range(0, Hp, patch):
            for x in range(0, Wp, patch):
                m = msk[y : y + patch, x : x + patch]
                if np.all(m == _IGNORE):
                    continue
                tiles_x.append(img[y : y + patch, x : x + patch])
                tiles_y.append(m)
    if len(tiles_x) > max_tiles:
        keep = np.sort(rng.choice(len(tiles_x), max_tiles, replace=False))
        tiles_x = [tiles_x[i] for i in keep]
        tiles_y = [tiles_y[i] for i in keep]
    if not tiles_x:
        return None, None
    return np.stack(tiles_x).astype(np.float32), np.stack(tiles_y).astype(np.int64)
