# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Font discovery for the synthetic text generator.

Fonts come from three places: folders or files the user names, the operating system's font folders, and the
license-clean font packages that the project's install step brings (`fontpkg-*` on PyPI, OFL-1.1 or Apache-2.0,
declared in `setup.cfg`; any package registering the `fontpkg.family` or `fonts_ttf` entry points counts).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from transformers.utils import logging

logger = logging.get_logger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
CATEGORIES = ("sans_serif", "serif", "monospace", "handwriting", "display")
_ENTRY_POINT_GROUPS = ("fontpkg.family", "fonts_ttf")
_PACKAGE_CATEGORIES = {
    "SANS_SERIF": "sans_serif",
    "SERIF": "serif",
    "MONOSPACE": "monospace",
    "HANDWRITING": "handwriting",
    "DISPLAY": "display",
}
_PROBE_SIZE = 24
_MISSING_PROBE = "\U0010fffd"  # a private-use code point no text font maps: renders the font's .notdef glyph


@dataclass(frozen=True)
class FontInfo:
    """One usable font file.

    Args:
        path: the font file.
        family: its family name as the font declares it (e.g. `"Roboto"`).
        style: its style name (e.g. `"Bold Italic"`).
        category: one of `CATEGORIES`, used to balance the fonts the generator draws.
    """

    path: str
    family: str
    style: str
    category: str


def system_font_dirs() -> list[Path]:
    """The operating system's font folders that exist on this machine."""
    home = Path.home()
    if sys.platform == "darwin":
        candidates = [Path("/System/Library/Fonts"), Path("/Library/Fonts"), home / "Library/Fonts"]
    elif sys.platform.startswith("win"):
        windir = Path(os.environ.get("WINDIR", "C:/Windows"))
        local = Path(os.environ.get("LOCALAPPDATA", home / "AppData/Local"))
        candidates = [windir / "Fonts", local / "Microsoft/Windows/Fonts"]
    else:
        data_home = Path(os.environ.get("XDG_DATA_HOME", home / ".local/share"))
        candidates = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts", data_home / "fonts"]
    return [path for path in candidates if path.is_dir()]


def _font_files(location: str | os.PathLike) -> list[Path]:
    path = Path(location).expanduser()
    if path.is_file():
        return [path] if path.suffix.lower() in FONT_SUFFIXES else []
    if not path.is_dir():
        raise FileNotFoundError(f"Font location {os.fspath(location)!r} is neither a font file nor a folder.")
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def package_font_files() -> list[tuple[Path, str | None]]:
    """Font files of installed font packages, with the category their metadata declares (or `None`)."""
    found = []
    for group in _ENTRY_POINT_GROUPS:
        for entry_point in entry_points(group=group):
            module = entry_point.value.split(":")[0]
            try:
                root = Path(str(resources.files(module)))
            except (ImportError, TypeError) as error:  # a broken third-party package must not stop discovery
                logger.debug(f"Skipping font package {module!r}: {error}")
                continue
            category = None
            metadata = root / "metadata.json"
            if metadata.is_file():
                declared = json.loads(metadata.read_text(encoding="utf-8")).get("category") or [None]
                category = _PACKAGE_CATEGORIES.get(declared[0])
            found.extend((path, category) for path in _font_files(root))
    return sorted(set(found))


def _guess_category(family: str, style: str, font: ImageFont.FreeTypeFont) -> str:
    name = f"{family} {style}".lower()
    if any(word in name for word in ("mono", "code", "courier", "console", "typewriter")):
        return "monospace"
    if font.getlength("i") == font.getlength("W") > 0:
        return "monospace"
    if any(word in name for word in ("hand", "script", "marker", "brush", "comic", "chalk", "pen")):
        return "handwriting"
    if "serif" in name and "sans" not in name:
        return "serif"
    if any(word in name for word in ("slab", "times", "garamond", "baskerville", "georgia", "bodoni", "caslon")):
        return "serif"
    return "sans_serif"


