"""Embed ``headnode-userdata.sh`` in ``cloudmover.yaml``.

The head node's user data is a plain bash script kept in its own file, so it can
be read, linted and run by hand; the template carries a copy of it after the
few ``CM_*`` settings that CloudFormation fills in (``Fn::Sub``). The copy is
the YAML block scalar that starts with the marker line below.

    python cloudformation/build.py           rewrite the template's copy
    python cloudformation/build.py --check   exit 1 when the copy is out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "cloudmover.yaml"
SCRIPT = HERE / "headnode-userdata.sh"
MARKER = "# userdata-body (embedded from cloudformation/headnode-userdata.sh by build.py: edit that file)"


def embed(template: str, script: str) -> str:
    """``template`` with the block after the marker line replaced by ``script``."""
    lines = template.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == MARKER]
    if len(starts) != 1:
        raise ValueError(f"the template needs the marker line exactly once, found {len(starts)}: {MARKER}")
    start = starts[0]
    indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(indent)):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():   # blank lines before the next key stay
        end -= 1
    body = [indent + line if line else "" for line in script.rstrip("\n").split("\n")]
    return "\n".join(lines[:start + 1] + body + lines[end:])


def built() -> str:
    return embed(TEMPLATE.read_text(), SCRIPT.read_text())


def main(argv: list[str]) -> int:
    expected = built()
    if argv[1:] == ["--check"]:
        if TEMPLATE.read_text() != expected:
            print(f"{TEMPLATE.name} is out of date: run python cloudformation/build.py", file=sys.stderr)
            return 1
        return 0
    TEMPLATE.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
