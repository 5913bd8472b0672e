"""The batch's retry schedule (pauses doubling to a cap) and the ``batch`` options that set it."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from rls_screen.batch.runner import (
    DEFAULT_RETRY_PAUSE_MAX_S,
    DEFAULT_RETRY_PAUSE_S,
    DEFAULT_RETRY_ROUNDS,
    BatchOptions,
    retry_pauses,
)
from rls_screen.cli import build_parser
from rls_screen.errors import InputError
from rls_screen.knowledge import load_knowledge

RECORDED = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "rounds", "cap", "expected"),
    [
        (4, 6, 30, (4, 8, 16, 30, 30, 30)),
        (2, 2, 30, (2, 4)),
        (1, 0, 30, ()),
        (0, 3, 30, (0, 0, 0)),
        (0.5, 4, 2, (0.5, 1, 2, 2)),
        (0.1, 3, 0.25, (0.1, 0.2, 0.25)),
        (60, 3, 30, (60, 60, 60)),  # a first pause above the cap is kept, not cut
        (30, 2, 30, (30, 30)),
    ],
)
def test_pauses_double_from_the_first_up_to_the_cap(
    first: float, rounds: int, cap: float, expected: tuple[float, ...]
) -> None:
    assert retry_pauses(first, rounds, cap) == pytest.approx(expected)


def test_the_defaults_wait_about_two_minutes_which_covers_a_local_hapi_restart() -> None:
    options = BatchOptions(knowledge=load_knowledge(), recorded=RECORDED)
    pauses = options.retry_pauses()
    assert len(pauses) == DEFAULT_RETRY_ROUNDS == options.retry_rounds
    assert pauses[0] == DEFAULT_RETRY_PAUSE_S
    assert max(pauses) == DEFAULT_RETRY_PAUSE_MAX_S
    # The local HAPI restarts in 80 to 100 s (docs/resilience.md); the batch must not wait forever either.
    assert 100 <= sum(pauses) <= 150


@pytest.mark.parametrize(
    "bad",
    [
        {"retry_rounds": -1},
        {"retry_pause_s": -0.1},
        {"retry_pause_s": math.nan},
        {"retry_pause_s": math.inf},
        {"retry_pause_max_s": -1.0},
        {"probe_every_s": math.nan},
    ],
)
def test_options_that_make_no_sense_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InputError):
        BatchOptions(knowledge=load_knowledge(), recorded=RECORDED, **bad)  # type: ignore[arg-type]


# --- the command line --------------------------------------------------------------------------------


def test_batch_retry_options_default_to_the_runner_defaults() -> None:
    args = build_parser().parse_args(["batch", "--group", "Group/g1"])
    assert (args.retry_rounds, args.retry_pause) == (DEFAULT_RETRY_ROUNDS, DEFAULT_RETRY_PAUSE_S)


@pytest.mark.parametrize(
    ("argv", "rounds", "pause"),
    [
        (["--retry-rounds", "0"], 0, DEFAULT_RETRY_PAUSE_S),
        (["--retry-rounds", "20", "--retry-pause", "600"], 20, 600.0),
        (["--retry-pause", "0"], DEFAULT_RETRY_ROUNDS, 0.0),
        (["--retry-rounds", "3", "--retry-pause", "0.25"], 3, 0.25),
    ],
)
def test_batch_retry_options_are_parsed(argv: list[str], rounds: int, pause: float) -> None:
    args = build_parser().parse_args(["batch", "--resume", "job-1", *argv])
    assert (args.retry_rounds, args.retry_pause) == (rounds, pause)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--retry-rounds", "-1"], "argument --retry-rounds: must be between 0 and 20"),
        (["--retry-rounds", "21"], "argument --retry-rounds: must be between 0 and 20"),
        (["--retry-rounds", "2.5"], "argument --retry-rounds: '2.5' is not a whole number"),
        (["--retry-pause", "-1"], "argument --retry-pause: must be between 0 and 600 seconds"),
        (["--retry-pause", "601"], "argument --retry-pause: must be between 0 and 600 seconds"),
        (["--retry-pause", "soon"], "argument --retry-pause: 'soon' is not a number of seconds"),
        (["--retry-pause", "nan"], "argument --retry-pause: 'nan' is not a number of seconds"),
        (["--retry-pause", "inf"], "argument --retry-pause: 'inf' is not a number of seconds"),
    ],
)
def test_bad_batch_retry_options_are_clear_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["batch", "--group", "Group/g1", *argv])
    assert exited.value.code == 2
    assert f"rls-screen batch: error: {message}" in capsys.readouterr().err
