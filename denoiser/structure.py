"""Generated structure: genuine black and white detail that a salt-and-pepper denoiser must leave alone.

Issue 9 measured the default model repainting real detail that is exactly 0 or 1: the one-pixel black line
along the edge of a Kodak photo, text, line art, thin wires against the sky, star fields, clipped
highlights and shadows. This module draws such detail, for two users:

* the photo benchmark (`denoiser.photo_benchmark`) scores methods on `structure_set()`, a fixed set of
  images made here, each with the mask of its structure pixels;
* training can synthesize structure into crops with the same drawing functions (`STRUCTURES`,
  `draw_random_structure`).

Every `draw_*` function takes an image, numpy (H, W) or (H, W, 3) or a torch tensor (C, H, W), uint8 or
float in [0, 1], and a `generator` (a `numpy.random.Generator` or a `torch.Generator`), and returns a new
image of the same type, shape and dtype (the input is not modified) together with a boolean (H, W) mask of
the pixels it drew: the "structure pixels". Lines, borders, text and line art are drawn aliased, in exact
black or white unless `value` says otherwise, because exact extremes are what a switching denoiser takes
for impulses. Shapes are rasterized by Pillow's `ImageDraw`.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

Generator = np.random.Generator | torch.Generator
ImageLike = np.ndarray | torch.Tensor
Drawn = tuple[ImageLike, np.ndarray]  # (image with the structure, bool (H, W) mask of structure pixels)

TEXT_ALPHABET = string.ascii_letters + string.digits + "  .,:;!?-+=/()#%&@"


# ----------------------------------------------------------------------------- images and generators


def numpy_rng(generator: Generator) -> np.random.Generator:
    """A numpy Generator from either kind; a torch.Generator seeds a fresh one from its own stream."""
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return np.random.default_rng(seed)
    raise ValueError(f"generator must be a numpy.random.Generator or a torch.Generator, got {type(generator).__name__}")


def _to_hwc(image: ImageLike) -> np.ndarray:
    """Any accepted image -> a float32 (H, W, C) working copy in [0, 1]."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"a tensor image must be shaped (C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
        array = image.detach().cpu().permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
    elif isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"an array image must be shaped (H, W) or (H, W, 3), got {image.shape}")
        array = image[..., None] if image.ndim == 2 else image  # (H, W) -> (H, W, 1)
    else:
        raise ValueError(f"expected a numpy array or a torch tensor, got {type(image).__name__}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"the image is empty: {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype not in (np.float32, np.float64):
        raise ValueError(f"expected uint8 or float pixels, got {array.dtype}")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _from_hwc(work: np.ndarray, *, like: ImageLike) -> ImageLike:
    """The float (H, W, C) working copy back into the type, layout and dtype of `like`."""
    if isinstance(like, torch.Tensor):
        t = torch.from_numpy(np.ascontiguousarray(work)).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if like.dtype == torch.uint8:
            return (t * 255.0 + 0.5).to(torch.uint8).to(like.device)
        return t.to(like.dtype).to(like.device).contiguous()
    out = work[..., 0] if like.ndim == 2 else work  # (H, W, 1) -> (H, W)
    if like.dtype == np.uint8:
        return (out * 255.0 + 0.5).astype(np.uint8)
    return out.astype(like.dtype)


def _color(rng: np.random.Generator, value: float | None) -> float:
    """The given grey level, or exact black or white at random."""
    if value is None:
        return float(rng.integers(0, 2))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"value must be in [0, 1], got {value}")
    return float(value)


def _paint(work: np.ndarray, mask: np.ndarray, level: float) -> None:
    work[mask] = level


def _canvas(work: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """An empty one-bit drawing the size of the image; what is drawn on it becomes one structure element."""
    canvas = Image.new("1", (work.shape[1], work.shape[0]), 0)
    return canvas, ImageDraw.Draw(canvas)


def _drawn(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas, dtype=bool)


def _stroke_each(image: ImageLike, *, rng: np.random.Generator, count: int, value: float | None,
                 stroke: Callable[[ImageDraw.ImageDraw, int], None]) -> Drawn:
    """`count` elements, each stroked by `stroke(draw, i)` on its own one-bit canvas, then painted in
    `value` (or exact black or white) into a copy of the image; returns it with the union of their masks."""
    work = _to_hwc(image)
    mask = np.zeros(work.shape[:2], dtype=bool)
    for i in range(count):
        canvas, draw = _canvas(work)
        stroke(draw, i)
        element = _drawn(canvas)
        _paint(work, element, _color(rng, value))
        mask |= element
    return _from_hwc(work, like=image), mask


def _point(rng: np.random.Generator, h: int, w: int) -> tuple[int, int]:
    return int(rng.integers(0, w)), int(rng.integers(0, h))


# ----------------------------------------------------------------------------- the drawing functions


def draw_lines(image: ImageLike, *, generator: Generator, count: int = 8, width: int = 1,
               value: float | None = None) -> Drawn:
    """`count` straight lines `width` pixels wide from edge to edge: horizontal, vertical or slanted."""
    rng = numpy_rng(generator)
    h, w = _to_hwc(image).shape[:2]

    def stroke(draw: ImageDraw.ImageDraw, _: int) -> None:
        kind = rng.integers(0, 3)
        if kind == 0:
            y = int(rng.integers(0, h))
            ends = [(0, y), (w - 1, y)]
        elif kind == 1:
            x = int(rng.integers(0, w))
            ends = [(x, 0), (x, h - 1)]
        elif rng.random() < 0.5:  # slanted, from the left edge to the right one
            ends = [(0, int(rng.integers(0, h))), (w - 1, int(rng.integers(0, h)))]
        else:  # slanted, from the top edge to the bottom one
            ends = [(int(rng.integers(0, w)), 0), (int(rng.integers(0, w)), h - 1)]
        draw.line(ends, fill=1, width=width)

    return _stroke_each(image, rng=rng, count=count, value=value, stroke=stroke)


def draw_border(image: ImageLike, *, generator: Generator, width: int = 1, sides: tuple[str, ...] | None = None,
                value: float | None = None) -> Drawn:
    """A `width`-pixel line along image edges (`sides` of top/bottom/left/right; None: a random non-empty set).

    The case issue 9 measured: many photos carry a one-pixel black line along one edge.
    """
    rng = numpy_rng(generator)
    work = _to_hwc(image)
    h, w = work.shape[:2]
    edges = {"top": (slice(0, width), slice(None)), "bottom": (slice(h - width, h), slice(None)),
             "left": (slice(None), slice(0, width)), "right": (slice(None), slice(w - width, w))}
    if sides is None:
        picked = rng.random(4) < 0.5
        picked[rng.integers(0, 4)] = True
        sides = tuple(name for name, keep in zip(edges, picked) if keep)
    unknown = set(sides) - set(edges)
    if unknown:
        raise ValueError(f"unknown sides {sorted(unknown)}; use top, bottom, left, right")
    mask = np.zeros((h, w), dtype=bool)
    for side in sides:
        edge = np.zeros((h, w), dtype=bool)
        edge[edges[side]] = True
        _paint(work, edge, _color(rng, value))
        mask |= edge
    return _from_hwc(work, like=image), mask


def draw_text(image: ImageLike, *, generator: Generator, count: int = 4, sizes: tuple[int, int] = (10, 24),
              value: float | None = None) -> Drawn:
    """`count` random words and short lines of text, Pillow's default font at sizes in `sizes` (px).

    Line i sits in the i-th of `count` horizontal bands, so lines rarely overlap, as on a page or a sign.
    """
    rng = numpy_rng(generator)
    h, w = _to_hwc(image).shape[:2]

    def stroke(draw: ImageDraw.ImageDraw, i: int) -> None:
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        font = ImageFont.load_default(size=size)
        text = "".join(rng.choice(list(TEXT_ALPHABET), size=int(rng.integers(4, 24))))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = int(rng.integers(0, max(1, w - (right - left)))) - left
        band_top = i * h // count
        y = band_top + int(rng.integers(0, max(1, h // count - (bottom - top)))) - top
        draw.text((x, y), text, fill=1, font=font)  # a mode "1" canvas rasterizes without anti-aliasing

    return _stroke_each(image, rng=rng, count=count, value=value, stroke=stroke)


def draw_line_art(image: ImageLike, *, generator: Generator, count: int = 10, value: float | None = None) -> Drawn:
    """`count` one-pixel outlines: ellipses, rectangles, polygons, arcs and curves, as in a drawing or a chart."""
    rng = numpy_rng(generator)
    h, w = _to_hwc(image).shape[:2]

    def stroke(draw: ImageDraw.ImageDraw, _: int) -> None:
        (x0, y0), (x1, y1) = _point(rng, h, w), _point(rng, h, w)
        box = [min(x0, x1), min(y0, y1), max(x0, x1) + 2, max(y0, y1) + 2]
        kind = rng.integers(0, 5)
        if kind == 0:
            draw.ellipse(box, outline=1)
        elif kind == 1:
            draw.rectangle(box, outline=1)
        elif kind == 2:
            draw.polygon([_point(rng, h, w) for _ in range(int(rng.integers(3, 7)))], outline=1)
        elif kind == 3:
            start = float(rng.uniform(0, 360))
            draw.arc(box, start=start, end=start + float(rng.uniform(60, 300)), fill=1)
        else:
            draw.line(_curve(rng, h, w), fill=1, width=1)

    return _stroke_each(image, rng=rng, count=count, value=value, stroke=stroke)


def _curve(rng: np.random.Generator, h: int, w: int) -> list[tuple[float, float]]:
    """A smooth random curve: a cubic Bezier through four random control points, as 64 segments."""
    p = np.array([_point(rng, h, w) for _ in range(4)], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 65)[:, None]
    pts = ((1 - t) ** 3) * p[0] + 3 * ((1 - t) ** 2) * t * p[1] + 3 * (1 - t) * (t**2) * p[2] + (t**3) * p[3]
    return [(float(x), float(y)) for x, y in pts]


def draw_star_field(image: ImageLike, *, generator: Generator, density: float = 0.004,
                    bright_share: float = 0.5) -> Drawn:
    """Stars: isolated bright pixels on whatever is there (a dark sky in the structure set).

    A share `density` of pixels becomes a star; `bright_share` of them are exactly white, the rest a grey
    level in [0.55, 1). One star in eight is a plus-shaped bright star of five pixels.
    """
    if not 0.0 <= density <= 0.2:
        raise ValueError(f"density must be in [0, 0.2], got {density}")
    rng = numpy_rng(generator)
    work = _to_hwc(image)
    h, w = work.shape[:2]
    n = int(round(density * h * w))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    levels = np.where(rng.random(n) < bright_share, 1.0, rng.uniform(0.55, 1.0, n))
    mask = np.zeros((h, w), dtype=bool)
    big = rng.random(n) < 1 / 8
    for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        keep = big if (dy, dx) != (0, 0) else np.ones(n, dtype=bool)
        y, x = np.clip(ys[keep] + dy, 0, h - 1), np.clip(xs[keep] + dx, 0, w - 1)
        work[y, x] = levels[keep, None]
        mask[y, x] = True
    return _from_hwc(work, like=image), mask


def draw_clipped(image: ImageLike, *, generator: Generator, count: int = 2) -> Drawn:
    """Clipped highlights and shadows: `count` soft-edged regions whose contrast is raised until they saturate.

    Inside each region the image is stretched by a gain of 2-5 and pushed up (a highlight) or down (a
    shadow), then clipped to [0, 1], so whole patches become exactly white or black with their texture left at
    the edges: saturated texture, as over-exposed skies and crushed shadows are. The mask is the pixels
    that the region drove to exactly 0 or 1 in some channel.
    """
    rng = numpy_rng(generator)
    work = _to_hwc(image)
    h, w = work.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
        r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        weight = np.clip(1.5 - r, 0.0, 1.0)[..., None]  # 1 inside r < 0.5, fading to 0 at r = 1.5
        shift = rng.uniform(0.35, 0.7) * (1 if rng.random() < 0.5 else -1)
        stretched = np.clip((work - 0.5) * rng.uniform(2.0, 5.0) + 0.5 + shift, 0.0, 1.0)
        before = (work <= 0.0) | (work >= 1.0)
        work = np.where(weight >= 1.0, stretched, work * (1 - weight) + stretched * weight).astype(np.float32)
        mask |= (((work <= 0.0) | (work >= 1.0)) & ~before).any(axis=-1)
    return _from_hwc(work, like=image), mask


StructureDrawer = Callable[..., Drawn]

# Every kind of structure, by the name tables and training recipes use.
STRUCTURES: dict[str, StructureDrawer] = {
    "lines": draw_lines, "borders": draw_border, "text": draw_text, "line art": draw_line_art,
    "star field": draw_star_field, "clipped": draw_clipped,
}


def draw_random_structure(image: ImageLike, *, generator: Generator, kinds: tuple[str, ...] | None = None) -> Drawn:
    """One kind of structure drawn with its default settings, the kind picked at random from `kinds` (all)."""
    kinds = tuple(STRUCTURES) if kinds is None else kinds
    unknown = [k for k in kinds if k not in STRUCTURES]
    if unknown or not kinds:
        raise ValueError(f"unknown structure kinds {unknown}; choose from {', '.join(STRUCTURES)}")
    rng = numpy_rng(generator)
    return STRUCTURES[kinds[int(rng.integers(0, len(kinds)))]](image, generator=rng)


# ----------------------------------------------------------------------------- backgrounds and the fixed set


def smooth_background(height: int, width: int, *, generator: Generator, channels: int = 3,
                      low: float = 0.12, high: float = 0.88) -> np.ndarray:
    """A photo-like float32 image in [low, high], (H, W) for one channel or (H, W, C): no exact 0 or 1.

    The sum of bicubically enlarged random grids from coarse to fine (value noise, four octaves, each half
    the amplitude of the last), scaled per channel into [low, high].
    """
    rng = numpy_rng(generator)
    total = np.zeros((channels, height, width), dtype=np.float32)
    for octave in range(4):
        cells = 3 * 2**octave
        grid = torch.from_numpy(rng.random((1, channels, cells, cells), dtype=np.float32))
        big = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)[0]
        total += big.numpy() * 0.5**octave
    lo = total.min(axis=(1, 2), keepdims=True)
    hi = total.max(axis=(1, 2), keepdims=True)
    scaled = low + (high - low) * (total - lo) / np.maximum(hi - lo, 1e-6)
    if channels == 1:
        return scaled[0]  # (1, H, W) -> (H, W)
    return np.ascontiguousarray(scaled.transpose(1, 2, 0))  # (C, H, W) -> (H, W, C)


@dataclass(frozen=True)
class StructureImage:
    name: str
    kind: str  # a key of STRUCTURES
    image: np.ndarray  # the clean original, uint8 (H, W) or (H, W, 3)
    mask: np.ndarray  # bool (H, W): the structure pixels


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _sky(height: int, width: int, *, top: tuple[float, ...], bottom: tuple[float, ...]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to((1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32),
                           (height, width, len(top))).copy()


def structure_set(*, size: int = 256, seed: int = 0) -> list[StructureImage]:
    """The benchmark's fixed structure set: ten `size` x `size` uint8 images, each with its structure mask.

    lines (on a photo-like background in colour and in grey, and wires against a bright sky), borders (all
    four sides in colour; one black edge in grey, the case issue 9 measured), text (on a background, and black
    text on a white page), line art on a white page, a star field on a dark sky, and clipped regions. The
    same `size` and `seed` give the same images on every machine.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    rng = np.random.default_rng(seed)
    page = np.ones((size, size, 3), dtype=np.float32)
    recipes: list[tuple[str, str, np.ndarray, Callable[[np.ndarray], Drawn]]] = [
        ("lines colour", "lines", smooth_background(size, size, generator=rng),
         lambda im: draw_lines(im, generator=rng, count=12)),
        ("lines grey", "lines", smooth_background(size, size, generator=rng, channels=1),
         lambda im: draw_lines(im, generator=rng, count=12)),
        ("wires on sky", "lines", _sky(size, size, top=(0.55, 0.7, 0.92), bottom=(0.85, 0.9, 0.97)),
         lambda im: draw_lines(im, generator=rng, count=5, value=0.0)),
        ("borders colour", "borders", smooth_background(size, size, generator=rng),
         lambda im: draw_border(im, generator=rng, sides=("top", "bottom", "left", "right"))),
        ("black edge grey", "borders", smooth_background(size, size, generator=rng, channels=1),
         lambda im: draw_border(im, generator=rng, sides=("bottom",), value=0.0)),
        ("text colour", "text", smooth_background(size, size, generator=rng),
         lambda im: draw_text(im, generator=rng, count=max(4, size // 24))),
        ("text on a page", "text", page[..., 0].copy(),
         lambda im: draw_text(im, generator=rng, count=max(4, size // 16), value=0.0)),
        ("line art", "line art", page.copy(),
         lambda im: draw_line_art(im, generator=rng, count=12, value=0.0)),
        ("star field", "star field", _sky(size, size, top=(0.0, 0.0, 0.04), bottom=(0.05, 0.06, 0.12)),
         lambda im: draw_star_field(im, generator=rng)),
        ("clipped", "clipped", smooth_background(size, size, generator=rng, low=0.05, high=0.95),
         lambda im: draw_clipped(im, generator=rng, count=3)),
    ]
    out = []
    for name, kind, base, draw in recipes:
        drawn, mask = draw(base)
        out.append(StructureImage(name=name, kind=kind, image=_u8(drawn), mask=mask))
    return out
