"""Image variants: 256x256 cover webp thumbnails with Pillow (JPEG draft) and with libvips
(pyvips' ``thumbnail_buffer``), and ``adapters.images.make_variant`` against the raw Pillow call.

Thumbnails per second one at a time and from a pool of one thread per core (how
``IMAGE_WORKERS`` runs them), and what one thumbnail adds to the peak RSS of a fresh process
(Linux: the high-water mark is reset just before it, so imports do not hide it). The images are
made here: a noisy gradient (noise does not compress, as a photo's detail does not) as a 24 MP
baseline and progressive JPEG, a 12 MP JPEG and a 2000x2000 PNG. pyvips is optional: ``pip
install pyvips pyvips-binary`` (libvips bundled) to compare.
"""

from __future__ import annotations

import importlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from graphql_files.adapters.images import make_variant
from graphql_files.domain.variants import THUMB

from .common import ROOT

SIDE = 256
QUALITY = 80
MAX_PIXELS = 50_000_000
ROUNDS = 3
IMAGES = {  # name: (width, height, format, save options)
    "24 MP JPEG": (6000, 4000, "JPEG", {"quality": 90}),
    "24 MP progressive JPEG": (6000, 4000, "JPEG", {"quality": 90, "progressive": True}),
    "12 MP JPEG": (4240, 2832, "JPEG", {"quality": 90}),
    "2000x2000 PNG": (2000, 2000, "PNG", {}),
}
Thumbnailer = Callable[[bytes], bytes]


def noisy_gradient(width: int, height: int) -> Image.Image:
    """Gradients across and down, with Gaussian noise on every channel."""
    noise = Image.effect_noise((width, height), 48)
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    channels = [across, down, ImageChops.blend(across, down, 0.5)]
    return Image.merge("RGB", [ImageChops.add(c, noise, 1.0, -64) for c in channels])


def pillow_thumbnail(data: bytes) -> bytes:
    """The raw Pillow call: draft (JPEG shrink-on-load), centre crop, Lanczos, webp."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        scale = max(SIDE / width, SIDE / height)
        image.draft("RGB", (round(width * scale), round(height * scale)))
        factor = image.width / width
        side = min(width, height) * factor
        left, top = (image.width - side) / 2, (image.height - side) / 2
        thumb = image.resize(
            (SIDE, SIDE),
            Image.Resampling.LANCZOS,
            box=(left, top, left + side, top + side),
            reducing_gap=3.0,
        )
    buffer = io.BytesIO()
    thumb.save(buffer, "WEBP", quality=QUALITY)
    return buffer.getvalue()


def adapter_thumbnail(data: bytes) -> bytes:
    return make_variant(data, THUMB, max_pixels=MAX_PIXELS)


def load_pyvips() -> Any | None:
    """pyvips with its operation cache off (it would answer repeats from the cache)."""
    try:
        pyvips = importlib.import_module("pyvips")
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)
    return pyvips


def vips_thumbnailer(pyvips: Any) -> Thumbnailer:
    def thumbnail(data: bytes) -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, SIDE, height=SIDE, crop="centre", size="down")
        out: bytes = image.write_to_buffer(".webp", Q=QUALITY, keep="none")
        return out

    return thumbnail


def implementations() -> dict[str, Thumbnailer]:
    found: dict[str, Thumbnailer] = {"Pillow": pillow_thumbnail, "adapter": adapter_thumbnail}
    pyvips = load_pyvips()
    if pyvips is not None:
        found["pyvips"] = vips_thumbnailer(pyvips)
    return found


def per_second(thumbnail: Thumbnailer, data: bytes, *, count: int, workers: int) -> float:
    """Thumbnails per second, best of ``ROUNDS`` rounds of ``count``."""
    best = 0.0
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(thumbnail, [data] * workers))  # warm: plugins, caches, threads
        for _ in range(ROUNDS):
            start = time.perf_counter()
            list(pool.map(thumbnail, [data] * count))
            best = max(best, count / (time.perf_counter() - start))
    return best


def peak_rss_mib(name: str, path: Path) -> float:
    """The peak RSS one thumbnail adds to a fresh process (median of three, MiB)."""

    def child() -> int:
        args = [sys.executable, "-m", "bench.images", "--child", name, str(path)]
        return int(subprocess.run(args, cwd=ROOT, capture_output=True, check=True).stdout)

    return statistics.median(child() for _ in range(3)) / 1024


def child_main(name: str, path: str) -> None:
    """In a fresh process: import, read, make a thumbnail of a tiny image of the same format
    (plugins load, threads start), then print what one thumbnail of the file adds to the RSS,
    in KiB: the high-water mark after it (reset by ``/proc/self/clear_refs``, Linux) less the
    RSS before it."""
    thumbnail = implementations()[name]
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        tiny, fmt = io.BytesIO(), image.format
    noisy_gradient(64, 64).save(tiny, fmt)
    thumbnail(tiny.getvalue())
    before = _proc_status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark := the RSS now
    thumbnail(data)
    print(_proc_status("VmHWM") - before)


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def run() -> None:
    workers = os.cpu_count() or 1
    thumbnailers = implementations()
    names = list(thumbnailers)
    with tempfile.TemporaryDirectory() as directory:
        files: dict[str, Path] = {}
        for label, (width, height, fmt, options) in IMAGES.items():
            buffer = io.BytesIO()
            noisy_gradient(width, height).save(buffer, fmt, **options)
            files[label] = Path(directory, f"{len(files)}.{fmt.lower()}")
            files[label].write_bytes(buffer.getvalue())
        rates: dict[tuple[str, str], tuple[float, float]] = {}
        peaks: dict[tuple[str, str], float] = {}
        for label, path in files.items():
            data = path.read_bytes()
            for name, thumbnail in thumbnailers.items():
                rates[label, name] = (
                    per_second(thumbnail, data, count=8, workers=1),
                    per_second(thumbnail, data, count=8 * workers, workers=workers),
                )
                peaks[label, name] = peak_rss_mib(name, path)
    print(f"Image variants: {SIDE}x{SIDE} cover webp q{QUALITY} thumbnails ({workers} cores)")
    if "pyvips" not in thumbnailers:
        print("  (pyvips not installed: pip install pyvips pyvips-binary to compare)")
    header = "".join(f"{n:>16}" for n in names)
    print(f"  thumbnails/s, 1 thread / {workers} threads{header}")
    for label in files:
        row = "".join(f"{'{:.1f} / {:.1f}'.format(*rates[label, n]):>16}" for n in names)
        print(f"  {label:<36}{row}")
    print(f"  peak RSS of one resize (MiB){' ' * 8}{header}")
    for label in files:
        row = "".join(f"{peaks[label, n]:>16.0f}" for n in names)
        print(f"  {label:<36}{row}")
    ratios = [rates[label, "adapter"][0] / rates[label, "Pillow"][0] for label in files]
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"  adapter make_variant / raw Pillow (1 thread): {listed}   (goal: >= 0.8)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2], sys.argv[3])
    else:
        run()
