#!/usr/bin/env python3
"""Render the brand images from their SVG sources (custom_components/.../brand/).

Home Assistant 2026.3+ serves a custom integration's brand/ images itself
(icon.png 256x256, icon@2x.png 512x512, logo.png and logo@2x.png). This draws
icon.svg and logo.svg in headless Chromium (Debian's, as scripts/e2e installs
it) on a transparent background, trims the empty margin, centres the icon on a
square and scales with Lanczos:

    icon.png     256 x 256        icon@2x.png  512 x 512
    logo.png     height 128       logo@2x.png  height 256   (landscape)

Run with the e2e environment, which has Playwright and Pillow:

    scripts/e2e --help >/dev/null; .venv-ha/bin/python scripts/render_brand.py

($CHROMIUM overrides /usr/bin/chromium.) The PNGs are committed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
BRAND = ROOT / "custom_components" / "frequenz_dispatch" / "brand"
SCALE = 4
"""Device pixels per SVG unit when drawing, before scaling down."""
ICON_SIZES = {"icon.png": 256, "icon@2x.png": 512}
LOGO_HEIGHTS = {"logo.png": 128, "logo@2x.png": 256}


def draw(svg: Path) -> Image.Image:
    """Draw the SVG in Chromium at SCALE; return it trimmed to its content."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    text = svg.read_text("utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(device_scale_factor=SCALE)
            page.set_content(
                "<html><body style='margin:0;background:transparent'>"
                f"{text}</body></html>"
            )
            png = page.locator("svg").screenshot(omit_background=True)
        finally:
            browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        raise SystemExit(f"render_brand: {svg.name} drew nothing")
    return image.crop(box)


def square(image: Image.Image) -> Image.Image:
    """Centre the image on a transparent square as large as its longer side."""
    side = max(image.size)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def main() -> int:
    """Write the four PNGs next to their sources."""
    icon = square(draw(BRAND / "icon.svg"))
    for name, size in ICON_SIZES.items():
        icon.resize((size, size), Image.Resampling.LANCZOS).save(
            BRAND / name, optimize=True
        )
        print(f"render_brand: {name} {size}x{size}")
    logo = draw(BRAND / "logo.svg")
    for name, height in LOGO_HEIGHTS.items():
        width = round(logo.width * height / logo.height)
        logo.resize((width, height), Image.Resampling.LANCZOS).save(
            BRAND / name, optimize=True
        )
        print(f"render_brand: {name} {width}x{height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
