"""The jinja2 environment of the report templates (``templates/``): autoescape on, so every string from a
result, a log or a config is escaped there; no HTML is built in Python."""
from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape


TEMPLATES = Path(__file__).parent / "templates"


def jinja_env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    return env
