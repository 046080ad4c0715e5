"""What every kdp command shares: the --cluster option, consoles for data and for
diagnostics, address formatting and the JSON key style."""
import re
import sys


def add_cluster_option(parser, required=False, extra_help=""):
    """--cluster PATH, once per path (files or directories of manifests). One value a
    flag, so it never swallows the command's own words: `kdp show --cluster snap/ services`."""
    parser.add_argument("--cluster", metavar="PATH", action="append", default=[], required=required,
                        help="Kubernetes manifests: a file or a directory (YAML or JSON); repeat "
                             "the flag for several" + extra_help)


def console(stderr=False):
    """A rich Console for tables: a terminal's width on a terminal, and no wrapping at
    all when the output is a pipe or a file (a table read by another program)."""
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    # no markup: addresses like [fd00::1]:80 are data, not style tags
    return Console(file=stream, width=None if stream.isatty() else 10_000, markup=False, highlight=False)


def hostport(address, port):
    """address:port, with an IPv6 address in brackets ([fd00::1]:80), as URLs write it."""
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_keys(obj):
    """The same JSON value with every object key in snake_case (kdp's JSON key style)."""
    if isinstance(obj, dict):
        return {_CAMEL.sub(r"_\1", k).lower() if isinstance(k, str) else k: snake_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [snake_keys(v) for v in obj]
    return obj
