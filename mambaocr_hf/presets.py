# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Training presets: JSON files of the scripts' flags (`scripts/configs/*.json`). A preset may extend another with
`"extends": "other.json"` (a path relative to the preset's own folder): the other preset's values, with this file's
keys replacing them, so a variant of a recipe names only what it changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

EXTENDS_KEY = "extends"


def load_preset(path: str | os.PathLike) -> dict:
    """The values of the preset at `path`, with the presets it extends resolved (the base's values first, each
    extending file's keys replacing them; a key's value replaces the base's whole, a `synthetic_config` included).

    Raises:
        FileNotFoundError: the preset, or a preset it extends, does not exist (the message names which).
        ValueError: the file is not a JSON object, `extends` is not a file name, or the presets extend each other in a
            cycle.
    """
    chain: list[Path] = []
    path = Path(path)
    values: list[dict] = []
    while True:
        resolved = path.resolve()
        if resolved in chain:
            cycle = " -> ".join(str(item) for item in [*chain, resolved])
            raise ValueError(f"Presets extend each other in a cycle: {cycle}. Remove one of the `extends` keys.")
        if not path.is_file():
            named = f" (named by `extends` in {chain[-1]})" if chain else ""
            raise FileNotFoundError(f"No preset file {path}{named}.")
        with open(path, encoding="utf-8") as handle:
            try:
                preset = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"The preset {path} is not valid JSON: {error}.") from error
        if not isinstance(preset, dict):
            raise ValueError(f"The preset {path} must be a JSON object of flag names and values.")
        chain.append(resolved)
        values.append(preset)
        base = preset.pop(EXTENDS_KEY, None)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ValueError(f'{path}: `{EXTENDS_KEY}` must name another preset file, e.g. "scene_text_cpu.json".')
        path = path.parent / base
    merged: dict = {}
    for preset in reversed(values):
        merged.update(preset)
    return merged
