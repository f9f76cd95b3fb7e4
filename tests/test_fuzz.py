"""Fuzzing the two doors users come in by: config overrides and subcommand flags.

Whatever is thrown at them, the answer is a loaded config, or one line that names the problem: a VitsslError, or
argparse's usage error (exit status 2); never another exception, never a traceback. Nothing here trains or
evaluates: subcommands point at a run folder that does not exist, and pretraining stops where training would
start. The example counts are bounded so that the file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitssl.cli import build_parser, main
from vitssl.config import describe, load_config, method_names
from vitssl.errors import VitsslError

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces, and the run time is fixed
    database=None,  # no example database: derandomized examples need none
    suppress_health_check=[HealthCheck.too_slow],
)

CONFIG_KEYS = [key for key, _, _ in describe()]
SECTIONS = sorted({key.split(".")[0] for key in CONFIG_KEYS if "." in key})
MISSING_RUN = "/nonexistent/vitssl-fuzz/run"

# ---------------------------------------------------------------------------------------------------------------
# Values: every kind a YAML override can spell, with the edges that used to slip through (nan, inf, huge, negative).

_NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=-3, max_value=300),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, 2**32]),  # beyond float and beyond every seed
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
)
_SCALARS = st.one_of(_NUMBERS, st.booleans(), st.none(), st.text(max_size=12))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=4), st.lists(st.lists(_NUMBERS, max_size=2), max_size=2))
# Raw override text: YAML that does not parse, mappings, tags, placeholders and other strings users do type.
_RAW = st.sampled_from(
    ["", "[1,", "{a: 1}", "!!python/object:os.system", "1e999", "-.inf", ".nan", "0x10", "1_000", "~", "[]"]
    + ["[0.5, .nan]", "runs/{nme}", "runs/{}", "{name}", "cuda:99", "tpu", "cpu:0", "é", "a=b", "[[1, 2]]"]
)


def _yaml(value: object) -> str:
    """``value`` as override text, written the way a user would type it in YAML."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


_KEY_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=0, max_size=8)
_KEYS = st.one_of(
    st.sampled_from(CONFIG_KEYS),
    st.sampled_from(SECTIONS),  # a whole section set to a scalar
    st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS), _KEY_PART),  # unknown key in a real section
    st.builds(lambda k, p: f"{k}.{p}", st.sampled_from(CONFIG_KEYS), _KEY_PART),  # a sub-key of a plain value
    st.lists(_KEY_PART, min_size=1, max_size=3).map(".".join),  # anything dotted, empty parts included
)
_OVERRIDES = st.builds(lambda k, v: f"{k}={v}", _KEYS, st.one_of(_VALUES.map(_yaml), _RAW))


def _assert_one_line(error: VitsslError) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, repr(message)


@FUZZ
@given(overrides=st.lists(_OVERRIDES, min_size=1, max_size=3), method=st.sampled_from([None, *method_names()]))
def test_config_overrides_load_or_give_one_line(overrides: list[str], method: str | None) -> None:
    """Random keys (real, misspelt, nested too deep) with random values: a config or one VitsslError line."""
    prefix = [f"method={method}"] if method else []
    try:
        load_config(None, [*prefix, *overrides])
    except VitsslError as error:
        _assert_one_line(error)


@FUZZ
@given(key=st.sampled_from(CONFIG_KEYS), value=st.one_of(_NUMBERS, st.lists(_NUMBERS, min_size=1, max_size=3)))
def test_numbers_for_every_key_load_or_give_one_line(key: str, value: object) -> None:
    """Every key, including the method sections, with numbers at the edges (the range checks' own fuzz)."""
    method = key.split(".")[0] if key.split(".")[0] in method_names() else None
    try:
        load_config(None, [*([f"method={method}"] if method else []), f"{key}={_yaml(value)}"])
    except VitsslError as error:
        _assert_one_line(error)


# The edges, tried on every key rather than left to chance: beyond float, non-finite, zero, negative, wrong types.
EDGE_VALUES = ["9" * 400, "-" + "9" * 400, ".nan", ".inf", "-.inf", "-1", "0", "0.5", "2", "", "[]", "[1, 2, 3]"]
EDGE_VALUES += ["null", "true", "x", "{a: 1}", "[.nan, 1]", "[-1, 0]"]


def test_edge_values_for_every_key_load_or_give_one_line() -> None:
    """Every key (the method sections with their method) x every edge value: a config or one VitsslError line."""
    for key in CONFIG_KEYS:
        method = key.split(".")[0] if key.split(".")[0] in method_names() else None
        for value in EDGE_VALUES:
            try:
                load_config(None, [*([f"method={method}"] if method else []), f"{key}={value}"])
            except VitsslError as error:
                _assert_one_line(error)


# ---------------------------------------------------------------------------------------------------------------
# Subcommands: random values for every flag, with the positionals each subcommand needs.

