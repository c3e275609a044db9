"""Load kombu without PyYAML.

Importing ``kombu.serialization`` imports PyYAML, when it is installed, to
register a YAML serializer; this project sends JSON only. PyYAML's loading is
about 20 ms of every worker's and every ``cloudmover cp``'s start, on the path
to the first copy. While kombu loads, ``yaml`` is marked as absent, so kombu
registers YAML as unavailable (a message in YAML would be refused); then the
mark is removed, and whoever imports ``yaml`` later gets it.
"""
from __future__ import annotations

import importlib
import sys

if "kombu.serialization" not in sys.modules and "yaml" not in sys.modules:
    sys.modules["yaml"] = None   # `import yaml` raises ImportError
    try:
        importlib.import_module("kombu.serialization")
    finally:
        del sys.modules["yaml"]
