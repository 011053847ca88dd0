"""``landscape`` command line. Exit codes: 0 ok; 2 bad input (one line on stderr); 1 a failure of the
machine (a full disk, a read-only filesystem), of a worker or of the engine, also in one line (LANDSCAPE_DEBUG=1
shows the traceback); 130 interrupted; 143 SIGTERM; 141 output pipe closed (``landscape info cube | head``)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from landscape.errors import StoreError, UserError, first_line, printable

#: Set to 1 to get the traceback of an unexpected error instead of its one-line summary.
DEBUG_ENV = "LANDSCAPE_DEBUG"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors are bad input too
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="landscape", description="Reduced loss landscapes (Omnigrok) as xarray/zarr cubes.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, title="commands", metavar="COMMAND")

    g = sub.add_parser("grid", help="train every pending cell of a grid spec into a cube")
    g.add_argument("spec", help="grid spec, e.g. grids/mnist.toml")
    g.add_argument("--out", required=True, help="cube path, e.g. results/mnist.zarr")
    g.add_argument("--jobs", type=int, default=0, help="parallel workers (default 0 = all cores)")
    g.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default 0 = $LANDSCAPE_THREADS, else cores / jobs)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field with TOML syntax, e.g. train.steps=600 (repeatable)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing cube instead of resuming it")
    g.add_argument("--backend", default="loky", help="loky (default, this machine) or dask")
    g.add_argument("--scheduler", help="dask scheduler address; without it --backend dask starts a local cluster")
    g.add_argument("--device", default="auto",
                   help="auto (default: CUDA when available), cpu, cuda or cuda:N; a run setting, not part of the spec")
    g.add_argument("--data-dir", help="directory with MNIST IDX files (else $LANDSCAPE_DATA, else embedded data)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--accept-versions", action="store_true",
                   help="resume a cube computed with other torch or landscape versions (data and task code must match)")

    i = sub.add_parser("info", help="summarise a cube")
    i.add_argument("cube")

    f = sub.add_parser("plot", help="draw a cube's figures (PNG and PDF) into a directory")
    f.add_argument("cube")
    f.add_argument("--out", required=True, help="output directory, e.g. figures/mnist")
    f.add_argument("--kind", action="append",
                   help="landscape cubes: lu, thumb, goldilocks, with lambda_max measured also sharpness, with "
                        "softmax_collapse or normalized_margin also collapse; (w, m) "
                        "landscapes: maps, lu; dynamics cubes: grokking (with progress-measure panels when recorded), times-wd, "
                        "times-axis, prediction; with "
                        "reference cosines also dichotomy, transition; with lambda_max curves edge-of-stability; any "
                        "cube with those measurements: slice, density, interpolation (repeatable; default all that "
                        "the cube supports)")
    f.add_argument("--cells", action="append", metavar='"w=..,N=.."',
                   help="cells of the slice, density and interpolation figures: the cube's dims (or alpha) = values, "
                        "nearest stored value within 5%%; repeatable or ;-separated (default: the best-test cell "
                        "and the smallest and largest w at its N)")
    f.add_argument("--landscape", metavar="CUBE",
                   help="for a dynamics cube: a landscape cube of the same task, for the delay-prediction panel")
    f.add_argument("--levels", type=_floats,
                   help="contour levels of the thumb and Goldilocks figures, e.g. 0.1,0.2,0.3,0.4 (default: the "
                        "cube's, as its task chose; 0.1,0.2,0.3,0.4 for an error)")
    f.add_argument("--smooth", type=float, metavar="SIGMA", help="gaussian smoothing of the thumb maps, in grid cells")
    f.add_argument("--values", type=_floats, help="axis values of the LU curves (default smallest, middle, largest)")

    t = sub.add_parser("trajectory", help="integrate the reduced (w, m) trajectory of Eq. 6 on a (w, m) cube")
    t.add_argument("cube")
    t.add_argument("--start", required=True, type=_floats, metavar="W,M", help="start point, e.g. 60,0.15")
    t.add_argument("--gamma", required=True, type=_floats, metavar="G[,G...]",
                   help="weight decay(s); several give t_gen against gamma and its log-log slope")
    t.add_argument("--eta-d", type=float, default=1.0, help="decoder learning rate eta_D (default 1)")
    t.add_argument("--eta-r", type=float, default=1.0, help="representation learning rate eta_R (default 1)")
    t.add_argument("--level", type=float,
                   help="test loss below which the path has generalized (default: 1.3 x the smallest test loss of the grid)")
    t.add_argument("--t-max", type=float, help="integration horizon for the smallest gamma (default: 4x the time "
                                               "weight decay alone needs to cross the w grid)")
    t.add_argument("--smooth", type=float, default=0.0, metavar="SIGMA",
                   help="gaussian smoothing of the log losses before interpolation, in grid cells (default 0)")
    t.add_argument("--boundary", type=float, help="train loss of the region I/II contour (default 0.02)")
    t.add_argument("--out", help="directory for the figures (trajectory, path, gamma); none: print only")

    e = sub.add_parser("export", help="write one cell's slice as an HDF5 surface file (loss-landscape's plot_surface.py layout)")
    e.add_argument("cube")
    e.add_argument("--cell", required=True, metavar="DIM=VALUE,...",
                   help='the cell, e.g. "w=12.5,N=200,seed=0" (a dim with one value may be left out)')
    e.add_argument("--out", required=True, help="HDF5 file to write, e.g. slice.h5")

    b = sub.add_parser("boundaries", help="overlay the region I/II boundaries of several (w, m) cubes (Omnigrok Fig. 6e)")
    b.add_argument("cubes", nargs="+")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--level", type=float, help="train loss of the contour (default 0.02)")
    b.add_argument("--smooth", type=float, default=0.0, metavar="SIGMA", help="gaussian smoothing, in grid cells")
    return p


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def cmd_grid(args: argparse.Namespace) -> int:
    from landscape.run.driver import Interrupted, Terminated, run_grid

    try:
        summary = run_grid(args.spec, args.out, overrides=args.overrides, jobs=args.jobs, threads=args.threads,
                           backend=args.backend, device=args.device,
                           scheduler=args.scheduler, overwrite=args.overwrite, data_dir=args.data_dir,
                           progress=not args.quiet, accept_versions=args.accept_versions)
    except Interrupted as e:
        print(f"{_stopped(e.terminated)}: {e.stored}/{e.total} cells are stored in {e.out}; rerun the same command "
              "to resume", file=sys.stderr)
        return 143 if e.terminated else 130
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"{_stopped(terminated)} before any cell was computed in {args.out}; rerun the same command to start",
              file=sys.stderr)
        return 143 if terminated else 130
    repaired = f", {summary.repaired} damaged cells recomputed" if summary.repaired else ""
    print(f"{args.out}: {summary.already_done + summary.ran}/{summary.total} cells done "
          f"({summary.ran} computed now{repaired}, {summary.already_done} already there)")
    return 0


def _stopped(terminated: bool) -> str:
    return "terminated (SIGTERM)" if terminated else "interrupted"


def cmd_info(args: argparse.Namespace) -> int:
    from landscape.read.info import describe
    from landscape.cube import open_cube

    print(describe(open_cube(args.cube, verify=True)))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from landscape.cube import open_cube
    from plots.render import render

    landscape = open_cube(args.landscape, verify=True) if args.landscape else None
    paths = render(open_cube(args.cube, verify=True), args.out, kinds=args.kind, levels=args.levels,
                   smooth=args.smooth, values=args.values, landscape=landscape, cells=args.cells)
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_trajectory(args: argparse.Namespace) -> int:
    from landscape.cube import open_cube
    from landscape.read.trajectory import ReducedLandscape, describe, gamma_sweep

    if len(args.start) != 2:
        raise UserError(f"--start expects W,M (two numbers), got {len(args.start)}")
    cube = open_cube(args.cube, verify=True)
    landscape = ReducedLandscape.from_cube(cube, args.smooth)
    sweep, paths = gamma_sweep(landscape, tuple(args.start), args.gamma, args.eta_d, args.eta_r, args.level, args.t_max)
    print(describe(landscape, sweep, paths))
    if args.out:
        from plots.messiness import DEFAULT_BOUNDARY, render_trajectory

        boundary = DEFAULT_BOUNDARY if args.boundary is None else args.boundary
        print("\n".join(str(p) for p in render_trajectory(cube, sweep, paths, args.out, boundary, args.smooth)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from landscape.cube import open_cube
    from landscape.read.hdf5 import export

    print(export(open_cube(args.cube, verify=True), args.cell, args.out, source=str(args.cube)))
    return 0


def cmd_boundaries(args: argparse.Namespace) -> int:
    from landscape.cube import open_cube
    from plots.messiness import DEFAULT_BOUNDARY, boundaries_figure
    from plots.style import save

    level = DEFAULT_BOUNDARY if args.level is None else args.level
    fig = boundaries_figure([open_cube(c, verify=True) for c in args.cubes], level, args.smooth)
    print("\n".join(str(p) for p in save(fig, args.out, "boundaries")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        if not argv:  # no command: show which there are, rather than a one-line complaint
            parser.print_help(sys.stderr)
            return 2
        args = parser.parse_args(argv)
        code = {"grid": cmd_grid, "info": cmd_info, "plot": cmd_plot, "trajectory": cmd_trajectory,
                "boundaries": cmd_boundaries, "export": cmd_export}[args.command](args)
        sys.stdout.flush()  # here, so a closed pipe is caught below, not at the interpreter's exit
        return code
    except UserError as e:
        return _fail(f"error: {e}", 2)
    except StoreError as e:
        return _fail(f"error: {e}", 1)
    except BrokenPipeError:
        # The reader of our output left (`| head`): stop quietly; point stdout at /dev/null so the
        # interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as e:
        return _fail(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), 1)
    except Exception as e:  # the last resort: never a traceback unless asked for
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        return _fail(f"internal error: {type(e).__name__}: {first_line(e)} ({DEBUG_ENV}=1 shows the traceback)", 1)


def _fail(message: str, code: int) -> int:
    print(f"landscape: {printable(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
