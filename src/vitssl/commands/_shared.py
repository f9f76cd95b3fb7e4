"""What the evaluation subcommands share: their common arguments (worded and defaulted the same everywhere) and
the frame of loading a run's backbone, running a protocol on it and reporting the files written."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports stay inside the functions, so that ``vitssl --help`` stays fast
    from vitssl.config import PretrainConfig
    from vitssl.models.backbones import Backbone


# Argument types: argparse calls them on the raw string and turns their ArgumentTypeError into its one-line usage
# error (exit status 2), so a bad value stops the command before any model or data is touched.


def _number(text: str, cast: type) -> float:
    """``text`` as an int or a finite float, or an ArgumentTypeError that says which kind was expected."""
    try:
        value = cast(text)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    # nan passes every comparison below unnoticed, and inf is never a setting; integers beyond torch's int64 would
    # overflow later, inside the work
    if cast is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if cast is int and abs(value) >= 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer below 2**63, got {text[:20]}...")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, epochs)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker processes, seeds)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in [0, 2**32 - 1], what every seeded generator (torch, numpy) accepts."""
    value = int(_number(text, int))
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 4294967295], got {value}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (cuts on standardised scores)."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, temperatures)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, warm-up, mixup strengths)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def unit_float(text: str) -> float:
    """A number in [0, 1] (fractions, probabilities, momenta)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def unit_below_one_float(text: str) -> float:
    """A number in [0, 1) (label smoothing: 1 would make every target uniform)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def open_unit_float(text: str) -> float:
    """A number in (0, 1] (factors that must not switch a term off, e.g. the layer-wise lr decay)."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def device_name(text: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N'; whether that GPU exists is checked when the device is resolved."""
    from vitssl.config.ranges import is_device_name  # one pattern for --device and train.device

    if not is_device_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return text


SOURCE_HELP = (
    "what to evaluate: a run folder or checkpoint (vitssl pretrain); a folder written by vitssl export; "
    "timm:NAME.TAG, or timm:NAME.TAG@FILE with a local weights file (e.g. timm:vit_small_patch16_224.dino); "
    "hf:REPO_OR_FOLDER (a transformers ViTModel such as facebook/dino-vits16, or a TimmWrapper folder); or an "
    "authors' release file: DINO (dino_deitsmall16_pretrain.pth or a full training checkpoint), SiT, EsViT"
)


def add_checkpoint(p: argparse.ArgumentParser, image_size: bool = True) -> None:
    """The positional SOURCE (any weights :mod:`vitssl.eval.sources` reads), ``--arch`` and the evaluation
    transform of sources that carry none (``--mean``, ``--std``, ``--image-size``), and ``--init`` /
    ``--init-partial`` (foreign weights into a run's architecture). ``image_size=False`` leaves ``--image-size``
    to a command that gives it another meaning (``detect``'s input size)."""
    p.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument(
        "--arch",
        help="release files: the architecture (a preset such as vit_small, or a timm name) instead of the one "
        "read off the tensor shapes (width from pos_embed, depth from the blocks, 64-wide heads)",
    )
    p.add_argument(
        "--mean",
        type=finite_float,
        nargs=3,
        metavar=("R", "G", "B"),
        help="normalisation mean (default: the run's or the source's own, else ImageNet's 0.485 0.456 0.406)",
    )
    p.add_argument(
        "--std",
        type=positive_float,
        nargs=3,
        metavar=("R", "G", "B"),
        help="normalisation std (default: the run's or the source's own, else ImageNet's 0.229 0.224 0.225)",
    )
    p.set_defaults(eval_image_size=image_size)  # whether --image-size is the evaluation crop (load_source)
    if image_size:
        p.add_argument(
            "--image-size",
            type=positive_int,
            help="evaluation crop side; the short side is first resized to 256/224 of it (default: the run's or "
            "the source's own, else 224)",
        )
    p.add_argument(
        "--init",
        metavar="PATH",
        help="evaluate these backbone weights with the run's architecture and settings instead of the run's own: "
        "a safetensors / timm weights file, a folder from `vitssl export` (timm or Hugging Face) or another run; "
        "names and shapes are checked",
    )
    p.add_argument(
        "--init-partial",
        action="store_true",
        help="with --init: load the tensors that match and print what was skipped, instead of refusing",
    )


