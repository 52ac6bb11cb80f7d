"""Drawn scenes with one planted image cue, plus the caption that stands in for the pixels.

Cue colours are exact RGB values that no decoration uses and PIL draws without
anti-aliasing, so the cue can be found again in the PNG by colour alone (tests, read-back).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; x1, y1 exclusive (numpy slicing)

CUE_KINDS = {"object": "a drawn object", "background": "background colour"}
CUE_OBJECTS: dict[int, tuple[str, str, tuple[int, int, int]]] = {  # class -> name, shape, RGB
    2: ("magenta diamond", "diamond", (255, 0, 255)),
    0: ("cyan square", "square", (0, 255, 255)),
    1: ("orange triangle", "triangle", (255, 140, 0)),
}
CUE_BACKGROUNDS: dict[int, tuple[str, tuple[int, int, int]]] = {
    2: ("teal", (0, 128, 128)), 0: ("purple", (128, 0, 128)), 1: ("olive", (128, 128, 0)),
}
PLAIN_BACKGROUNDS = (("sky-blue", (135, 206, 235)), ("light grey", (220, 220, 220)),
                     ("beige", (245, 245, 220)), ("pale green", (200, 230, 200)),
                     ("lavender", (230, 230, 250)))
SHAPE_COLOURS = (("red", (220, 20, 60)), ("blue", (30, 60, 200)), ("green", (46, 139, 87)),
                 ("black", (20, 20, 20)), ("white", (255, 255, 255)))
# skimage.data photos shipped inside the wheel (no download); name -> caption phrase
PHOTOS = {"astronaut": "an astronaut", "coffee": "a cup of coffee", "chelsea": "a cat",
          "rocket": "a rocket on a launch pad", "camera": "a man with a camera",
          "hubble_deep_field": "a field of galaxies", "coins": "a tray of coins",
          "moon": "the surface of the moon"}
DECORATIONS = ("sun", "cloud", "tree", "house", "face", "shape")
MARGIN = 8  # decorations stay off the border, so a corner pixel is always background


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    caption: str
    bbox: Box  # where the spurious property is drawn


def load_photos() -> dict[str, np.ndarray]:
    """RGB uint8 arrays of the bundled sample photos; loaded once per generation run."""
    from skimage import data

    out = {}
    for name in PHOTOS:
        arr = getattr(data, name)()
        out[name] = np.stack([arr] * 3, axis=-1) if arr.ndim == 2 else arr[..., :3]
    return out


def cue_class_at(image: np.ndarray, kind: str, bbox: Box) -> int | None:
    """Read the planted class back from pixels: the colour at the cue's reference pixel."""
    x0, y0, x1, y1 = bbox
    y, x = ((y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2) if kind == "object" else (1, 1)
    rgb = tuple(int(v) for v in image[y, x, :3])
    table = ({c: v[2] for c, v in CUE_OBJECTS.items()} if kind == "object"
             else {c: v[1] for c, v in CUE_BACKGROUNDS.items()})
    return next((c for c, colour in table.items() if colour == rgb), None)


def draw_scene(rng: np.random.Generator, size: int, kind: str, cue_class: int,
               photos: dict[str, np.ndarray], photo_fraction: float) -> Scene:
    """A scene whose only label-related property is the cue of `cue_class`."""
    use_photo = kind == "object" and photos and rng.random() < photo_fraction
    if use_photo:
        name = sorted(photos)[int(rng.integers(len(photos)))]
        image = _photo_crop(rng, photos[name], size)
        opening, parts = f"A photo of {PHOTOS[name]}", []
    else:
        if kind == "background":
            bg_name, bg = CUE_BACKGROUNDS[cue_class]
        else:
            bg_name, bg = PLAIN_BACKGROUNDS[int(rng.integers(len(PLAIN_BACKGROUNDS)))]
        image = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(image)
        kinds = rng.choice(len(DECORATIONS), size=int(rng.integers(1, 4)), replace=False)
        parts = [_decorate(rng, draw, size, DECORATIONS[int(i)]) for i in kinds]
        opening = f"{_article(bg_name).capitalize()} {bg_name} background"
    if kind == "background":
        return Scene(image, f"{opening} with {_join(parts)}.", (0, 0, size, size))
    bbox = _draw_cue_object(rng, ImageDraw.Draw(image), size, cue_class)
    where = _where(bbox, size)
    name = CUE_OBJECTS[cue_class][0]
    body = f"{opening} with {_join(parts)}" if parts else opening
    return Scene(image, f"{body}, and a small {name} at the {where}.", bbox)


def _photo_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> Image.Image:
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = Image.fromarray(np.ascontiguousarray(photo[y:y + side, x:x + side]))
    return crop.resize((size, size), Image.Resampling.BILINEAR)


def _draw_cue_object(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int,
                     cue_class: int) -> Box:
    side = max(8, size // 5)
    x0 = int(rng.integers(MARGIN, size - MARGIN - side + 1))
    y0 = int(rng.integers(MARGIN, size - MARGIN - side + 1))
    _, shape, colour = CUE_OBJECTS[cue_class]
    _shape(draw, shape, (x0, y0, x0 + side, y0 + side), colour)
    return (x0, y0, x0 + side, y0 + side)


def _shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    if shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    else:  # diamond
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)


def _decorate(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, what: str) -> str:
    """Draw one label-free decoration (faces smile or frown at random) and name it."""
    side = int(rng.integers(size // 6, size // 3))
    x0 = int(rng.integers(MARGIN, size - MARGIN - side))
    y0 = int(rng.integers(MARGIN, size - MARGIN - side))
    x1, y1 = x0 + side, y0 + side
    if what == "sun":
        draw.ellipse((x0 + side // 4, y0 + side // 4, x1 - side // 4, y1 - side // 4), fill=(255, 215, 0))
        c = (x0 + x1) // 2
        for dx, dy in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            draw.line((c + dx * side // 3, (y0 + y1) // 2 + dy * side // 3,
                       c + dx * side // 2, (y0 + y1) // 2 + dy * side // 2), fill=(255, 215, 0), width=2)
        return "a yellow sun"
    if what == "cloud":
        for fx in (0.0, 0.3, 0.55):
            draw.ellipse((x0 + int(fx * side), y0 + side // 3, x0 + int((fx + 0.45) * side), y1 - side // 4),
                         fill=(250, 250, 250))
        return "a white cloud"
    if what == "tree":
        draw.rectangle((x0 + side * 2 // 5, y0 + side // 2, x0 + side * 3 // 5, y1), fill=(120, 72, 30))
        draw.ellipse((x0, y0, x1, y0 + side * 2 // 3), fill=(34, 139, 34))
        return "a green tree"
    if what == "house":
        draw.rectangle((x0 + side // 6, y0 + side // 2, x1 - side // 6, y1), fill=(178, 34, 34))
        draw.polygon([((x0 + x1) // 2, y0), (x1, y0 + side // 2), (x0, y0 + side // 2)], fill=(90, 50, 30))
        return "a red house"
    if what == "face":
        return _face(rng, draw, (x0, y0, x1, y1))
    shape = ("circle", "square", "triangle")[int(rng.integers(3))]
    colour_name, colour = SHAPE_COLOURS[int(rng.integers(len(SHAPE_COLOURS)))]
    _shape(draw, shape, (x0, y0, x1, y1), colour)
    return f"a {colour_name} {shape}"


def _face(rng: np.random.Generator, draw: ImageDraw.ImageDraw, box: Box) -> str:
    x0, y0, x1, y1 = box
    s = x1 - x0
    draw.ellipse(box, fill=(255, 220, 90), outline=(20, 20, 20))
    for ex in (x0 + s // 3, x0 + 2 * s // 3):
        draw.ellipse((ex - s // 16, y0 + s // 3 - s // 16, ex + s // 16, y0 + s // 3 + s // 16), fill=(20, 20, 20))
    mouth = ("smiling", "frowning", "straight")[int(rng.integers(3))]
    m = (x0 + s // 4, y0 + s // 2, x1 - s // 4, y1 - s // 6)
    if mouth == "smiling":
        draw.arc(m, 20, 160, fill=(20, 20, 20), width=2)
    elif mouth == "frowning":
        draw.arc((m[0], m[1] + s // 6, m[2], m[3] + s // 6), 200, 340, fill=(20, 20, 20), width=2)
    else:
        draw.line((m[0], (m[1] + m[3]) // 2, m[2], (m[1] + m[3]) // 2), fill=(20, 20, 20), width=2)
    return "a face with a straight mouth" if mouth == "straight" else f"a {mouth} face"


def _where(box: Box, size: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    return f"{row} {col}".strip() or "centre"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
