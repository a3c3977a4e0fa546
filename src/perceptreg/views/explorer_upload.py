"""An upload as the model sees it: cropped to the model's aspect before it is resized."""

from __future__ import annotations

import io

from PIL import Image

from perceptreg.data.images import DIGIT_SHAPE
from perceptreg.display import png_bytes


def centre_cropped(raw: bytes, image_shape: tuple[int, int, int], max_pixels: int) -> bytes:
    """The image's largest centred part of the model's aspect, as PNG bytes, so that a 200x150
    photo becomes its 150x150 middle before it is resized to 32x32, not squashed. Drawn digits
    (MNIST's shape) stay whole: ``as_mnist_digit`` fits their ink keeping its aspect. An image
    of the model's aspect, or over ``max_pixels`` (``decode_image`` refuses it), is left as it is."""
    _, height, width = image_shape
    with Image.open(io.BytesIO(raw)) as picture:
        w, h = picture.size
        if tuple(image_shape) == DIGIT_SHAPE or w * h > max_pixels or w * height == h * width:
            return raw
        keep_w, keep_h = min(w, h * width // height), min(h, w * height // width)
        left, top = (w - keep_w) // 2, (h - keep_h) // 2
        return png_bytes(picture.crop((left, top, left + keep_w, top + keep_h)))
