"""Result images (Pillow): realistic abstract pictures by default, tiny ones on request; and their cache.

``render_picture(prompt, seed, aspect_ratio, image_format, long_side=1024)`` draws what a
gallery of generated images could plausibly hold: a palette chosen from the prompt
(so one prompt's results look related), a composition chosen from the prompt plus
``seed`` (``"<taskId>/<index>"``, so every file differs): a rotated gradient, soft colour
clouds, a glow, blurred blobs, a few crisp shapes, a vignette and film grain.  The
grain is what makes a PNG weigh what a real one does (about 1.5 MB at 1024x1024); its
strength grows for smaller canvases so every aspect ratio stays at or above about
1 MB.  The long side is ``long_side`` (1:1 -> 1024x1024, 16:9 -> 1024x576, 9:16 ->
576x1024).  JPEG is written at quality 90.

``render_image(seed, aspect_ratio, image_format, short_side=64)`` is the small, fast
variant (a flat colour and two shapes) for tests.

Both are pure functions of their arguments (every random choice comes from a
``random.Random`` seeded with a SHA-256 of the inputs), so the same URL always gets
the same bytes, also after a cache eviction or a restart.  ``ImageCache`` keeps
encoded files, bounded by total bytes (least recently used out first), and renders
each file once even when several requests ask for it at the same time.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable

from PIL import Image, ImageChops, ImageDraw, ImageFilter

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 1    # zlib effort: level 6 is 2-3x slower and only ~10 % smaller on grainy pictures
PNG_TARGET_BYTES = 1_250_000  # the grain is chosen so a PNG weighs at least about this (see _grain_for)
MAX_GRAIN = 24
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


def normalise_format(output_format: str) -> str:
    """``png`` -> ``png``; ``jpeg``/``jpg`` -> ``jpeg`` (the Pillow/MIME name)."""
    return "jpeg" if output_format in ("jpeg", "jpg") else "png"


def _ratio(aspect_ratio: str) -> tuple[int, int]:
    try:
        w, h = (int(part) for part in aspect_ratio.split(":"))
    except (ValueError, AttributeError):
        return 1, 1
    return (w, h) if w > 0 and h > 0 else (1, 1)


def image_dimensions(aspect_ratio: str, short_side: int) -> tuple[int, int]:
    """``"16:9"`` with short side 64 -> ``(114, 64)``; ``auto`` (or anything unparsable) -> square."""
    w, h = _ratio(aspect_ratio)
    if w >= h:
        return round(short_side * w / h), short_side
    return short_side, round(short_side * h / w)


def picture_dimensions(aspect_ratio: str, long_side: int = 1024) -> tuple[int, int]:
    """``"16:9"`` -> ``(1024, 576)``, ``"9:16"`` -> ``(576, 1024)``, ``auto``/unparsable -> square."""
    w, h = _ratio(aspect_ratio)
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# small images


def render_image(seed: str, aspect_ratio: str, image_format: str, short_side: int = 64) -> bytes:
    """Small encoded PNG or JPEG bytes; ``image_format`` is ``png``, ``jpeg`` or ``jpg``."""
    fmt = normalise_format(image_format)
    width, height = image_dimensions(aspect_ratio, short_side)
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.new("RGB", (width, height), tuple(digest[0:3]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 8, height // 8, width // 2, height // 2), fill=tuple(digest[3:6]))
    draw.ellipse((width // 2, height // 2, width - 2, height - 2), fill=tuple(digest[6:9]))
    out = io.BytesIO()
    image.save(out, format="JPEG" if fmt == "jpeg" else "PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# realistic pictures


def _rng(*parts: str) -> random.Random:
    return random.Random(hashlib.sha256("\0".join(parts).encode()).digest())


def _palette(prompt: str) -> list[tuple[int, int, int]]:
    """Five colours of one scheme (analogous, complementary or triadic) picked by the prompt."""
    rng = _rng("palette", prompt)
    base = rng.random()
    offsets = rng.choice(((0, 0.05, 0.1, -0.05, -0.1), (0, 0.5, 0.05, 0.55, -0.05),
                          (0, 1 / 3, 2 / 3, 0.05, 0.38)))
    colours = []
    for i, offset in enumerate(offsets):
        saturation = rng.uniform(0.45, 0.95)
        value = rng.uniform(0.35, 0.6) if i == 0 else rng.uniform(0.6, 1.0)
        r, g, b = colorsys.hsv_to_rgb((base + offset) % 1.0, saturation, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _grain_for(width: int, height: int) -> int:
    """Grain amplitude (+/- levels per channel) so the PNG weighs about ``PNG_TARGET_BYTES`` or more.

    Measured at zlib level 1: bytes per pixel ~ 1.2 + 0.4 * ln(grain) (grain 2 -> ~1.5, 24 -> ~2.45).
    """
    per_pixel = PNG_TARGET_BYTES / (width * height)
    return max(2, min(MAX_GRAIN, round(math.exp((per_pixel - 1.2) / 0.4))))


def _gradient(rng: random.Random, size: tuple[int, int], a, b) -> Image.Image:
    ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360), resample=Image.BILINEAR, expand=True)
    cx, cy, half = ramp.width // 2, ramp.height // 2, 90  # the centre is covered at every angle
    ramp = ramp.crop((cx - half, cy - half, cx + half, cy + half)).resize(size, Image.BILINEAR)
    return Image.composite(Image.new("RGB", size, a), Image.new("RGB", size, b), ramp)


def render_picture(prompt: str, seed: str, aspect_ratio: str, image_format: str, long_side: int = 1024) -> bytes:
    """Encoded PNG or JPEG of an abstract picture; see the module docstring."""
    fmt = normalise_format(image_format)
    width, height = size = picture_dimensions(aspect_ratio, long_side)
    palette = _palette(prompt)
    rng = _rng("picture", prompt, seed)
    scale = max(width, height)

    # background: a gradient between two palette colours, then soft colour clouds
    dark, *light = palette
    image = _gradient(rng, size, dark, rng.choice(light))
    clouds = Image.new("RGB", (6, 6))
    clouds.putdata([rng.choice(palette) for _ in range(36)])
    image = Image.blend(image, clouds.resize(size, Image.BICUBIC), rng.uniform(0.25, 0.5))

    # a glow: a bright palette colour through a radial falloff somewhere on the canvas
    # (radial_gradient is 0 at the centre and 181 at the middle of each edge: make the edges 0)
    glow = Image.radial_gradient("L").point(lambda v: max(0, 255 - v * 255 // 180))
    gw, gh = int(scale * rng.uniform(0.5, 1.2)), int(scale * rng.uniform(0.5, 1.2))
    mask = Image.new("L", size, 0)
    mask.paste(glow.resize((gw, gh), Image.BILINEAR),
               (int(rng.uniform(-0.3, 0.8) * width), int(rng.uniform(-0.3, 0.8) * height)))
    image = Image.composite(Image.new("RGB", size, rng.choice(light)), image, mask.point(lambda v: v * 3 // 5))

    # soft blobs: flat colours through a blurred mask (drawn at a quarter size: cheap to blur)
    layer = Image.new("RGB", size, dark)
    quarter = Image.new("L", (max(1, width // 4), max(1, height // 4)), 0)
    draw, draw_mask = ImageDraw.Draw(layer), ImageDraw.Draw(quarter)
    for _ in range(rng.randint(3, 7)):
        radius = rng.uniform(0.08, 0.3) * scale
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        box = (x - radius, y - radius * rng.uniform(0.6, 1.4), x + radius, y + radius * rng.uniform(0.6, 1.4))
        colour = rng.choice(light)
        draw.ellipse(box, fill=colour)
        draw_mask.ellipse(tuple(v / 4 for v in box), fill=rng.randint(110, 220))
    quarter = quarter.filter(ImageFilter.GaussianBlur(scale / 160))
    image = Image.composite(layer, image, quarter.resize(size, Image.BICUBIC))

    # a few crisp shapes: translucent discs and polygons, and lines
    shapes = Image.new("RGB", size)
    shape_mask = Image.new("L", size, 0)
    draw, draw_mask = ImageDraw.Draw(shapes), ImageDraw.Draw(shape_mask)
    for _ in range(rng.randint(2, 5)):
        colour, alpha = rng.choice(palette), rng.randint(90, 200)
        if rng.random() < 0.5:
            radius = rng.uniform(0.03, 0.12) * scale
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            box = (x - radius, y - radius, x + radius, y + radius)
            draw.ellipse(box, fill=colour)
            draw_mask.ellipse(box, fill=alpha)
        else:
            points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(rng.randint(3, 5))]
            draw.polygon(points, fill=colour)
            draw_mask.polygon(points, fill=alpha // 2)
    for _ in range(rng.randint(1, 4)):
        points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(rng.randint(2, 4))]
        width_px = max(1, int(scale * rng.uniform(0.002, 0.008)))
        draw.line(points, fill=rng.choice(light), width=width_px, joint="curve")
        draw_mask.line(points, fill=rng.randint(150, 255), width=width_px, joint="curve")
    image = Image.composite(shapes, image, shape_mask)

    # vignette, then film grain (deterministic: from the same seeded generator)
    vignette = Image.radial_gradient("L").resize(size, Image.BILINEAR)
    strength = rng.uniform(0.25, 0.5)
    vignette = vignette.point(lambda v: 255 - int(max(0, v - 100) * strength))
    image = ImageChops.multiply(image, Image.merge("RGB", (vignette,) * 3))
    grain = _grain_for(width, height)
    noise = Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
    noise = noise.point([v * (2 * grain + 1) // 256 for v in range(256)] * 3)
    image = ImageChops.add(image, noise, 1.0, -grain)
    return _encode(image, fmt)


# ---------------------------------------------------------------------------------------------
# cache


class ImageCache:
    """Encoded files by key, at most ``max_bytes`` in total (LRU); one render per key at a time."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._files: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._rendering: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.renders = 0
        self.hits = 0
        self.render_seconds = 0.0

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The cached bytes of ``key``, else ``render()`` (once; concurrent callers wait for it)."""
        while True:
            with self._lock:
                data = self._files.get(key)
                if data is not None:
                    self._files.move_to_end(key)
                    self.hits += 1
                    return data
                busy = self._rendering.get(key)
                if busy is None:
                    busy = self._rendering[key] = threading.Event()
                    break
            busy.wait()  # someone else renders it: look again (if it was too big to keep, render it here)
        try:
            started = time.perf_counter()
            data = render()
            elapsed = time.perf_counter() - started
            with self._lock:
                self.renders += 1
                self.render_seconds += elapsed
                if len(data) <= self.max_bytes:
                    self._files[key] = data
                    self._bytes += len(data)
                    while self._bytes > self.max_bytes:
                        _, old = self._files.popitem(last=False)
                        self._bytes -= len(old)
            return data
        finally:
            with self._lock:
                self._rendering.pop(key).set()

    def stats(self) -> dict:
        with self._lock:
            return {"image_renders": self.renders, "image_cache_hits": self.hits,
                    "image_cache_files": len(self._files), "image_cache_bytes": self._bytes,
                    "image_render_seconds": round(self.render_seconds, 3)}

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._bytes = 0
