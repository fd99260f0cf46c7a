"""The circuit breaker on a fake clock (closed -> open at the threshold over the window,
open -> half-open after the timeout, half-open -> closed or open by the trial), and the
retry waits of each backoff policy."""

from __future__ import annotations

import pytest
from partitionlib import FakeClock

from llmkg.partition import Backoff, BreakerState, CircuitBreaker


def breaker(clock: FakeClock, **kw: float) -> CircuitBreaker:
    options = {"window": 10.0, "minimum_calls": 4, **kw}
    return CircuitBreaker(50, 30.0, clock=clock, **options)  # type: ignore[arg-type]


def calls(b: CircuitBreaker, outcomes: str) -> None:
    """One call per letter: f failed, s succeeded."""
    for outcome in outcomes:
        permit = b.allow()
        assert permit is not None, f"refused while {b.state.name}"
        b.record(permit, failed=outcome == "f")


def test_opens_at_the_threshold_once_the_window_has_enough_calls() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "fff")
    assert b.state is BreakerState.CLOSED, "three calls: under minimum_calls"
    calls(b, "s")
    assert b.state is BreakerState.CLOSED, "a success never opens it"
    calls(b, "f")  # 4 of 5 failed
    assert b.state is BreakerState.OPEN
    assert b.allow() is None


def test_under_the_threshold_it_stays_closed() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "sssssffff")  # 4 of 9 failed
    assert b.state is BreakerState.CLOSED
    calls(b, "f")  # 5 of 10: at the threshold opens it ...
    assert b.state is BreakerState.OPEN
    b = breaker(clock)
    calls(b, "ssssssfffff")  # ... 5 of 11 does not
    assert b.state is BreakerState.CLOSED


def test_failures_leave_the_window_as_time_passes() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "fff")
    clock.advance(12.0)  # those three are out of the 10 s window
    calls(b, "sss")
    calls(b, "f")  # 1 of 4 in the window
    assert b.state is BreakerState.CLOSED
    clock.advance(5.0)
    calls(b, "ff")  # 3 of 6 in the window
    assert b.state is BreakerState.OPEN


def test_open_turns_half_open_after_the_timeout_and_a_trial_success_closes_it() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "ffff")
    assert b.state is BreakerState.OPEN
    clock.advance(29.9)
    assert b.state is BreakerState.OPEN and b.allow() is None
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    trial = b.allow()
    assert trial is not None and trial.trial
    assert b.allow() is None, "one trial at a time"
    b.record(trial, failed=False)
    assert b.state is BreakerState.CLOSED
    calls(b, "fff")
    assert b.state is BreakerState.CLOSED, "closed with an empty window"


def test_a_failed_trial_opens_it_for_another_timeout() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "ffff")
    clock.advance(30.0)
    trial = b.allow()
    assert trial is not None
    b.record(trial, failed=True)
    assert b.state is BreakerState.OPEN
    clock.advance(29.0)
    assert b.state is BreakerState.OPEN
    clock.advance(1.0)
    assert b.state is BreakerState.HALF_OPEN


def test_a_cancelled_trial_frees_its_slot() -> None:
    clock = FakeClock()
    b = breaker(clock)
    calls(b, "ffff")
    clock.advance(30.0)
    trial = b.allow()
    assert trial is not None
    b.release(trial)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() is not None


def test_outcomes_of_calls_from_before_a_change_are_ignored() -> None:
    clock = FakeClock()
    b = breaker(clock, window=60.0)  # the failures before the opening still in the window
    slow = b.allow()  # let through while closed, ends after the breaker opened
    assert slow is not None
    calls(b, "ffff")
    clock.advance(30.0)
    trial = b.allow()
    assert trial is not None
    b.record(slow, failed=True)
    assert b.state is BreakerState.HALF_OPEN, "the late failure counted for nothing"
    b.record(trial, failed=False)
    assert b.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.0]),
        ("linear", [0.1, 0.2, 0.3, 0.4, 0.5]),
        ("constant", [0.1, 0.1, 0.1, 0.1, 0.1]),
    ],
)
def test_backoff_grows_as_configured_and_jitters_into_its_upper_half(
    kind: str, expected: list[float]
) -> None:
    policy = Backoff(kind, base=0.1, cap=1.0)  # type: ignore[arg-type]
    highest = [policy.delay(n, lambda: 1.0) for n in range(1, 6)]
    lowest = [policy.delay(n, lambda: 0.0) for n in range(1, 6)]
    assert highest == pytest.approx(expected)
    assert lowest == pytest.approx([d / 2 for d in expected])
