"""``ibcm-lab demo``: the seed document, scene by scene."""

from __future__ import annotations

import argparse
import asyncio

from lab.cli.common import certs_folder

NAME = "demo"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    demo = sub.add_parser("demo", help="walk through the seed document, scene by scene",
                          description="Reproduce every statement of the seed document: the "
                                      "failing configuration, the evidence, the fix and the "
                                      "passing twin.")
    demo.add_argument("--scene", type=int, default=None, metavar="N",
                      help="show only scene N")
    demo.add_argument("--pause", action="store_true",
                      help="wait for Enter between scenes (for a trainer who talks)")
    demo.add_argument("--certs", default=None, help=certs_help)


def command(args: argparse.Namespace) -> int:
    from lab.run import run_loaded
    from lab.scenario.loader import load_all
    from lab.tools.demo import demo_paths, present, scene_by_number

    if args.scene is not None:
        scene_by_number(args.scene)  # a bad --scene is refused before anything loads
    scenarios = load_all(demo_paths(args.scene))
    result = asyncio.run(run_loaded(scenarios, certs=certs_folder(args.certs)))
    present(result, args.scene, pause=args.pause)
    return result.exit_code
