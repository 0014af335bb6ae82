"""Operations around the pipeline (not pipeline steps): the local object store used as the
DVC remote, and recording a Snakemake run into DVC."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

Action = Callable[[argparse.Namespace], int]


def action_main(ap: argparse.ArgumentParser, actions: dict[str, Action], errors: tuple[type[Exception], ...],
                argv: Sequence[str] | None = None) -> int:
    """The ``main`` of an operations tool: parse ``argv`` with ``ap`` plus a positional
    ``action`` (one of ``actions``), run that action and return its exit status; an expected
    failure (one of ``errors``) becomes one line ``<prog> <action>: <message>`` on stderr and
    exit status 1, anything else is a bug and propagates."""
    ap.add_argument("action", choices=list(actions))
    args = ap.parse_args(argv)
    try:
        return actions[args.action](args)
    except errors as e:
        print(f"{ap.prog} {args.action}: {e}", file=sys.stderr)
        return 1
