"""The fastconv command line: train, evaluate, summary, bench, info."""
import argparse
import json
import os
import sys


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: the usage is one --help away."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandError(Exception):
    """A problem with the command's input, reported as one line and exit code 2."""


def _bounded(convert, minimum, description):
    """An argparse type: convert the text, and require a value of at least minimum."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value
    return parse


_positive_int = _bounded(int, 1, "a positive integer")
_non_negative_int = _bounded(int, 0, "a non-negative integer")
_non_negative_float = _bounded(float, 0, "a non-negative number")


def _data_dir(args):
    path = args.data or os.environ.get("FASTCONV_DATA")
    if not path:
        raise CommandError("no data directory: pass --data DIR or set FASTCONV_DATA")
    if not os.path.exists(path):
        raise CommandError(f"data directory {path!r} does not exist")
    return path


def _train(args):
    from fastconv.models import MODELS
    from fastconv.train import train
    config = {key: getattr(args, key) for key in (
        "model", "epochs", "batch_size", "lr", "momentum", "weight_decay", "label_smoothing",
        "threads", "seed", "out", "resume", "val_size", "subset", "tta", "recipe")}
    if config["model"] not in MODELS:
        raise CommandError(f"unknown model {config['model']!r}; choose one of "
                           f"{', '.join(MODELS)}")
    config["data"] = _data_dir(args)
    if args.resume and not os.path.exists(os.path.join(args.out, "checkpoint.npz")):
        raise CommandError(f"--resume: no checkpoint in {args.out!r}")
    train(config)
    return 0


def _evaluate(args):
    import numpy as np
    from fastconv.train import evaluate
    if not os.path.exists(args.checkpoint):
        raise CommandError(f"checkpoint {args.checkpoint!r} does not exist")
    result = evaluate(_data_dir(args), args.checkpoint, tta=args.tta)
    names = result["class_names"]
    print(f"test accuracy {100 * result['accuracy']:.2f}%{f' ({args.tta} TTA)' if args.tta else ''}")
    width = max(len(name) for name in names)
    for name, accuracy in zip(names, result["per_class"]):
        print(f"  {name:<{width}}  {100 * accuracy:6.2f}%")
    print("confusion matrix (rows: true class, columns: predicted):")
    with np.printoptions(linewidth=200):
        print(result["confusion"])
    return 0


def _summary(args):
    import fastconv
    from fastconv.models import MODELS, build
    if args.model not in MODELS:
        raise CommandError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    print(fastconv.summary(build(args.model), (3, 32, 32)))
    return 0


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
                       patterns=patterns, autotune=args.autotune)
    print(bench.format_report(report))
    if args.json:
        bench.write_json(report, args.json)
    return 0


BENCH_DESCRIPTION = """\
Measure the machine's float32 GEMM throughput (numpy matmul), then time fastconv beside
the NumPy reference and PyTorch (when torch imports), all at the same thread count:
convolution, transposed convolution and pooling layers at batch 64, forward and
forward+backward, and the training steps and inference of NET-S, NET-M, airnet and
airnet-wide at batch 128.
Times are medians over repeats after one warm-up call; with --autotune, algo="auto"
times the convolution algorithms in that warm-up call and keeps the fastest.

--quick finishes in under a minute on 2 cores: batch 16 everywhere (layers and
networks), at most 3 repeats and 0.3 s of timed calls per figure, and the reference
runs forward only, timed once without warm-up (its forward+backward is skipped)."""


TTA_OPTION = dict(nargs="?", const="flip", choices=("flip", "flip-translate"),
                  help="test-time augmentation: flip (the default with --tta alone) averages "
                       "with the mirror images; flip-translate also with two one-pixel shifts")


def build_parser():
    parser = _Parser(prog="fastconv", description="A CNN engine for the CPU.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train a model on CIFAR-10")
    train.add_argument("--data", help="CIFAR-10 directory or .tar.gz (default: $FASTCONV_DATA)")
    train.add_argument("--model", default="fastnet",
                       help="lenet5, allcnn-c, fastnet, fastnet-wide, airnet, airnet-wide, "
                            "net-s, net-m")
    train.add_argument("--recipe", choices=("classic", "airbench", "airbench-muon"),
                       help="training recipe (fastconv.train.NAMED_RECIPES) instead of the "
                            "model's own; the options below override its values")
    recipe = "(default: the model's recipe in fastconv.train.RECIPES: %s for fastnet, %s for airnet)"
    train.add_argument("--epochs", type=_positive_int,
                       help="(default: 10, the model's recipe in fastconv.train.RECIPES)")
    train.add_argument("--batch-size", type=_positive_int, help=recipe % (256, 1024))
    train.add_argument("--lr", type=_non_negative_float,
                       help="peak learning rate of the warm-up / linear-decay schedule "
                            + recipe % (0.1, 1.5))
    train.add_argument("--momentum", type=_non_negative_float, help=recipe % (0.9, 0.85))
    train.add_argument("--weight-decay", type=_non_negative_float,
                       help=recipe % ("5e-4", "1.33e-3"))
    train.add_argument("--label-smoothing", type=_non_negative_float, help=recipe % (0.2, 0.2))
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for the kernels (default: all cores)")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--out", default="runs/latest", help="run directory")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--val-size", type=_non_negative_int, default=5000,
                       help="training images held out for validation after each epoch; 0 "
                            "trains on them all and skips validation (default: 5000)")
    train.add_argument("--subset", type=_positive_int, default=None,
                       help="train on this many training images only (quick runs)")
    train.add_argument("--tta", **TTA_OPTION)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a checkpoint")
    evaluate.add_argument("--data", help="CIFAR-10 directory or .tar.gz (default: $FASTCONV_DATA)")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--tta", **TTA_OPTION)
    evaluate.set_defaults(run=_evaluate)

    summary = commands.add_parser("summary", help="per-layer table of a model")
    summary.add_argument("--model", required=True)
    summary.set_defaults(run=_summary)

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
    bench.add_argument("--autotune", action="store_true",
                       help='let algo="auto" choose by timing (default: the fixed heuristic, '
                            'whatever FASTCONV_AUTOTUNE says)')
    bench.add_argument("--cases", metavar="PATTERNS",
                       help="only the cases whose id contains one of these comma-separated "
                            "glob patterns, e.g. 'conv2d-*k3s1p1,NET-S'")
    # Tests run the whole command in seconds: batch 2, a 256^3 GEMM, one repeat.
    bench.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    bench.set_defaults(run=_bench, parser=bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", 0) is None and args.command == "train":
        from fastconv import get_num_threads
        args.threads = get_num_threads()
    try:
        return args.run(args)
    except (CommandError, FileNotFoundError, ValueError) as error:
        print(f"fastconv {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastconv {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (fastconv evaluate | head): stop quietly, and point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
