# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Font discovery for the synthetic text generator.

Fonts come from three places: folders or files the user names, the operating system's font folders, and the
license-clean font packages of the `synth` extra (`pip install "mambaocr-hf[synth]"`: ~200 `fontpkg-*` families on
PyPI, OFL-1.1 or Apache-2.0; any package registering the `fontpkg.family` or `fonts_ttf` entry points counts).

Probing a font (which characters it draws, whether it is all-caps, how wide it is) renders a hundred glyphs; the
results are kept in a small JSON cache (`MAMBAOCR_CACHE`, default `~/.cache/mambaocr_hf`) keyed by the file's path,
size and modification time, so the ~650 files of the extra are probed once per machine (~30 s), not per run.
"""

from __future__ import annotations

import functools
import json
import os
import string
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from transformers.utils import logging

logger = logging.get_logger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
CATEGORIES = ("sans_serif", "condensed", "serif", "monospace", "handwriting", "display")
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
# characters whose glyphs are probed once per font and cached on disk; others are probed when first asked for
PROBE_CHARACTERS = string.printable[:95] + "€£¥"
_CONDENSED_WIDTH = 0.42  # mean advance of a-z per unit of font size below which a sans face counts as condensed
_HEAVY_STYLES = ("bold", "black", "heavy", "extrabold", "semibold", "ultra", "fat")
_PROFILE_VERSION = 1


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

    @property
    def heavy(self) -> bool:
        """Whether the style is bold or heavier (the sign and poster weights scene text is often set in)."""
        return any(word in self.style.lower().replace(" ", "") for word in _HEAVY_STYLES)


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


def cache_root() -> Path:
    """Where the data layer keeps what it computes once per machine: `$MAMBAOCR_CACHE`, else
    `$XDG_CACHE_HOME/mambaocr_hf` (`~/.cache/mambaocr_hf`)."""
    root = os.environ.get("MAMBAOCR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(Path.home(), ".cache")), "mambaocr_hf"
    )
    return Path(root)


class _ProfileCache:
    """Per-file font probes (`_profile`), kept in memory and in a JSON file shared by every process of a machine."""

    def __init__(self):
        self._lock = threading.Lock()
        self._profiles: dict[str, dict] | None = None
        self._dirty = False

    @staticmethod
    def path() -> Path:
        return cache_root() / f"font_profiles_v{_PROFILE_VERSION}.json"

    def _load(self) -> dict[str, dict]:
        if self._profiles is None:
            try:
                self._profiles = json.loads(self.path().read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._profiles = {}
        return self._profiles

    @staticmethod
    def key(path: Path) -> str:
        stat = path.stat()
        return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._load().get(key)

    def put(self, key: str, profile: dict) -> None:
        with self._lock:
            self._load()[key] = profile
            self._dirty = True

    def save(self) -> None:
        """Write new probes to disk (atomically: concurrent processes never read half a file)."""
        with self._lock:
            if not self._dirty:
                return
            target = self.path()
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, encoding="utf-8") as handle:
                    json.dump(self._profiles, handle)
                os.replace(handle.name, target)
                self._dirty = False
            except OSError as error:  # a read-only home only costs the probing time again next run
                logger.debug(f"Could not write the font cache {target}: {error}")


_CACHE = _ProfileCache()
_PROFILES: dict[str, dict] = {}  # font path -> its profile, for fonts found in this process


def _profile(path: Path, category: str | None) -> dict | None:
    """Family, style, category, drawn characters, all-caps, width, variation axes and line height of a font file,
    or `None` when the file cannot be used as a font (unreadable, or draws nothing)."""
    try:
        key = _CACHE.key(path)
    except OSError:
        return None
    cached = _CACHE.get(key)
    if cached is not None and cached.get("declared_category") == category:
        return cached if "family" in cached else None
    profile: dict = {}
    try:
        font = ImageFont.truetype(str(path), _PROBE_SIZE, layout_engine=ImageFont.Layout.BASIC)
        family, style = font.getname()
        if font.getbbox("Ag") is None or not font.getlength("Ag"):
            raise ValueError("it draws no text")
        try:
            axes = [(int(axis["minimum"]), int(axis["maximum"])) for axis in font.get_variation_axes()]
        except OSError:
            axes = []
        missing = _glyph_image(font, _MISSING_PROBE)
        glyphs = "".join(
            char
            for char in PROBE_CHARACTERS
            if (font.getlength(char) > 0 if char.isspace() else _drawn(_glyph_image(font, char), missing))
        )
        large = ImageFont.truetype(str(path), 100, layout_engine=ImageFont.Layout.BASIC)
        letters = string.ascii_lowercase
        same = sum(_glyph_image(font, char) == _glyph_image(font, char.upper()) for char in letters)
        family, style = family or path.stem, style or "Regular"
        guessed = category or _guess_category(family, style, font)
        width = large.getlength(letters) / len(letters) / 100
        if guessed == "sans_serif" and width < _CONDENSED_WIDTH:
            guessed = "condensed"
        profile = {
            "family": family,
            "style": style,
            "category": guessed,
            "glyphs": glyphs,
            "caseless": same >= len(letters) - 2,
            "width": round(width, 4),
            "axes": axes,
            "line_ratio": max(0.5, sum(large.getmetrics()) / 100),
        }
    except (OSError, ValueError) as error:
        logger.debug(f"Skipping unusable font {path}: {error}")
    _CACHE.put(key, {**profile, "declared_category": category})
    return profile or None


def font_profile(path: str) -> dict:
    """The probed facts of a font found by `find_fonts` (`glyphs`, `caseless`, `width`, `axes`, `line_ratio`)."""
    profile = _PROFILES.get(path)
    if profile is None:
        profile = _profile(Path(path), None) or {}
        _PROFILES[path] = profile
    return profile


@dataclass(frozen=True)
class FontScan:
    """What `scan_fonts` found: the usable fonts, and the files it skipped by reason (`unreadable`: not a font,
    or draws nothing; `missing_glyphs`: lacks some of the required characters; `duplicate`: a family and style
    already found)."""

    fonts: tuple[FontInfo, ...]
    skipped: dict[str, tuple[str, ...]]

    def summary(self) -> str:
        families = len({font.family for font in self.fonts})
        skipped = ", ".join(f"{len(paths)} {reason}" for reason, paths in sorted(self.skipped.items()) if paths)
        by_category = Counter(font.category for font in self.fonts)
        categories = ", ".join(f"{count} {name}" for name, count in sorted(by_category.items()))
        return f"{len(self.fonts)} fonts in {families} families ({categories}); skipped {skipped or 'none'}"


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
        use_package_fonts: also use fonts from installed font packages (the `synth` extra's `fontpkg-*` families).
        required_characters: a font is kept only when it draws all of these (this drops symbol and icon fonts).

    Returns:
        One `FontInfo` per distinct (family, style), sorted by path so the list is the same on every call.
    """
    return list(scan_fonts(font_dirs, use_system_fonts, use_package_fonts, required_characters).fonts)


