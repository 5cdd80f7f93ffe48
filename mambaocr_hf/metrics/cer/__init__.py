# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Folder of the `cer` evaluate module script; the `__init__.py` only makes setuptools install it."""
