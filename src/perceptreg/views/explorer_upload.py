"""An upload as the model sees it: checked, cropped to the model's aspect before it is
resized, and decoded as every image is (``decode_upload``)."""

from __future__ import annotations

import io

import torch
from PIL import Image, UnidentifiedImageError

from perceptreg.core.errors import FormatError, PerceptregError, TooLargeError
from perceptreg.data import ImageDecodeError, ImageTooLargeError, decode_image, to_float
from perceptreg.data.images import DIGIT_SHAPE
from perceptreg.display import png_bytes

MAX_UPLOAD_BYTES = 2_000_000
MAX_UPLOAD_PIXELS = 4096 * 4096


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


def decode_upload(raw: bytes, size: int | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Uploaded PNG/JPEG bytes -> a float image (1, C, H, W) for the model, else a
    ``PerceptregError`` saying why (``TooLargeError``, ``FormatError``: the server's 413, 415). Its centre
    at the model's aspect (``centre_cropped``), decoded as every image is; drawn digits fitted as MNIST's."""
    if not raw:
        raise PerceptregError("the upload is empty; send a PNG or JPEG image")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise TooLargeError(f"the upload is {size or len(raw):,} bytes; at most {MAX_UPLOAD_BYTES:,} are accepted")
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            kind = picture.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise PerceptregError(f"the upload is not a readable PNG or JPEG image ({type(err).__name__})") from err
    if kind not in ("PNG", "JPEG"):
        raise FormatError(f"only PNG and JPEG images are accepted, this is {kind}")
    try:
        image, _ = decode_image(centre_cropped(raw, image_shape, MAX_UPLOAD_PIXELS), image_shape, fit_digit=True,
                                max_pixels=MAX_UPLOAD_PIXELS)
    except ImageDecodeError as err:
        raise (TooLargeError if isinstance(err, ImageTooLargeError) else PerceptregError)(f"the upload: {err}") from err
    if is_blank(raw):
        raise PerceptregError("the image is empty (every pixel has the same colour); draw a digit or "
                              "choose a picture with something on it")
    return to_float(image.unsqueeze(0))


def is_blank(raw: bytes) -> bool:
    """Whether a (size-checked) image shows nothing: one colour throughout, or transparent."""
    with Image.open(io.BytesIO(raw)) as picture:
        bands = picture.convert("RGBA").getextrema()
    return bands[3][1] == 0 or all(low == high for low, high in bands)
