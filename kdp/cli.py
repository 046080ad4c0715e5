"""The `kdp` command line: one sub-command per module in kdp/commands/."""
import argparse
import importlib
import sys
import warnings

_python_showwarning = warnings.showwarning

# sub-command name -> module in kdp.commands with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "replay": "Run a capture through the data plane and write what it transmits.",
    "trace": "Show what each stage decided for chosen packets of a capture.",
    "attach": "Run the data plane live on TAP devices.",
    "show": "Print the compiled tables of a cluster snapshot.",
    "bench": "Measure kdp beside its peers, in one run.",
    "snapshot": "Write a cluster snapshot from a live cluster (the official Kubernetes client).",
    "diff": "Replay a capture under two snapshots and list the flows whose fate changes.",
}


def build_parser() -> argparse.ArgumentParser:
    from kdp import __version__
    parser = argparse.ArgumentParser(prog="kdp", description="kdp: a userspace Kubernetes data plane.")
    parser.add_argument("--version", action="version", version=f"kdp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f"kdp.commands.{name}")
        cmd = sub.add_parser(name, help=summary, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module, _parser=cmd)
    return parser


def parse_args(argv=None):
    """Parse the command line; words the command does not take are reported with that
    command's usage (argparse would print the top-level one)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """kdp's own warnings as one line on stderr; others as Python prints them."""
    from kdp.errors import KdpWarning
    if issubclass(category, KdpWarning):
        print(f"kdp: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args._module.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - user-facing errors end here
        from kdp.errors import KdpError
        if isinstance(exc, KdpError):
            print(f"kdp: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, MemoryError):      # e.g. a flow table bigger than the memory
            print(f"kdp: error: out of memory: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
