"""Subcommands of the ``vitssl`` CLI, one module each; every module has ``register(sub)`` (see cli.py)."""
