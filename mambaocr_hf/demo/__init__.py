# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The demo page (`mambaocr-demo`, needs the `demo` extra): a Gradio app showing what the model read and how sure it
was of each character. `render` (the confidence picture and table) needs only PIL; `app` needs Gradio."""

from .render import char_rows, confidence_color, confidence_picture

__all__ = ["build_demo", "char_rows", "confidence_color", "confidence_picture", "launch_demo", "main"]


def __getattr__(name: str):
    # Gradio is imported only when the app is asked for, so `mambaocr_hf.demo.render` works without the extra
    if name in ("build_demo", "launch_demo", "main"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
