"""Every option of every subcommand has a help line; the demo's job timeout is visible and
settable."""

from __future__ import annotations

import argparse

import pytest

from validator_tui.cli import DEMO_JOB_TIMEOUT_S, _demo_job_timeout, build_parser


def parsers(parser: argparse.ArgumentParser, name: str = "validator-tui"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_option_of_every_subcommand_has_a_help_line() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and not (action.help and action.help != argparse.SUPPRESS)
    ]
    assert missing == []


def test_demo_help_shows_the_job_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        f"--job-timeout S a job not done after S seconds fails (default: {DEMO_JOB_TIMEOUT_S:g} "
        "s more than boot and evaluation take)" in text
    )
    args = build_parser().parse_args(["demo", "--job-timeout", "15"])
    assert args.job_timeout == 15.0
    assert _demo_job_timeout(args) == 15.0
    long = build_parser().parse_args(["demo", "--eval-seconds", "120", "--boot-seconds", "2"])
    assert _demo_job_timeout(long) == DEMO_JOB_TIMEOUT_S + 122