def _describe(path: Path, category: str | None) -> FontInfo | None:
    try:
        font = ImageFont.truetype(str(path), _PROBE_SIZE, layout_engine=ImageFont.Layout.BASIC)
        family, style = font.getname()
        if font.getbbox("Ag") is None or not font.getlength("Ag"):
            return None
    except (OSError, ValueError) as error:
        logger.debug(f"Skipping unreadable font {path}: {error}")
        return None
    family, style = family or path.stem, style or "Regular"
    return FontInfo(str(path), family, style, category or _guess_category(family, style, font))


def find_fonts(
    font_dirs: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    use_system_fonts: bool = True,
    use_package_fonts: bool = True,
    required_characters: str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
) -> list[FontInfo]:
    """Find the fonts the synthetic generator can use.

    Args:
        font_dirs: folders (searched recursively) or font files given by the user.
        use_system_fonts: also use the operating system's font folders.
        use_package_fonts: also use fonts from installed font packages (the project's `fontpkg-*` dependencies).
        required_characters: a font is kept only when it draws all of these (this drops symbol and icon fonts).

    Returns:
        One `FontInfo` per distinct (family, style), sorted by path so the list is the same on every call.
    """
    if isinstance(font_dirs, (str, os.PathLike)):
        font_dirs = [font_dirs]
    locations = tuple(os.fspath(Path(location).expanduser().resolve()) for location in font_dirs or [])
    return list(_discover(locations, use_system_fonts, use_package_fonts, required_characters))


@functools.lru_cache(maxsize=16)
def _discover(
    locations: tuple[str, ...], use_system_fonts: bool, use_package_fonts: bool, required_characters: str
) -> tuple[FontInfo, ...]:
    candidates: list[tuple[Path, str | None]] = []
    for location in locations:
        candidates.extend((path, None) for path in _font_files(location))
    if use_package_fonts:
        candidates.extend(package_font_files())
    if use_system_fonts:
        for folder in system_font_dirs():
            candidates.extend((path, None) for path in _font_files(folder))
    fonts, seen = [], set()
    for path, category in candidates:
        info = _describe(path, category)
        if info is None or (info.family, info.style) in seen:
            continue
        if missing_characters(info.path, required_characters):
            logger.debug(f"Skipping {info.path}: it lacks some of {required_characters!r}.")
            continue
        seen.add((info.family, info.style))
        fonts.append(info)
    return tuple(sorted(fonts, key=lambda info: info.path))


def _glyph_image(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        return b""
    image = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255)
    return image.tobytes() + f"{right - left}x{bottom - top}".encode()


@functools.lru_cache(maxsize=16384)
def _has_glyph(path: str, char: str) -> bool:
    font = _probe_font(path)
    if char.isspace():
        return font.getlength(char) > 0
    drawn = _glyph_image(font, char)
    return bool(drawn.strip(b"\x00")) and drawn != _missing_glyph(path)


@functools.lru_cache(maxsize=512)
def _probe_font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, _PROBE_SIZE, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=512)
def _missing_glyph(path: str) -> bytes:
    return _glyph_image(_probe_font(path), _MISSING_PROBE)


def missing_characters(path: str, characters: Iterable[str]) -> str:
    """The characters of `characters` that the font at `path` has no visible glyph for (each once, in order)."""
    return "".join(char for char in dict.fromkeys(characters) if not _has_glyph(path, char))


def is_caseless(path: str) -> bool:
    """Whether the font draws lower-case letters as its capitals (all-caps display fonts such as Bebas Neue)."""
    font = _probe_font(path)
    letters = "abcdefghijklmnopqrstuvwxyz"
    same = sum(_glyph_image(font, char) == _glyph_image(font, char.upper()) for char in letters)
    return same >= len(letters) - 2


__all__ = ["CATEGORIES", "FontInfo", "find_fonts", "is_caseless", "missing_characters", "system_font_dirs"]
