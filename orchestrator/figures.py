"""Is a figure a figure? A file that exists, decodes as an image, and shows more than one colour.

The pipeline we replace put empty plots into papers: a script that crashed after `plt.figure()` or
plotted nothing still left a white PNG behind. These checks catch that before the paper sees it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from .paths import readable

# a plot has axes, ticks and marks: far more than a handful of pixels that differ from the background
_MIN_DIFFERENT_FRACTION = 0.002
_MIN_DIFFERENT_PIXELS = 30
_TOLERANCE = 8 / 255  # JPEG noise and anti-aliasing of an otherwise flat image


class FigureCheck(BaseModel):
    """Whether one figure file is a real, non-blank image, and why not."""

    path: str
    ok: bool
    problem: str = ""
    width: int = 0
    height: int = 0


def find_figures(root: Path, globs: list[str]) -> list[Path]:
    """Files directly in `root` (or under a glob's folder) that match the template's figure globs."""
    found: set[Path] = set()
    for pattern in globs:
        for p in root.glob(pattern):
            rel = p.relative_to(root)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts) and readable(root, rel) is not None:
                found.add(p)
    return sorted(found)


def _load(path: Path):
    """The image as a float array in [0, 1], shape (h, w, channels); PDFs are not decoded here."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgba = im.convert("RGBA")
    return np.asarray(rgba, dtype=np.float32) / 255.0


def check_image(path: Path, *, rel: str | None = None) -> FigureCheck:
    """Exists, is readable, is not blank or a single colour."""
    name = rel or str(path)
    if not path.is_file():
        return FigureCheck(path=name, ok=False, problem="the file was not written")
    if path.stat().st_size == 0:
        return FigureCheck(path=name, ok=False, problem="the file is empty (0 bytes)")
    if path.suffix.lower() == ".pdf":
        head = path.read_bytes()[:5]
        if head != b"%PDF-":
            return FigureCheck(path=name, ok=False, problem="not a PDF file (no %PDF- header)")
        return FigureCheck(path=name, ok=True)  # vector figures: readable is all we can cheaply say
    import numpy as np
    from PIL import Image

    try:
        px = _load(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's ways of saying 'broken'
        return FigureCheck(path=name, ok=False, problem=f"not a readable image ({exc.__class__.__name__}: {str(exc)[:120]})")
    h, w = px.shape[:2]
    if h < 8 or w < 8:
        return FigureCheck(path=name, ok=False, problem=f"the image is only {w}x{h} pixels", width=w, height=h)
    alpha = px[..., 3:4]
    # composite on white, as a page would show it: a fully transparent image is blank
    rgb = px[..., :3] * alpha + (1.0 - alpha)
    background = np.median(rgb.reshape(-1, 3), axis=0)
    differs = np.abs(rgb - background).max(axis=2) > _TOLERANCE
    n = int(differs.sum())
    if n < max(_MIN_DIFFERENT_PIXELS, _MIN_DIFFERENT_FRACTION * h * w):
        colour = "#" + "".join(f"{round(c * 255):02x}" for c in background)
        what = "blank" if n == 0 else f"nearly blank ({n} of {h * w} pixels differ)"
        return FigureCheck(path=name, ok=False, width=w, height=h,
                           problem=f"the image is {what}: a single colour ({colour}); nothing was drawn")
    return FigureCheck(path=name, ok=True, width=w, height=h)
