"""The observers' fan-out binds each hook once, to the observers that do something on it."""

from __future__ import annotations

from lamrunner.decide.polling import PollState
from lamrunner.runner.observe import Observers, RunObserver
from lamrunner.runner.state import ElementState, RunState


class Saves(RunObserver):
    def __init__(self, name: str, heard: list[str]) -> None:
        self.name, self.heard = name, heard

    def save_element(self, state: RunState, index: int, entry: ElementState) -> None:
        self.heard.append(f"{self.name}:{index}")


class Shows(RunObserver):
    def __init__(self) -> None:
        self.progress: list[tuple[str, int]] = []

    def poll_progress(self, key, step_name, attempt, max_attempts, last_status, due_in_seconds):
        self.progress.append((key, attempt))


STATE = RunState.start("wf", {})
ENTRY = ElementState(poll=PollState(started_at=0.0))


def test_a_hook_one_observer_keeps_is_that_observers_own_method():
    saves = Saves("a", [])
    observers = Observers([saves, RunObserver()])
    assert observers.save_element == saves.save_element  # no loop in between
    observers.save_element(STATE, 3, ENTRY)
    assert saves.heard == ["a:3"]


def test_hooks_no_observer_keeps_do_nothing_and_say_so():
    observers = Observers([RunObserver(), Saves("a", [])])
    assert not observers.wants_attempts and not observers.wants_progress
    observers.poll_progress("step_1[0]", "poll", 1, 5, 200, 0.0)  # a no-op, callable
    observers.save_attempt(STATE, 0, {})
    assert Observers().wants_progress is False


def test_several_observers_hear_a_hook_in_order():
    heard: list[str] = []
    observers = Observers([Saves("a", heard), RunObserver(), Saves("b", heard)])
    observers.save_element(STATE, 0, ENTRY)
    assert heard == ["a:0", "b:0"]


def test_wants_progress_and_nested_fan_outs():
    shows = Shows()
    inner = Observers([shows])
    outer = Observers([RunObserver(), inner])
    assert inner.wants_progress and outer.wants_progress and not outer.wants_attempts
    outer.poll_progress("step_1[0]", "poll", 2, 5, 200, 0.5)
    assert shows.progress == [("step_1[0]", 2)]
    assert not Observers([Observers([RunObserver()])]).wants_progress
