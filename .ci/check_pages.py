"""Open the built docs in headless Chromium: the index, an API page and a gallery page render,
with the gallery's figures (non-empty PNGs) and its notebook download.

Usage: python .ci/check_pages.py [docs/_build/html]; writes a screenshot of each page into
docs/_build/screenshots/ for a person to look at.
"""
import html.parser
import subprocess
import sys
import tempfile
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=5000"]


class Images(html.parser.HTMLParser):
    """The src of every <img> and the href of every <a> in a page."""

    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def chromium(page, *options):
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", *options, page.as_uri()],
                              capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit(f"check_pages: chromium failed on {page}:\n{done.stderr[-2000:]}")
    return done.stdout


def check_page(page, expected, screenshots):
    """The page's DOM as Chromium renders it holds each expected string; returns the DOM's <img> and <a>."""
    if not page.is_file():
        sys.exit(f"check_pages: {page} was not built")
    dom = chromium(page, "--dump-dom")
    missing = [text for text in expected if text not in dom]
    if missing:
        sys.exit(f"check_pages: {page} renders without {missing}")
    shot = screenshots / f"{page.stem}.png"
    chromium(page, f"--screenshot={shot}", "--window-size=1280,1800")
    check_png(shot)
    parsed = Images()
    parsed.feed(dom)
    print(f"check_pages: {page.name} renders ({len(dom)} characters of DOM; screenshot {shot})")
    return parsed


def check_png(path):
    data = path.read_bytes() if path.is_file() else b""
    if not data.startswith(PNG_SIGNATURE) or len(data) < 1000:
        sys.exit(f"check_pages: {path} is not a non-empty PNG")


def main(root):
    screenshots = root.parent / "screenshots"
    screenshots.mkdir(exist_ok=True)
    check_page(root / "index.html", ["cnnkit", "Getting started", "User guide", "API reference", "Gallery",
                                     "Performance"], screenshots)
    check_page(root / "api" / "generated" / "cnnkit.layers.html", ["cnnkit.layers", "Conv2d", "MaxPool2d"],
               screenshots)
    check_page(root / "api" / "generated" / "cnnkit.layers.Conv2d.html",
               ['id="cnnkit.layers.Conv2d"', "in_channels", "Parameters"], screenshots)
    gallery = root / "auto_examples" / "plot_01_knn.html"
    parsed = check_page(gallery, ["Nearest neighbours", "cross_validate_k", "best k"], screenshots)
    figures = [src for src in parsed.images if "sphx_glr_plot_01_knn_" in src and "thumb" not in src]
    if len(figures) < 3:
        sys.exit(f"check_pages: {gallery.name} shows {len(figures)} of its 3 figures: {parsed.images}")
    for src in figures:
        check_png((gallery.parent / src).resolve())
    downloads = [href for href in parsed.links if href.endswith((".ipynb", ".py")) and "plot_01_knn" in href]
    for suffix in (".ipynb", ".py"):
        found = [href for href in downloads if href.endswith(suffix)]
        if not found or not (gallery.parent / found[0]).is_file():
            sys.exit(f"check_pages: {gallery.name} offers no {suffix} download ({downloads})")
    print(f"check_pages: {len(figures)} figures and the .py and .ipynb downloads of {gallery.name} are there")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html").resolve())