def init_options(args: argparse.Namespace) -> dict:
    """``init`` / ``init_strict`` keyword arguments for the loaders, from ``--init`` / ``--init-partial``."""
    return {"init": getattr(args, "init", None), "init_strict": not getattr(args, "init_partial", False)}


def add_device(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """``--device``, and ``--num-workers`` for commands that read datasets through a loader."""
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="'auto' (CUDA when available), 'cpu' or 'cuda' (default auto)",
    )
    if workers:
        p.add_argument(
            "--num-workers", type=non_negative_int, default=2, help="data loader worker processes (default 2)"
        )


def add_init_comparison(p: argparse.ArgumentParser, verb: str, init_only: bool = False) -> None:
    """``--compare-init`` (also ``verb`` the same network at initialisation) and, for the protocols that are run
    once per network, ``--init-only``: the one spelling of each idea across the commands (see :func:`networks`)."""
    p.add_argument(
        "--compare-init",
        action="store_true",
        help=f"also {verb} the same network at initialisation (same config and seed): the baseline pretraining "
        "must beat",
    )
    if init_only:
        p.add_argument(
            "--init-only",
            action="store_true",
            help=f"{verb} only the same network at initialisation (files get an _init suffix)",
        )


class DeprecatedFlag(argparse.Action):
    """A former spelling kept working, hidden from ``--help``: it prints one warning line naming the current
    spelling (``use``) and then sets the current option's ``sets`` dest: to its value for an option that takes
    one (``value``), else to True; nothing when ``sets`` is None (what the old flag asked for is now the default)."""

    def __init__(
        self, option_strings: list[str], dest: str, use: str, sets: str | None = None, value: bool = False
    ) -> None:
        self.use, self.sets, self.value = use, sets, value
        nargs = None if value else 0
        super().__init__(option_strings, dest, nargs=nargs, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"vitssl: warning: {option_string} is deprecated; {self.use}", file=sys.stderr)
        if self.sets:
            setattr(namespace, self.sets, values if self.value else True)


def add_deprecated(
    p: argparse.ArgumentParser, old: str, use: str, sets: str | None = None, value: bool = False
) -> None:
    """Keep the option ``old`` working, hidden, with one warning line that says ``use`` (see
    :class:`DeprecatedFlag`)."""
    p.add_argument(old, action=DeprecatedFlag, use=use, sets=sets, value=value)


def networks(args: argparse.Namespace) -> tuple[str, ...]:
    """The networks a command scores, in order: "pretrained", then "init" with ``--compare-init``; only "init" with
    ``--init-only``."""
    from vitssl.errors import VitsslError

    compare, only = getattr(args, "compare_init", False), getattr(args, "init_only", False)
    if compare and only:
        raise VitsslError("--compare-init and --init-only exclude each other; pass one of them")
    if only:
        return ("init",)
    return ("pretrained", "init") if compare else ("pretrained",)


def add_max_side(p: argparse.ArgumentParser) -> None:
    """``--max-side`` of the commands that look at a user's photos at their own resolution."""
    p.add_argument(
        "--max-side",
        type=positive_int,
        default=800,
        help="scale a photo down, keeping its aspect ratio, when its longer side exceeds this many pixels (default "
        "800); smaller photos keep their resolution. Ignored with --resize",
    )


def add_strict(p: argparse.ArgumentParser) -> None:
    """``--strict``: stop at the first unreadable image; without it, unreadable images are skipped (or a readable
    one stands in where a fixed number is needed) and one line at the end counts and names them."""
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop with an error at the first unreadable image instead of skipping it",
    )


