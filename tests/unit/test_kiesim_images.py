"""kiesim result images: realistic by default (about 1024 px on the long side, PNG 1-2 MB, drawn
from the prompt), small with ``small_images``; the same URL always serves the same bytes.

One in-process simulator serves the module over real HTTP; each test resets it to a baseline.
"""

from __future__ import annotations

import dataclasses
import io
import threading

import pytest
import requests
from PIL import Image, ImageChops, ImageStat

from kiesim import SimConfig, SimServer
from kiesim.cli import build_parser, config_from_args
from kiesim.images import ImageCache, render_picture
from sim_support import Kie, configure, control, stats

KEY = "sk-images-" + "5a4b3c2d1e"
BASELINE = dataclasses.asdict(SimConfig(api_key=KEY, duration=0, rate_limit="off"))
MB = 1_000_000


@pytest.fixture
def kie(url):
    return Kie(url, KEY)


def download(file_url: str) -> tuple[bytes, requests.Response]:
    response = requests.get(file_url, timeout=30)
    assert response.status_code == 200, response.text
    assert int(response.headers["Content-Length"]) == len(response.content)
    return response.content, response


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two pictures seen as 64x64 thumbnails (0..255)."""
    small = [im.convert("RGB").resize((64, 64), Image.BILINEAR) for im in (a, b)]
    return sum(ImageStat.Stat(ImageChops.difference(*small)).mean) / 3


@pytest.mark.parametrize("field, ratio, size", [
    ("aspect_ratio", "1:1", (1024, 1024)),
    ("aspect_ratio", "16:9", (1024, 576)),
    ("aspect_ratio", "9:16", (576, 1024)),
    ("image_size", "4:3", (1024, 768)),
    ("image_size", "3:4", (768, 1024)),
    ("aspect_ratio", "3:2", (1024, 683)),
    ("aspect_ratio", "2:3", (683, 1024)),
    ("image_size", "5:4", (1024, 819)),
    ("image_size", "4:5", (819, 1024)),
    ("aspect_ratio", "21:9", (1024, 439)),
    ("image_size", "auto", (1024, 1024)),
])
def test_png_size_per_aspect_ratio(kie, field, ratio, size):
    (file_url,) = kie.result_urls(kie.create_ok(f"a lighthouse at {ratio}", **{field: ratio}))
    data, response = download(file_url)
    assert response.headers["Content-Type"] == "image/png"
    image = decode(data)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == size
    assert 1 * MB <= len(data) <= 2 * MB, len(data)


def test_square_png_weighs_like_a_real_one_and_renders_fast(kie, url):
    (file_url,) = kie.result_urls(kie.create_ok("a red fox in the snow"))
    data, _ = download(file_url)
    assert 1.3 * MB <= len(data) <= 2 * MB
    figures = stats(url)
    assert figures["image_renders"] == 1 and figures["image_cache_bytes"] == len(data)
    assert figures["image_render_seconds"] < 5  # measured ~0.2-0.35 s; generous for a loaded machine


@pytest.mark.parametrize("model, fields, ext, size", [
    ("google/nano-banana", {"output_format": "jpeg", "aspect_ratio": "16:9"}, "jpeg", (1024, 576)),
    ("google/nano-banana-edit", {"output_format": "jpeg", "image_urls": ["https://e.x/a.png"]}, "jpeg",
     (1024, 1024)),
    ("nano-banana-pro", {"output_format": "jpg", "aspect_ratio": "9:16"}, "jpg", (576, 1024)),
])
def test_jpeg_for_jpeg(kie, model, fields, ext, size):
    (file_url,) = kie.result_urls(kie.create_ok("a jpeg please", model=model, **fields))
    assert file_url.endswith("." + ext)
    data, response = download(file_url)
    assert response.headers["Content-Type"] == "image/jpeg"
    image = decode(data)
    assert image.format == "JPEG" and image.size == size
    assert 40_000 <= len(data) <= 1 * MB  # a normal-quality JPEG of a textured picture, not a stub


def test_different_prompts_give_visibly_different_pictures(kie):
    cat = kie.result_urls(kie.create_ok("a cat on a windowsill [sim:images=2]"))
    ship = kie.result_urls(kie.create_ok("a ship in a storm"))
    again = kie.result_urls(kie.create_ok("a cat on a windowsill"))
    pictures = {name: download(u)[0] for name, u in
                (("cat0", cat[0]), ("cat1", cat[1]), ("ship", ship[0]), ("again", again[0]))}
    assert len(set(pictures.values())) == 4  # every file differs, also two results of one task
    images = {name: decode(data) for name, data in pictures.items()}
    assert difference(images["cat0"], images["ship"]) > 8
    assert difference(images["cat0"], images["cat1"]) > 8


def test_pictures_are_pictures_not_static(kie):
    for ratio in ("1:1", "21:9"):
        (file_url,) = kie.result_urls(kie.create_ok("a quiet harbour", aspect_ratio=ratio))
        image = decode(download(file_url)[0])
        # structure: large areas of different colour (a thumbnail is far from flat) ...
        thumb = image.resize((32, 32), Image.BILINEAR)
        assert max(ImageStat.Stat(thumb).stddev) > 8  # measured >= 15 over 300 random tasks
        # ... and fine grain, not noise: neighbouring pixels are close (pure static differs by ~85)
        shifted = ImageChops.offset(image, 1, 0)
        assert max(ImageStat.Stat(ImageChops.difference(image, shifted)).mean) < 20


def test_same_url_same_bytes(kie, url):
    (file_url,) = kie.result_urls(kie.create_ok("a bowl of fruit"))
    results: list[bytes] = []

    def fetch():
        results.append(download(file_url)[0])

    threads = [threading.Thread(target=fetch) for _ in range(4)]  # all ask before the first render is done
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    fetch()
    assert len(results) == 5 and len(set(results)) == 1
    figures = stats(url)
    assert figures["image_renders"] == 1 and figures["image_cache_hits"] == 4
    assert figures["file_downloads"] == 5
    # the bytes are a function of the task, not of the cache: a fresh render gives them again
    task_id, name = file_url.rsplit("/", 2)[1:]
    assert render_picture("a bowl of fruit", f"{task_id}/0", "1:1", "png") == results[0]


def test_streaming_and_head(kie):
    (file_url,) = kie.result_urls(kie.create_ok("a mountain lake"))
    with requests.get(file_url, stream=True, timeout=30) as response:
        length = int(response.headers["Content-Length"])
        chunks = list(response.iter_content(64 * 1024))
    assert length > MB and sum(map(len, chunks)) == length and len(chunks) > 10
    head = requests.head(file_url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == length and head.content == b""


def test_small_images_switch(kie, url):
    big = kie.result_urls(kie.create_ok("before the switch", aspect_ratio="16:9"))[0]
    big_bytes = download(big)[0]
    configure(url, small_images=True)
    small = kie.result_urls(kie.create_ok("after the switch", aspect_ratio="16:9"))[0]
    data, response = download(small)
    image = decode(data)
    assert image.size == (114, 64) and len(data) < 5_000 and response.headers["Content-Type"] == "image/png"
    configure(url, image_short_side=32)
    assert decode(download(kie.result_urls(kie.create_ok("smaller", aspect_ratio="9:16"))[0])[0]).size == (32, 57)
    # a task keeps the kind of image it was created with: its URL still serves the same bytes
    assert download(big)[0] == big_bytes


def test_small_images_flag_and_knob_checks():
    assert config_from_args(build_parser().parse_args(["--small-images"])).small_images is True
    assert config_from_args(build_parser().parse_args(["--no-small-images"])).small_images is False
    assert SimConfig().small_images is False and SimConfig().image_long_side == 1024
    assert "--small-images" in build_parser().format_help()


def test_image_long_side_knob(kie, url):
    configure(url, image_long_side=512)
    image = decode(download(kie.result_urls(kie.create_ok("half size", aspect_ratio="16:9"))[0])[0])
    assert image.size == (512, 288)
    bad = control(url, "/_sim/config", body={"image_long_side": 10})
    assert bad.status_code == 400 and bad.json()["knob"] == "image_long_side"


def test_cache_is_bounded_by_bytes_least_recently_used_first():
    cache = ImageCache(max_bytes=100)
    renders = []

    def maker(key, size):
        def render():
            renders.append(key)
            return bytes([len(renders)]) * size
        return render

    a = cache.get("a", maker("a", 40))
    cache.get("b", maker("b", 40))
    assert cache.get("a", maker("a", 40)) == a       # a hit: "a" is now the most recent
    cache.get("c", maker("c", 40))                    # 120 bytes: "b" (least recent) goes
    assert cache.stats()["image_cache_bytes"] == 80 and cache.stats()["image_cache_files"] == 2
    cache.get("b", maker("b", 40))
    assert renders == ["a", "b", "c", "b"]
    assert cache.get("huge", maker("huge", 500)) and cache.stats()["image_cache_bytes"] <= 100
