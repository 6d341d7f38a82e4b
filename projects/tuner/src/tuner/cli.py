"""The `tuner` command. No verbs yet: train, eval, export and demo are not written (see the README)."""

from __future__ import annotations

import sys


def main() -> None:
    print(
        "tuner: no commands yet; train, eval, export and demo are not written (see projects/tuner/README.md)",
        file=sys.stderr,
    )
    raise SystemExit(2)