POSITIONALS = {
    "pretrain": [],
    "report": [MISSING_RUN],
    "shards": ["/nonexistent/vitssl-fuzz/images", "/nonexistent/vitssl-fuzz/shards"],
    "attention": [MISSING_RUN, "/nonexistent/a.png"],
    "pca": [MISSING_RUN, "/nonexistent/a.png"],
    "reconstruct": [MISSING_RUN, "/nonexistent/a.png"],
    "correspond": [MISSING_RUN, "/nonexistent/a.png"],
    "embed": [MISSING_RUN, "/nonexistent/a.png", "--out", "/nonexistent/vitssl-fuzz/f.npy"],
    "export": [MISSING_RUN, "--format", "safetensors", "--out", "/nonexistent/vitssl-fuzz/export"],
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def _flags() -> list[tuple[str, str, bool]]:
    """(subcommand, option, takes a value) for every visible optional argument of every subcommand but --help."""
    flags = []
    for name, sub in _subcommands().items():
        for action in sub._actions:
            # hidden options are the retired spellings: they only warn and forward to the current flag
            if action.option_strings and action.dest != "help" and action.help != argparse.SUPPRESS:
                flags.append((name, action.option_strings[-1], action.nargs != 0))
    return flags


FLAGS = _flags()
_FLAG_VALUES = st.one_of(
    _NUMBERS.map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "", "x", "0x10", "1_000", "-0", "tpu", "cuda:99", "cpu", "auto"]),
    st.text(max_size=8),
)


class _NoTraining(Exception):
    """Raised where ``vitssl pretrain`` would start training: the fuzz checks everything before it."""


def _run_cli(argv: list[str]) -> tuple[int, str]:
    """Exit status and stderr of ``vitssl argv`` (argparse's SystemExit included); pretraining is stubbed."""
    err = io.StringIO()
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        mock.patch("vitssl.commands.pretrain._train", side_effect=VitsslError("stub: training would start here")),
    ):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code if isinstance(exit_info.code, int) else 2
    return code, err.getvalue()


def _assert_clean_failure(code: int, err: str) -> None:
    """Status 0, or 2 with nothing on stderr but argparse's usage and one error line starting with 'vitssl'."""
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        messages = [line for line in lines if not line.startswith(("usage: ", " "))]
        assert len(messages) == 1 and messages[0].startswith("vitssl"), err


@FUZZ
@given(
    flag=st.sampled_from(FLAGS),
    values=st.lists(_FLAG_VALUES, min_size=1, max_size=2),
    other=st.sampled_from(FLAGS),
    other_value=_FLAG_VALUES,
)
def test_random_flag_values_fail_cleanly(flag: tuple[str, str, bool], values: list[str], other, other_value) -> None:
    """One or two flags of one subcommand with random values: argparse's usage error or one VitsslError line."""
    command, option, takes_value = flag
    argv = [command, *POSITIONALS.get(command, [MISSING_RUN]), option, *(values[:1] if takes_value else [])]
    if other[0] == command:  # a second flag of the same subcommand
        argv += [other[1], *([other_value] if other[2] else [])]
    if command == "pretrain":
        argv += ["train.out_dir=/nonexistent/vitssl-fuzz/out", "train.progress=false"]
    _assert_clean_failure(*_run_cli(argv))


@FUZZ
@given(overrides=st.lists(_OVERRIDES, min_size=1, max_size=3), fresh=st.booleans())
def test_pretrain_overrides_fail_cleanly_before_training(overrides: list[str], fresh: bool, tmp_path_factory) -> None:
    """``vitssl pretrain`` with random overrides: config errors are one line and nothing reaches training."""
    out = tmp_path_factory.mktemp("fuzz_run")
    argv = ["pretrain", "configs/demo.yaml", *overrides, f"train.out_dir={out}", *(["--fresh"] if fresh else [])]
    code, err = _run_cli(argv)
    assert code == 2  # a config error, or the stub where training would start
    _assert_clean_failure(code, err)


FLAG_EDGE_VALUES = ["0", "-1", "nan", "1e999", "9" * 400, "x", ""]


def test_edge_values_for_every_flag_fail_cleanly(tmp_path, monkeypatch) -> None:
    """Every flag that takes a value x every edge value, on a missing run folder: a clean failure every time,
    and nothing written (a relative --out such as ``0`` once left an empty folder in the working directory)."""
    monkeypatch.chdir(tmp_path)
    for command, option, takes_value in FLAGS:
        if not takes_value:
            continue
        for value in FLAG_EDGE_VALUES:
            argv = [command, *POSITIONALS.get(command, [MISSING_RUN]), option, value]
            if command == "pretrain":
                argv += ["train.out_dir=/nonexistent/vitssl-fuzz/out"]
            _assert_clean_failure(*_run_cli(argv))
            assert not any(tmp_path.iterdir()), (argv, sorted(p.name for p in tmp_path.iterdir()))


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_subcommand_is_fuzzed(command: str) -> None:
    """Every subcommand has flags in the fuzz (a new one is covered without listing it)."""
    assert command in {name for name, _, _ in FLAGS}
