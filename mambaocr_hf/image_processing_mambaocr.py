# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Image processor for MambaOCR: fixed height, kept aspect ratio, right padding to the batch's widest image."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import logging

logger = logging.get_logger(__name__)

# the width a saved checkpoint reads in one pass (512 frames); wider images are squeezed to it
INFERENCE_MAX_WIDTH = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


_WARNED: set[str] = set()


def _warn_once(kind: str, message: str) -> None:
    """Log `message` the first time a `kind` of doubtful input is seen in this process (a data pipeline would
    otherwise repeat it for every image)."""
    if kind not in _WARNED:
        _WARNED.add(kind)
        logger.warning(message + " This is said once.")


def _check_float_range(array: np.ndarray, index: int) -> None:
    """Refuse NaN and warn about what the float-to-uint8 conversion would silently destroy: infinities, and values
    outside both [0, 1] and [0, 255] (an already normalised tensor is clipped to near-black)."""
    if not array.size:
        return
    if np.isnan(array).any():
        raise ValueError(
            f"Image {index}: the float array holds NaN values ({int(np.isnan(array).sum())} of {array.size}), which "
            "are no pixel value (they would read as black). Pass a finite image: a PIL image, uint8 values in "
            "[0, 255], or floats in [0, 1]."
        )
    finite = np.isfinite(array)
    if not finite.all():
        _warn_once(
            "inf",
            f"Image {index}: the float array holds {int((~finite).sum())} infinite values; they are read as black "
            "(-inf) or white (+inf). Pass a finite image: a PIL image, uint8 values in [0, 255], or floats in [0, 1].",
        )
        array = array[finite]
        if not array.size:
            return
    low, high = float(array.min()), float(array.max())
    if low < -0.01 or high > 255.5:
        _warn_once(
            "range",
            f"Image {index}: float values in [{low:.3g}, {high:.3g}] fit neither [0, 1] nor [0, 255]; they are "
            "clipped to [0, 255], which loses most of the image (an already normalised tensor, e.g. with ImageNet "
            "mean and std, turns near-black). Pass the raw image instead (a PIL image, uint8 values in [0, 255], or "
            "floats in [0, 1]): the processor normalises it itself.",
        )


