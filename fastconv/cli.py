"""The fastconv command line."""
import argparse
import json
import sys


def _info(args):
    from fastconv import build_info
    print(json.dumps(build_info(), indent=2))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastconv", description="A CNN engine for the CPU.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show the build: OpenMP, BLAS, threads").set_defaults(run=_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
