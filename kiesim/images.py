"""Small, real, deterministic result images (Pillow), in the task's aspect ratio and format.

``render_image(seed, aspect_ratio, image_format, short_side)`` returns encoded bytes
that any decoder opens: a colour derived from ``seed`` plus a few shapes, so two
results of one task differ and the same URL always yields the same bytes.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def normalise_format(output_format: str) -> str:
    """``png`` -> ``png``; ``jpeg``/``jpg`` -> ``jpeg`` (the Pillow/MIME name)."""
    return "jpeg" if output_format in ("jpeg", "jpg") else "png"


def image_dimensions(aspect_ratio: str, short_side: int) -> tuple[int, int]:
    """``"16:9"`` with short side 64 -> ``(114, 64)``; ``auto`` (or anything unparsable) -> square."""
    try:
        w, h = (int(part) for part in aspect_ratio.split(":"))
    except (ValueError, AttributeError):
        w, h = 1, 1
    if w >= h:
        return round(short_side * w / h), short_side
    return short_side, round(short_side * h / w)


def render_image(seed: str, aspect_ratio: str, image_format: str, short_side: int = 64) -> bytes:
    """Encoded PNG or JPEG bytes; ``image_format`` is ``png``, ``jpeg`` or ``jpg``."""
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
