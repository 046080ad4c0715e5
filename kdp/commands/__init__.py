"""Sub-commands of the `kdp` CLI: each module has add_arguments(parser) and run(args)."""
