"""The command line: ``ibcm-lab`` (:func:`lab.cli.app.main`)."""

from lab.cli.app import main

__all__ = ["main"]
