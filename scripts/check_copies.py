# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Check (or, with `--fix`, regenerate) the Python copies of files written in another language.

Checkpoints carry Python files only (transformers copies a model's relatively imported modules), so the C source of
the CPU kernels, `mambaocr_hf/cpu_kernels.c`, travels as a string in a generated module,
`mambaocr_hf/cpu_kernels_source.py`. The `.c` file is the source of truth: edit it, then run `make fix-copies`. The
test suite (and `make lint`) fails while the two differ, as transformers' `make fix-copies` / `check_copies.py` do
for its copied code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (source of truth, generated module, name of the string in it)
COPIES = [("mambaocr_hf/cpu_kernels.c", "mambaocr_hf/cpu_kernels_source.py", "SOURCE")]

TEMPLATE = '''# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
# Generated from {source} by `make fix-copies` (scripts/check_copies.py): edit that file, not this one.
"""The C source of `{source}` as a string: checkpoints carry Python files only, and `cpu_kernels.py` compiles it
on first use."""

{name} = r"""
{text}"""
'''


def render(source: str, name: str, text: str) -> str:
    """The generated module for `text`, the content of `source` (a path relative to the repository)."""
    if '"""' in text or text.endswith("\\"):
        raise ValueError(
            f"{source} cannot be written as a raw triple-quoted string (it holds '\"\"\"' or ends with '\\')."
        )
    return TEMPLATE.format(source=Path(source).name, name=name, text=text)


def check_copies(fix: bool = False, root: Path = ROOT) -> list[str]:
    """The generated modules that differ from their source (rewritten when `fix`)."""
    stale = []
    for source, target, name in COPIES:
        expected = render(source, name, (root / source).read_text(encoding="utf-8"))
        path = root / target
        if not path.is_file() or path.read_text(encoding="utf-8") != expected:
            stale.append(target)
            if fix:
                path.write_text(expected, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fix", action="store_true", help="rewrite the generated modules that differ")
    args = parser.parse_args(argv)
    stale = check_copies(fix=args.fix)
    for target in stale:
        print(f"{target}: {'regenerated' if args.fix else 'differs from its source; run `make fix-copies`'}")
    return 0 if args.fix or not stale else 1


if __name__ == "__main__":
    sys.exit(main())