def _array_to_uint8(array: np.ndarray, index: int = 0) -> np.ndarray:
    """Bring an integer or float array of any common range to uint8 (16-bit by its top byte, floats in [0, 1] or
    [0, 255]). NaN is refused; infinities and floats outside both ranges are clipped, with a warning."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        top = int(array.max()) if array.size else 0
        if top > 255:  # e.g. PIL mode "I" holding 16-bit data
            return (array.astype(np.float64) * (255.0 / (65535 if top <= 65535 else top))).astype(np.uint8)
        return array.clip(0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        _check_float_range(array, index)
        array = np.nan_to_num(array.astype(np.float32))
        scale = 255.0 if array.size and float(array.max()) <= 1.0 else 1.0
        return (array * scale).clip(0, 255).round().astype(np.uint8)
    raise TypeError(f"Unsupported image array dtype {array.dtype}.")


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_pil_image(image, index: int = 0) -> Image.Image:
    """Convert one input (PIL image, numpy array, torch tensor or file path) to an RGB or L PIL image.

    PIL modes L, RGB, RGBA/LA (composited on white), P, CMYK, 1, I;16 and I/F are supported; arrays are `[H, W]`,
    `[H, W, C]` or `[C, H, W]` with 1, 3 or 4 channels, of uint8, uint16, bool, integer or float type.
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                opened.load()
                # camera photos store their rotation in EXIF: read them upright, as transformers' `load_image` does
                image = ImageOps.exif_transpose(opened)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"Image {index}: no such file {os.fspath(image)!r}.") from error
        except Image.DecompressionBombError as error:
            raise ValueError(
                f"Image {index}: {os.fspath(image)!r} has too many pixels to decode safely ({error} If you trust the "
                "file, raise PIL.Image.MAX_IMAGE_PIXELS.)"
            ) from error
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"Image {index}: {os.fspath(image)!r} is not a readable image ({error}).") from error
    if isinstance(image, Image.Image):
        if image.getexif().get(Image.ExifTags.Base.Orientation, 1) != 1:
            image = ImageOps.exif_transpose(image)  # as for paths (and transformers' `load_image`): read upright
        if image.width == 0 or image.height == 0:
            raise ValueError(f"Image {index} is empty (size {image.width}x{image.height}); it has no pixels to read.")
        if image.mode in ("RGB", "L"):
            return image
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            return _composite_on_white(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return Image.fromarray(_array_to_uint8(np.asarray(image), index))
        return image.convert("RGB")  # P, CMYK, 1, YCbCr, LAB, HSV
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu()
        if image.is_floating_point():
            image = image.float()  # numpy has no bfloat16
        if image.dim() == 3 and image.shape[0] in (1, 3, 4):
            image = image.permute(1, 2, 0)  # torch images are channels-first
        image = image.numpy()
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = image.transpose(1, 2, 0)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            raise ValueError(
                f"Image {index}: array of shape {image.shape} is not an image; expected [H, W], [H, W, C] or "
                "[C, H, W] with C in (1, 3, 4)."
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"Image {index} is empty (shape {image.shape}); it has no pixels to read.")
        array = _array_to_uint8(image, index)
        if array.ndim == 3 and array.shape[-1] == 4:
            return _composite_on_white(Image.fromarray(array, mode="RGBA"))
        return Image.fromarray(np.ascontiguousarray(array))
    raise TypeError(
        f"Image {index} has type {type(image).__name__}; expected a PIL image, numpy array, torch tensor or file path."
    )


def target_width(
    width: int,
    height: int,
    image_height: int = 32,
    min_width: int = 16,
    max_width: int = INFERENCE_MAX_WIDTH,
    width_multiple: int = 4,
) -> int:
    """Width of an image of `width`×`height` once resized to `image_height`: aspect ratio kept, clamped to
    `[min_width, max_width]`, rounded up to a multiple of `width_multiple` (and never past `max_width`). The one
    definition the image processor resizes by and the data filters count CTC frames by."""
    scaled = min(max(_scaled_width(width, height, image_height), min_width), max_width)
    return min(-(-scaled // width_multiple) * width_multiple, max_width // width_multiple * width_multiple)


def check_pad_to_multiple_of(pad_to_multiple_of: int | None, width_multiple: int = 1) -> None:
    """A `ValueError` unless `pad_to_multiple_of` is `None` or a positive multiple of `width_multiple` (the image
    processor's, so a padded batch still maps to whole frames)."""
    if pad_to_multiple_of is None:
        return
    if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
        raise ValueError(f"`pad_to_multiple_of` must be a positive integer or None, got {pad_to_multiple_of!r}.")
    if pad_to_multiple_of % width_multiple:
        raise ValueError(
            f"`pad_to_multiple_of` ({pad_to_multiple_of}) must be a multiple of the image processor's "
            f"`width_multiple` ({width_multiple}), so the padded batch still maps to whole frames."
        )


def pad_images(
    images: Sequence, return_tensors: str | None = None, pad_to_multiple_of: int | None = None
) -> BatchFeature:
    """Batch prepared images (`[num_channels, height, width]` arrays or tensors of one height) by padding them with 0
    on the right to the widest, or with `pad_to_multiple_of` to the next multiple of it; `pixel_mask` is 1 on each
    image's own columns. The image processor's batching, and the pipeline's.

    Fewer distinct batch widths are faster to train on a CPU: oneDNN builds its convolution kernels for each input
    shape, and with bf16 that costs more than the extra padding (docs/speed.md)."""
    check_pad_to_multiple_of(pad_to_multiple_of)
    arrays = [np.asarray(image, dtype=np.float32) for image in images]
    widest = max(array.shape[-1] for array in arrays)
    if pad_to_multiple_of is not None:
        widest = -(-widest // pad_to_multiple_of) * pad_to_multiple_of
    pixel_values = np.zeros((len(arrays), *arrays[0].shape[:-1], widest), dtype=np.float32)
    pixel_mask = np.zeros((len(arrays), widest), dtype=np.int64)
    for index, array in enumerate(arrays):
        pixel_values[index, ..., : array.shape[-1]] = array
        pixel_mask[index, : array.shape[-1]] = 1
    return BatchFeature({"pixel_values": pixel_values, "pixel_mask": pixel_mask}, tensor_type=return_tensors)


def width_sorted_batches(widths: Sequence[int], batch_size: int) -> list[list[int]]:
    """The indices of `widths` in batches of `batch_size`, in order of width: each batch holds neighbours in width and
    pads little (`pad_images` pads to a batch's widest). The pipeline's and the evaluation script's batching of a
    pool of images; the caller gives the reads back in its own order."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    order = sorted(range(len(widths)), key=widths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _scaled_width(width: int, height: int, image_height: int) -> int:
    """Width at `image_height` with the aspect ratio kept (at least 1)."""
    return max(1, round(width * image_height / height))


class MambaOCRImageProcessor(BaseImageProcessor):
    r"""
    Prepares text-line images for [`MambaOCRForCTC`]: resize to `image_height` keeping the aspect ratio, clamp the
    width to `[min_width, max_width]` (wider images are squeezed to `max_width`, with a warning), round it up to a
    multiple of `width_multiple` so every image maps to whole frames, normalise, and pad on the right to the batch's
    widest image.

    Args:
        image_height (`int`, *optional*, defaults to 32): height of `pixel_values`.
        min_width (`int`, *optional*, defaults to 16): narrower images are stretched to this width.
        max_width (`int`, *optional*, defaults to 2048): wider images are squeezed to this width.
        width_multiple (`int`, *optional*, defaults to 4): widths are rounded up to a multiple of this (the model's
            `frame_stride`).
        resample (`str`, *optional*, defaults to `"bilinear"`): PIL resampling filter name.
        do_normalize (`bool`, *optional*, defaults to `True`): normalise with `image_mean` / `image_std`.
        image_mean, image_std (`tuple[float, ...]`, *optional*): ImageNet statistics by default (the backbone's).
        num_channels (`int`, *optional*, defaults to 3): 3 for RGB, 1 for grayscale.

    Returns a [`BatchFeature`] with `pixel_values` `[batch, num_channels, image_height, width]` (padding is 0 after
    normalisation) and `pixel_mask` `[batch, width]` (1 on the image's columns, 0 on padding).

    Example:

    ```python
    >>> from PIL import Image
    >>> from mambaocr_hf import MambaOCRImageProcessor

    >>> processor = MambaOCRImageProcessor()
    >>> batch = processor([Image.new("RGB", (100, 50)), Image.new("L", (40, 32))], return_tensors="pt")
    >>> batch["pixel_values"].shape, batch["pixel_mask"].sum(-1).tolist()
    (torch.Size([2, 3, 32, 64]), [64, 40])
    ```
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(
        self,
        image_height: int = 32,
        min_width: int = 16,
        max_width: int = INFERENCE_MAX_WIDTH,
        width_multiple: int = 4,
        resample: str = "bilinear",
        do_normalize: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        num_channels: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resample not in _RESAMPLE:
            raise ValueError(f"`resample` must be one of {list(_RESAMPLE)}, got {resample!r}.")
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels}.")
        if not 0 < min_width <= max_width:
            raise ValueError(f"Need 0 < min_width <= max_width, got {min_width} and {max_width}.")
        if image_height <= 0 or width_multiple <= 0:
            raise ValueError("`image_height` and `width_multiple` must be positive.")
        if max_width // width_multiple * width_multiple < min_width:
            raise ValueError(
                f"No width from min_width={min_width} to max_width={max_width} is a multiple of "
                f"width_multiple={width_multiple}: raise max_width to at least {-(-min_width // width_multiple) * width_multiple}."
            )
        self.image_height = image_height
        self.min_width = min_width
        self.max_width = max_width
        self.width_multiple = width_multiple
        self.resample = resample
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.num_channels = num_channels

    @classmethod
    def for_model_config(cls, config, **kwargs) -> MambaOCRImageProcessor:
        """The image processor a `MambaOCRConfig` needs: its `max_width`, its channels, and widths rounded to its
        `frame_stride` (so padding never changes an image's frames)."""
        options = {"max_width": config.max_width, "width_multiple": config.frame_stride}
        return cls(**{**options, "num_channels": config.num_channels, **kwargs})

    def target_width(self, width: int, height: int) -> int:
        """Width after resizing an image of `width`×`height` (aspect kept, clamped, rounded up to `width_multiple`;
        see the module's `target_width`)."""
        if _scaled_width(width, height, self.image_height) > self.max_width:
            # one message per max_width, not per image (warning_once keys on the text)
            logger.warning_once(
                f"Images wider than max_width={self.max_width} px at height {self.image_height} are squeezed to that "
                "width (text may get harder to read). Raise `max_width` for longer lines."
            )
        return target_width(width, height, self.image_height, self.min_width, self.max_width, self.width_multiple)

    def resize_and_normalize(self, image, index: int = 0) -> np.ndarray:
        """One image → float32 `[num_channels, image_height, width]`."""
        pil = to_pil_image(image, index)
        pil = pil.convert("L" if self.num_channels == 1 else "RGB")
        width = self.target_width(pil.width, pil.height)
        pil = pil.resize((width, self.image_height), _RESAMPLE[self.resample])
        array = np.asarray(pil, dtype=np.float32) / 255.0
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # [channels, height, width]
        if self.do_normalize:
            mean = np.asarray(self.image_mean[: self.num_channels], dtype=np.float32)[:, None, None]
            std = np.asarray(self.image_std[: self.num_channels], dtype=np.float32)[:, None, None]
            array = (array - mean) / std
        return array

    def preprocess(
        self, images, return_tensors: str | None = None, pad_to_multiple_of: int | None = None, **kwargs
    ) -> BatchFeature:
        """Prepare one image or a list of them (see the class docstring). With `pad_to_multiple_of`, the batch is
        padded to a multiple of that many pixels (a multiple of `width_multiple` keeps every image on whole frames).
        """
        check_pad_to_multiple_of(pad_to_multiple_of, self.width_multiple)
        if kwargs:
            unknown = sorted(kwargs)
            raise TypeError(f"MambaOCRImageProcessor got unexpected arguments {unknown}.")
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("Got an empty list of images; pass at least one image.")
        else:
            is_batched_array = getattr(images, "ndim", 0) == 4
            images = list(images) if is_batched_array else [images]
        arrays = [self.resize_and_normalize(image, index) for index, image in enumerate(images)]
        return pad_images(arrays, return_tensors=return_tensors, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, images, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)


__all__ = ["MambaOCRImageProcessor", "check_pad_to_multiple_of", "pad_images", "target_width", "width_sorted_batches"]