def with_bad_inputs(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` collecting the unreadable inputs its work reports (:func:`vitssl.data.bad_inputs.collecting`, strict
    with ``--strict``), then printing their summary line to stderr: what every command that reads images does."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from vitssl.data.bad_inputs import collecting

        with collecting(strict=getattr(args, "strict", False)) as bad:
            code = run(args)
        bad.report()
        return code

    return wrapped


def bad_image_policy(args: argparse.Namespace) -> str:
    """The unreadable-image policy of ``--strict``: "error" with it, else "skip" (whatever the run's config says:
    an evaluation reads its own data)."""
    return "error" if getattr(args, "strict", False) else "skip"


def add_labelled_sets(p: argparse.ArgumentParser) -> None:
    """``--train`` / ``--val`` and their caps, defaulting to the run's labelled sets (see ``labelled_sets``)."""
    p.add_argument(
        "--train",
        help="labelled training set: folder root/<class>/<images> or a named dataset (default: the run's "
        "data.knn_train, else its data.train when labelled)",
    )
    p.add_argument("--val", help="labelled validation set (default: the run's data.val)")
    p.add_argument("--max-train", type=positive_int, help="cap the training set (fixed stratified subset) to save time")
    p.add_argument("--max-val", type=positive_int, help="cap the validation set (fixed stratified subset)")


def load_source(
    args: argparse.Namespace, at_init: bool = False, device: str = "cpu"
) -> tuple[PretrainConfig, Backbone]:
    """The config and frozen evaluation backbone of SOURCE on ``device`` (with ``at_init``: the same network at
    initialisation, seeded), with ``--arch``, ``--mean``/``--std``/``--image-size`` and ``--init`` applied."""
    from vitssl.eval.sources import DataOverrides, resolve_source

    data = DataOverrides(
        mean=tuple(args.mean) if getattr(args, "mean", None) else None,
        std=tuple(args.std) if getattr(args, "std", None) else None,
        image_size=getattr(args, "image_size", None) if getattr(args, "eval_image_size", True) else None,
    )
    return resolve_source(
        args.source, arch=getattr(args, "arch", None), at_init=at_init, device=device, data=data, **init_options(args)
    )


def load_frozen(args: argparse.Namespace, at_init: bool = False) -> tuple[str, PretrainConfig, Backbone]:
    """The device named by ``--device`` and SOURCE's frozen evaluation backbone on it (at initialisation with
    ``at_init``), with its config."""
    from vitssl.device import resolve_device

    device = str(resolve_device(args.device, "--device"))
    cfg, backbone = load_source(args, at_init=at_init, device=device)
    return device, cfg, backbone


def results_dir(args: argparse.Namespace) -> Path:
    """Where a command writes by default: the run folder of a run, else a folder named after SOURCE
    (:func:`vitssl.eval.sources.results_dir`)."""
    from vitssl.eval.sources import results_dir as of_source

    return of_source(args.source)


# A protocol trains something on (config, backbone, device) and returns the files it wrote in the run folder.
EvalProtocol = Callable[["PretrainConfig", "Backbone", str, Path], Sequence[Path]]


def run_protocol(args: argparse.Namespace, protocol: EvalProtocol) -> int:
    """The frame shared by ``linear`` and ``finetune``: for each of :func:`networks` (the pretrained backbone, the
    one at initialisation, or both), load it, run the protocol with the run folder as output folder, and name the
    files it wrote (the protocol reads ``args.at_init`` through :func:`provenance` to name them)."""
    for name in networks(args):
        args.at_init = name == "init"
        device, cfg, backbone = load_frozen(args, at_init=args.at_init)
        written = protocol(cfg, backbone, device, results_dir(args))
        print("wrote " + " and ".join(str(path) for path in written))
    return 0


def provenance(args: argparse.Namespace) -> dict:
    """What every results file records about its source: the checkpoint, and whether it was at initialisation."""
    return {"checkpoint": str(args.source), "at_init": bool(getattr(args, "at_init", False))}
