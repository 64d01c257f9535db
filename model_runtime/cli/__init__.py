"""Command line: ``python -m model_runtime <command>`` (:mod:`.main` maps names to modules); one module
per command, each with ``add_arguments(parser)`` and ``run(args) -> int``."""
