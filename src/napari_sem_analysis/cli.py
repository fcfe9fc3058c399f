"""The ``napari-sem-analysis`` command.

Subcommands::

    napari-sem-analysis batch RECIPE INPUT... --out DIR [--jobs N] [--scheduler ADDRESS]
                              [--overwrite] [--no-resume] [--pixel-size NM|from-scale-bar] [--quiet]
    napari-sem-analysis demo [--headless] [--out DIR]
    napari-sem-analysis presets
    napari-sem-analysis steps

Exit codes: 0 success, 1 some images failed (the others were written),
2 usage or input error (bad recipe, missing folder, output folder in use...),
3 the output folder cannot be written (read-only or full disk), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_OUTPUT = 3  # the output folder cannot be written (read-only, full disk)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-sem-analysis",
        description="SEM micrograph analysis: batch processing with recipes, and the demo.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser(
        "batch",
        help="run a recipe or preset over images and folders",
        description=(
            "Run a recipe (YAML/JSON file saved from the Workflow widget, or a preset: "
            "particles, porosity, coating, phases) over image files and folders. Writes per-image "
            "labels (TIFF), tables (CSV) and overlays (PNG), then summary.csv and report.html. "
            "Exit codes: 0 all images done, 1 some images failed (the others were written), "
            "2 usage or input error (bad recipe, missing input, output folder in use by another run), "
            "3 the output folder cannot be written (read-only or full disk), 130 interrupted."
        ),
    )
    b.add_argument("recipe", metavar="RECIPE", help="recipe file or preset name")
    b.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders or glob patterns")
    b.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    b.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="parallel worker processes (default 1)")
    b.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help=(
            "run on Dask distributed: 'local' for a local cluster, or a scheduler address (tcp://host:8786). "
            "Dask exchanges pickles: connect only to a cluster you trust as you trust this computer"
        ),
    )
    b.add_argument("--overwrite", action="store_true", help="recompute and replace existing results")
    b.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="do not skip finished images (an error unless --overwrite)",
    )
    b.add_argument(
        "--pixel-size",
        type=_pixel_size_arg,
        default=None,
        metavar="NM|from-scale-bar",
        help="pixel size in nm for every image, or 'from-scale-bar' to read each image's scale bar "
        "(default: from each file's metadata, else its scale bar)",
    )
    b.add_argument("--no-report", dest="report", action="store_false", help="do not write report.html")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    d = sub.add_parser("demo", help="open napari with the widgets and a sample (or --headless)")
    d.add_argument("--headless", action="store_true", help="no GUI: write the demo results to a folder")
    d.add_argument("--out", default=None, metavar="DIR", help="output folder for --headless")

    sub.add_parser("presets", help="list the built-in recipes")
    sub.add_parser("steps", help="list the steps a recipe can use")
    return p


def _pixel_size_arg(text: str):
    """``--pixel-size``: a number of nm or ``from-scale-bar``."""
    if text.strip().lower() == "from-scale-bar":
        return "from-scale-bar"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of nm or 'from-scale-bar', got {text!r}") from None


def _batch(args) -> int:
    from ._validation import SEMAnalysisError
    from .batch import BatchOutputError, run_batch

    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(args.pixel_size, float) and not args.pixel_size > 0:
        print("error: --pixel-size must be a positive number of nm", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run_batch(
            args.recipe,
            args.inputs,
            args.out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            overwrite=args.overwrite,
            resume=args.resume,
            progress=not args.quiet,
            pixel_size=args.pixel_size,
            report=args.report,
        )
    except BatchOutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except SEMAnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    n = len(result.summary)
    n_err = len(result.errors)
    msg = (
        f"{n - n_err} of {n} images done ({len(result.processed)} now, {len(result.skipped)} already)"
        f"; results in {result.out_dir}"
    )
    if result.report is not None:
        msg += f"; report: {result.report}"
    print(msg)
    if n_err:
        print(f"{n_err} image(s) failed, see {result.out_dir / 'errors.csv'}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _print_presets() -> None:
    from .steps import find_step
    from .workflows import PRESETS

    for name, recipe in PRESETS.items():
        print(f"{name:10s} {recipe.get('description', '')}")
        chain = []
        for step in recipe["steps"]:
            entry = find_step(step["function"])
            writes = entry.target.writes if entry is not None else "?"
            chain.append(f"{step['function']} ({writes})")
        print(f"{'':10s} steps: {' -> '.join(chain)}; summary: {recipe.get('summary', 'objects')}")


def _print_steps() -> None:
    from .steps import find_step, step_names

    print("Steps a recipe can use (name, inputs -> output, description):")
    for name in step_names():
        print("  " + find_step(name).describe())


def main(argv=None) -> int:
    """Entry point of the ``napari-sem-analysis`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "batch":
            return _batch(args)
        if args.command == "presets":
            _print_presets()
            return EXIT_OK
        if args.command == "steps":
            _print_steps()
            return EXIT_OK
        if args.command == "demo":
            from . import _demo

            argv_demo = []
            if args.headless:
                argv_demo.append("--headless")
            if args.out:
                argv_demo += ["--out", args.out]
            rc = _demo.main(argv_demo)
            return int(rc or 0)
    except KeyboardInterrupt:
        print("\ninterrupted; finished images are kept, run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
