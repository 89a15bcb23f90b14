"""``picat fetch-data``: the subcommand, for :mod:`picat.cli` to register with :func:`add_command`.

    picat fetch-data NAME [--root DIR] [--sha256 HEX | --accept-unverified] [--url URL ...]
    picat fetch-data --list

For a dataset behind terms (ShapeNetCore, ScanObjectNN, S3DIS) the command prints where to
agree to them and the layout to unpack into, and exits 0: telling the user what to do is all it
can do, so it is not an error. Every failure is a :class:`picat.fetch.errors.FetchError`
(a RuntimeError), which ``picat`` prints as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from picat.fetch import sources
from picat.fetch.errors import FetchError
from picat.fetch.sources import Source

DEFAULT_ROOT = "data"  # the paper suite's default dataset paths are data/<folder>


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``fetch-data`` subparser (``set_defaults(run=...)``) to ``picat``'s subcommands."""
    command = commands.add_parser(
        "fetch-data", help="download a benchmark dataset into the layout its picat reader expects "
                           "(or say where to get one behind terms)",
        description="Download, verify (sha256) and extract a benchmark dataset into <root>/<folder>, the layout "
                    "its picat reader expects; resumes an interrupted download. For datasets behind terms, print "
                    "where to agree to them and the layout. See docs/fetch-data.md.")
    command.add_argument("name", nargs="?", metavar="NAME", choices=list(sources.SOURCES),
                         help=f"one of: {', '.join(sources.SOURCES)}")
    command.add_argument("--list", action="store_true", help="print the sources table and exit")
    command.add_argument("--root", default=DEFAULT_ROOT,
                         help=f"folder to put the dataset folder in (default: {DEFAULT_ROOT})")
    command.add_argument("--sha256", metavar="HEX",
                         help="expected sha256 of the archive (required where none is published, or to trust "
                              "another copy)")
    command.add_argument("--accept-unverified", action="store_true",
                         help="extract an archive with no known checksum anyway (its digest is printed)")
    command.add_argument("--url", action="append", metavar="URL",
                         help="download from this URL instead of the table's (repeat to try several in order)")
    command.add_argument("--keep-archive", action="store_true", help="keep the archive after extracting it")
    command.add_argument("--quiet", action="store_true", help="no progress bars")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Carry out ``picat fetch-data`` for parsed ``args``."""
    if args.list:
        print(format_table(Path(args.root)))
        return
    if args.name is None:
        raise FetchError(f"give a dataset NAME (one of {', '.join(sources.SOURCES)}) or --list")
    source = sources.get_source(args.name)
    if source.behind_terms:
        print(describe_terms(source, Path(args.root)))
        return
    if args.sha256 and args.accept_unverified:
        raise FetchError("give either --sha256 or --accept-unverified, not both")
    from picat.fetch.dataset import fetch_dataset  # needs tqdm: imported on use, not by `picat --help`

    fetch_dataset(source, Path(args.root), sha256=args.sha256, accept_unverified=args.accept_unverified,
                  urls=args.url, keep_archive=args.keep_archive, progress=not args.quiet)


def describe_terms(source: Source, root: Path) -> str:
    """What to do for a dataset behind terms: where to agree, where to put it, the layout."""
    return "\n".join([
        f"{source.name}: {source.title}",
        f"  not downloaded: this dataset is {source.terms}",
        f"  put it at:  {root / source.folder}",
        f"  layout:     {source.layout}",
        f"  read by:    {source.reader}",
        f"  note:       {source.notes}",
        "  (nothing to do here until you have the data; this is not an error)",
    ])


def format_table(root: Path) -> str:
    """The sources table as text: per dataset its folder, reader, URLs, checksum and terms."""
    blocks = []
    for source in sources.SOURCES.values():
        lines = [f"{source.name}: {source.title}",
                 f"  folder:   {root / source.folder}",
                 f"  reader:   {source.reader}",
                 f"  layout:   {source.layout}"]
        if source.behind_terms:
            lines.append(f"  get it:   {source.terms}")
        else:
            lines.append(f"  url:      {source.urls[0]}")
            lines += [f"  mirror:   {url}" for url in source.urls[1:]]
            digest = source.sha256 or "none known: extraction needs --sha256 HEX or --accept-unverified"
            lines.append(f"  sha256:   {digest}")
            lines.append(f"            ({source.checksum_origin})")
            if source.size is not None:
                lines.append(f"  size:     {source.size} bytes")
            lines.append(f"  terms:    {source.terms}")
        if source.notes:
            lines.append(f"  note:     {source.notes}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
