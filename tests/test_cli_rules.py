"""One flag per idea across the CLI: every subcommand's parser is walked and held to the same spellings and defaults."""

from __future__ import annotations

import argparse

import pytest

from vitssl.cli import IntermixedParser, build_parser, main

RETIRED = {"--at-init", "--no-init", "--train-pairs", "--val-pairs"}
"""Former spellings: hidden (they still parse, with a warning) and shown nowhere."""

SCORES_INIT = {"knn", "linear", "finetune", "segment", "detect", "correspond", "attention"}
"""The commands that can also score the network at initialisation."""


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every visible option string of ``p`` with its action."""
    return {s: a for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


COMMANDS = _subparsers()


def test_the_walk_sees_every_command():
    assert {"pretrain", "knn", "linear", "attention", "segment", "detect", "reconstruct", "report"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_retired_spelling_is_visible(name):
    options = _options(COMMANDS[name])
    assert not RETIRED & set(options)
    assert not [s for s in options if s.endswith("-pairs")], "data sets are --train / --val"
    assert not RETIRED & set(COMMANDS[name].format_help().split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_device_and_workers_default_alike(name):
    options = _options(COMMANDS[name])
    if "--device" in options:
        assert options["--device"].default == "auto"
    if "--num-workers" in options:
        assert options["--num-workers"].default == 2


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_initialisation_is_compared_with_one_flag(name):
    options = _options(COMMANDS[name])
    assert ("--compare-init" in options) == (name in SCORES_INIT)
    for flag in ("--compare-init", "--init-only"):
        if flag in options:
            assert isinstance(options[flag], argparse._StoreTrueAction) and options[flag].default is False
    if "--init-only" in options:
        assert "--compare-init" in options


@pytest.mark.parametrize("name", ["knn", "linear", "finetune", "segment"])
def test_data_sets_are_train_and_val(name):
    assert {"--train", "--val"} <= set(_options(COMMANDS[name]))


@pytest.mark.parametrize(
    ("argv", "dest", "value", "replacement"),
    [
        (["linear", "RUN", "--at-init"], "init_only", True, "--init-only"),
        (["finetune", "RUN", "--at-init"], "init_only", True, "--init-only"),
        (["segment", "RUN", "--train-pairs", "pairs/a"], "train", "pairs/a", "--train"),
        (["segment", "RUN", "--val-pairs", "pairs/b"], "val", "pairs/b", "--val"),
        (["segment", "RUN", "--no-init"], "compare_init", False, "--compare-init"),
    ],
)
def test_retired_spellings_still_work_with_one_warning(argv, dest, value, replacement, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vitssl: warning: {argv[2]} is deprecated") and replacement in err


def test_compare_init_and_init_only_exclude_each_other(capsys):
    assert main(["linear", "no/such/run", "--compare-init", "--init-only"]) == 2
    err = capsys.readouterr().err
    assert "--compare-init and --init-only exclude each other" in err and err.count("\n") == 1


def test_bare_pretrain_lists_the_presets_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: vitssl pretrain")
    listed = {line.split()[0] for line in captured.out.splitlines() if line.startswith("  ")}
    assert {"demo", "dino/vit_tiny_cifar10", "dino/vit_small_imagenet"} <= listed
    assert "ViT-S/16, 800 epochs on ImageNet-1k" in captured.out  # what the authors' preset reproduces
    assert captured.err.strip().startswith("vitssl: error: no config given")
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing written


def test_attention_compare_init_needs_score(capsys):
    assert main(["attention", "no/such/run", "photo.png", "--compare-init"]) == 2
    err = capsys.readouterr().err
    assert "add --score" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pretrain", "configs/demo.yaml", "--fresh", "optim.epochs=1"], {"overrides": ["optim.epochs=1"]}),
        (["pretrain", "configs/demo.yaml", "a.b=1", "--fresh", "c.d=2"], {"overrides": ["a.b=1", "c.d=2"]}),
        (["pretrain", "--fresh", "configs/demo.yaml", "optim.epochs=1"], {"overrides": ["optim.epochs=1"]}),
        (["attention", "RUN", "a.png", "--out", "maps", "b.png"], {"images": ["a.png", "b.png"]}),
    ],
)
def test_options_may_stand_anywhere_among_the_positionals(argv, expected):
    """A flag between a command's positionals (the overrides after CONFIG, the images after RUN) is parsed as the
    flag, and the positionals after it are kept, not refused as unrecognized."""
    args = build_parser().parse_args(argv)
    for dest, value in expected.items():
        assert getattr(args, dest) == value
    if argv[0] == "pretrain":
        assert args.config == "configs/demo.yaml" and args.fresh is True and args.no_resume is False


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_intermixes_options_and_positionals(name):
    assert isinstance(COMMANDS[name], IntermixedParser)
