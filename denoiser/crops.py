"""Training crops from photos: random crops, flips and rotations, with structure drawn into a share of them.

CIFAR-10's 32x32 thumbnails teach a denoiser textures, but not what real photos hold at full resolution:
long edges, large smooth regions, clipped highlights and shadows, and genuine black and white detail. So
training also draws square crops from the training photos (`denoiser.photos.training_names`: the held-out
validation photos are never used), with the augmentations of image restoration work since DnCNN (random
position, horizontal flip, rotation by multiples of 90 degrees), and draws synthetic structure
(`denoiser.structure`: lines, borders, text, line art, star fields, clipped regions) into a share of the
crops, so the detector learns that exact black and white pixels are not always noise. A share of those
crops (`page_share`) draws its structure on a flat page of one colour instead of the photo, as documents,
screenshots and diagrams are: black text on pure white is the case photos never show.
"""

from __future__ import annotations

import numpy as np
import torch

from denoiser.structure import draw_random_structure


class PhotoCrops:
    """Draws uint8 (B, 3, size, size) crops from a fixed list of photos; grayscale photos become 3 channels."""

    def __init__(self, photos: list[np.ndarray], *, size: int, structure_share: float = 0.3,
                 page_share: float = 0.0) -> None:
        if not photos:
            raise ValueError("PhotoCrops needs at least one photo")
        if not (0.0 <= structure_share <= 1.0 and 0.0 <= page_share <= 1.0):
            raise ValueError("structure_share and page_share must be in [0, 1]")
        self.size, self.structure_share, self.page_share = size, structure_share, page_share
        self.photos = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for p in photos]  # (H, W) -> (H, W, 3)
        small = [p.shape[:2] for p in self.photos if min(p.shape[:2]) < size]
        if small:
            raise ValueError(f"{len(small)} photos are smaller than the {size}x{size} crop, e.g. {small[0]}")

    def __len__(self) -> int:
        return len(self.photos)

    def batch(self, n: int, *, rng: np.random.Generator) -> torch.Tensor:
        """n crops, each from a photo picked uniformly, as uint8 (n, 3, size, size)."""
        crops = [self._crop(self.photos[int(rng.integers(len(self.photos)))], rng=rng) for _ in range(n)]
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (n, S, S, 3) -> (n, 3, S, S)

    def _crop(self, photo: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        top, left = int(rng.integers(photo.shape[0] - s + 1)), int(rng.integers(photo.shape[1] - s + 1))
        crop = photo[top:top + s, left:left + s]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, k=int(rng.integers(4)))
        if rng.random() < self.structure_share:
            if self.page_share and rng.random() < self.page_share:  # no extra draw at 0: older runs repeat
                crop = _page(s, rng=rng)
            crop, _ = draw_random_structure(np.ascontiguousarray(crop), generator=rng)
        return np.ascontiguousarray(crop)


def _page(size: int, *, rng: np.random.Generator) -> np.ndarray:
    """A flat uint8 (size, size, 3) page: white or black half the time (paper, dark mode), else any colour."""
    pick = rng.random()
    colour = (255, 255, 255) if pick < 0.3 else (0, 0, 0) if pick < 0.5 else tuple(rng.integers(0, 256, 3))
    return np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()
