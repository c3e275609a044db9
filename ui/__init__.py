"""The head node's web UI: Jinja templates and static assets (no Python logic)."""
from pathlib import Path

TEMPLATES = str(Path(__file__).parent / "templates")
STATIC = str(Path(__file__).parent / "static")
