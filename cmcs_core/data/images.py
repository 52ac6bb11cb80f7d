"""Opening images: one place for the checks (unreadable, huge), without importing torch, so
the app can show a dataset image or check an upload on a cold server in milliseconds."""
from __future__ import annotations

from PIL import Image

MAX_IMAGE_PIXELS = 50_000_000


def load_image(source) -> Image.Image:
    """Open an image file or file-like as RGB; a clear error for non-images and huge files."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    try:
        with Image.open(source) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image is too large: {img.width}x{img.height} = {img.width * img.height / 1e6:.0f} "
                                 f"million pixels, the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} million")
            img.draft("RGB", (512, 512))
            return img.convert("RGB")
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"not a readable image: {getattr(source, 'name', source)} ({err})") from err
