"""The fastconv command line."""
import argparse
import json
import os
import sys


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: the usage is one --help away."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _info(args):
    from fastconv import build_info
    print(json.dumps(build_info(), indent=2))
    return 0


def _bench(args):
    from fastconv import bench
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        args.parser.error(f"--json: directory of {args.json!r} does not exist")
    plan = bench.TINY if args.tiny else bench.QUICK if args.quick else bench.FULL
    patterns = [pattern for pattern in (args.cases or "").split(",") if pattern]
    if patterns and not bench.select_cases(patterns, plan):
        args.parser.error(f"--cases {args.cases!r} matches no case")
    report = bench.run(plan, threads=args.threads, use_torch=not args.no_torch,
                       patterns=patterns)
    print(bench.format_report(report))
    if args.json:
        bench.write_json(report, args.json)
    return 0


BENCH_DESCRIPTION = """\
Measure the machine's float32 GEMM throughput (numpy matmul), then time fastconv beside
the NumPy reference and PyTorch (when torch imports), all at the same thread count:
convolution, transposed convolution and pooling layers at batch 64, forward and
forward+backward, and NET-S / NET-M training steps and inference at batch 128.
Times are medians over repeats after one warm-up call.

--quick finishes in under a minute on 2 cores: batch 16 everywhere (layers and
networks), at most 3 repeats and 0.3 s of timed calls per figure, and the reference
runs forward only, timed once without warm-up (its forward+backward is skipped)."""


def build_parser():
    parser = _Parser(prog="fastconv", description="A CNN engine for the CPU.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("info", help="show the build: OpenMP, BLAS, threads").set_defaults(run=_info)
    bench = commands.add_parser(
        "bench", help="time fastconv against the NumPy reference and PyTorch",
        description=BENCH_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--quick", action="store_true",
                       help="batch 16, fewer repeats, reference forward only: under a minute")
    bench.add_argument("--threads", type=_positive_int, metavar="T",
                       help="threads for every library (default: fastconv.get_num_threads())")
    bench.add_argument("--json", metavar="PATH", help="also write every row to PATH as JSON")
    bench.add_argument("--no-torch", action="store_true", help="leave out the PyTorch columns")
    bench.add_argument("--cases", metavar="PATTERNS",
                       help="only the cases whose id contains one of these comma-separated "
                            "glob patterns, e.g. 'conv2d-*k3s1p1,NET-S'")
    # Tests run the whole command in seconds: batch 2, a 256^3 GEMM, one repeat.
    bench.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    bench.set_defaults(run=_bench, parser=bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