def scan_fonts(
    font_dirs: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    use_system_fonts: bool = True,
    use_package_fonts: bool = True,
    required_characters: str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
) -> FontScan:
    """`find_fonts`, with the files it skipped and why (see `FontScan`)."""
    if isinstance(font_dirs, (str, os.PathLike)):
        font_dirs = [font_dirs]
    locations = tuple(os.fspath(Path(location).expanduser().resolve()) for location in font_dirs or [])
    return _discover(locations, use_system_fonts, use_package_fonts, required_characters)


@functools.lru_cache(maxsize=16)
def _discover(
    locations: tuple[str, ...], use_system_fonts: bool, use_package_fonts: bool, required_characters: str
) -> FontScan:
    candidates: list[tuple[Path, str | None]] = []
    for location in locations:
        candidates.extend((path, None) for path in _font_files(location))
    if use_package_fonts:
        candidates.extend(package_font_files())
    if use_system_fonts:
        for folder in system_font_dirs():
            candidates.extend((path, None) for path in _font_files(folder))
    fonts, seen = [], set()
    skipped: dict[str, list[str]] = {"unreadable": [], "missing_glyphs": [], "duplicate": []}
    iterator = candidates
    if len(candidates) > 50 and any(_CACHE.get(_safe_key(path)) is None for path, _ in candidates):
        from tqdm.auto import tqdm

        iterator = tqdm(candidates, desc="Probing fonts (once per machine)", unit="font")
    for path, category in iterator:
        profile = _profile(path, category)
        if profile is None:
            skipped["unreadable"].append(str(path))
            continue
        info = FontInfo(str(path), profile["family"], profile["style"], profile["category"])
        if (info.family, info.style) in seen:
            skipped["duplicate"].append(info.path)
            continue
        _PROFILES[info.path] = profile
        if missing_characters(info.path, required_characters):
            logger.debug(f"Skipping {info.path}: it lacks some of {required_characters!r}.")
            skipped["missing_glyphs"].append(info.path)
            continue
        seen.add((info.family, info.style))
        fonts.append(info)
    _CACHE.save()
    return FontScan(
        tuple(sorted(fonts, key=lambda info: info.path)), {key: tuple(value) for key, value in skipped.items()}
    )


def _safe_key(path: Path) -> str:
    try:
        return _CACHE.key(path)
    except OSError:
        return str(path)


def _glyph_image(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        return b""
    image = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255)
    return image.tobytes() + f"{right - left}x{bottom - top}".encode()


def _drawn(glyph: bytes, missing: bytes) -> bool:
    return bool(glyph.strip(b"\x00")) and glyph != missing


@functools.lru_cache(maxsize=65536)
def _has_glyph(path: str, char: str) -> bool:
    profile = _PROFILES.get(path)
    if profile and char in PROBE_CHARACTERS:
        return char in profile["glyphs"]
    font = _probe_font(path)
    if char.isspace():
        return font.getlength(char) > 0
    return _drawn(_glyph_image(font, char), _missing_glyph(path))


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
    return bool(font_profile(path).get("caseless"))


__all__ = [
    "CATEGORIES",
    "FontInfo",
    "FontScan",
    "find_fonts",
    "font_profile",
    "is_caseless",
    "missing_characters",
    "scan_fonts",
    "system_font_dirs",
]
