"""Make docs/review-page.png, the README's picture of the review page.

    python docs/review_screenshot.py

Builds the sample film (sample_videos/build_sample.py), annotates it with --format html and
photographs the page in Debian's headless Chromium with the browser code the tests use
(apt-get install -y chromium chromium-driver). The PNG is reduced to 256 colours to stay small.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import browser  # noqa: E402

OUT = REPO / "docs" / "review-page.png"


def main() -> None:
    from PIL import Image

    reason = browser.missing()
    if reason:
        raise SystemExit(f"review_screenshot: {reason}")
    with tempfile.TemporaryDirectory(prefix="movieid-screenshot-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(REPO / "sample_videos" / "build_sample.py"), "--out", str(tmp)], check=True)
        subprocess.run([sys.executable, "-m", "movieid", "annotate", "sample.mp4", "--cast", "cast", "--format",
                        "html", "--face-backend", "dlib", "-q", "--cache-dir", "cache"], check=True, cwd=tmp)
        with browser.chromium(1280, 860) as driver:
            driver.get((tmp / "sample.html").as_uri())
            png = driver.get_screenshot_as_png()
            errors = browser.console_errors(driver)
    if errors or browser.screenshot_is_blank(png):
        raise SystemExit(f"review_screenshot: the page did not render cleanly: {errors}")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((1024, round(image.height * 1024 / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
