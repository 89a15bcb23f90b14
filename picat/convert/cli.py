"""The ``picat convert`` subcommand: ``picat convert IN OUT --from FORMAT`` / ``--to FORMAT``.

Wire it into ``picat.cli.build_parser`` with ``add_command(commands)``. This module imports
neither torch nor the layouts until the command runs, so ``picat --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

# picat.convert.formats.FORMATS, spelled out so that building the parser does not import torch
# (tests/test_convert.py checks that the two agree).
FORMAT_NAMES = ("dgcnn-official", "crosspoint", "openpoints-pointnext")

DESCRIPTION = """\
Import an outside checkpoint into picat's checkpoint format (--from FORMAT), or export a picat
checkpoint's backbone to an outside layout (--to FORMAT). An import keeps the backbone and
prints the head tensors it drops; settings the tensors do not hold (DGCNN's k; PointNeXt's
radius, nsample, ...) come from --option NAME=VALUE or the outside code's defaults.
See docs/convert.md."""


def parse_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, value), the value read as YAML (``k=40``, ``strides=[1,4,4,4,4]``)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"{name}: value {value!r} is not valid YAML ({error})") from error


def options_of(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--option`` pairs as a dict; a name given twice is a ValueError."""
    options: dict[str, Any] = {}
    for name, value in pairs:
        if name in options:
            raise ValueError(f"--option {name} given twice")
        options[name] = value
    return options


def run(args: argparse.Namespace) -> None:
    """Run ``picat convert`` (errors a user can act on are ValueError / FileNotFoundError)."""
    from picat.convert.files import export_checkpoint, import_checkpoint

    if args.from_format is not None:
        import_checkpoint(args.input, args.output, args.from_format, options_of(args.option))
    else:
        if args.option:
            raise ValueError("--option sets what an import (--from) cannot read from the tensors; an export "
                             "(--to) takes every setting from the picat checkpoint")
        export_checkpoint(args.input, args.output, args.to_format)


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand to ``picat``'s subparsers (``run`` set as its handler)."""
    command = commands.add_parser("convert", help="import an outside checkpoint into picat's format, or export one",
                                  description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("input", help="the checkpoint to read")
    command.add_argument("output", help="the checkpoint to write (atomically)")
    direction = command.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="from_format", choices=FORMAT_NAMES,
                           help="import: INPUT is in this outside format, OUTPUT a picat checkpoint")
    direction.add_argument("--to", dest="to_format", choices=FORMAT_NAMES,
                           help="export: INPUT is a picat checkpoint, OUTPUT in this outside format")
    command.add_argument("--option", action="append", default=[], type=parse_option, metavar="NAME=VALUE",
                         help="import only: a backbone setting the tensors do not hold (repeatable), e.g. k=20, "
                              "up_axis=z, radius=0.15, nsample=32")
    command.set_defaults(run=run)
