"""``ibcm-lab matrix``: which configurations work from where."""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli.common import certs_folder, check_writable, emit, split_list
from lab.errors import UsageError

NAME = "matrix"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    mx = sub.add_parser("matrix", help="which configurations work from where: the full grid",
                        description="Sweep the dimensions that decide IBCM outcomes and print "
                                    "a grid: rows are configurations, columns client "
                                    "situations, each cell ok or the short failure name.")
    from lab.results.grid import DIMENSIONS, SITUATIONS

    for dim in DIMENSIONS:
        mx.add_argument(f"--{dim.key.replace('_', '-')}", default=None, metavar="V[,V...]",
                        help=f"{dim.title}: {', '.join(dim.values)} (default: all)"
                             + (f"; also {', '.join(dim.extra)}" if dim.extra else ""))
    mx.add_argument("--clients", default=None, metavar="C[,C...]",
                    help=f"client situations: {', '.join(s.key for s in SITUATIONS)} "
                         "(default: all)")
    mx.add_argument("--format", choices=("text", "json", "csv", "junit", "html"),
                    default="text", help="output format (default: text)")
    mx.add_argument("--out", default=None, metavar="FILE",
                    help="write the output to FILE instead of standard output")
    mx.add_argument("--no-fold", action="store_true",
                    help="show every row (default: fold rows that differ only in a "
                         "dimension that does not change any cell)")
    mx.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="worker processes (default: the number of cores)")
    mx.add_argument("--certs", default=None, help=certs_help)


def command(args: argparse.Namespace) -> int:
    from lab.matrix.sweep import make_selection, run_matrix
    from lab.report import matrixout
    from lab.results.grid import DIMENSIONS

    choices = {d.key: split_list(getattr(args, d.key)) for d in DIMENSIONS}
    selection = make_selection(choices, split_list(args.clients))
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs expects a number of worker processes >= 1, got {args.jobs}")
    if args.out is not None:
        check_writable(Path(args.out).parent)
    with matrixout.progress_bar() as progress:
        result = run_matrix(selection, certs=certs_folder(args.certs), jobs=args.jobs,
                            progress=progress)
    if args.format == "text":
        matrixout.print_grid(result, fold_rows=not args.no_fold, out=args.out)
        return 0
    if args.format == "json":
        text = matrixout.render_json(result)
    elif args.format == "csv":
        text = matrixout.render_csv(result)
    else:
        from lab.report import html, junit

        text = (junit.render_matrix_junit(result) if args.format == "junit"
                else html.render_matrix_html(result))
    emit(text, args.out)
    return 0
