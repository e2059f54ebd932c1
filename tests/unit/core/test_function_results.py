"""The rule for answering function calls: each function_result answers a call that awaits one."""

from __future__ import annotations

from tether.conversation import awaited_calls, function_results_problem


def call(id_: str) -> dict:
    return {"type": "function_call", "id": id_, "name": "f", "arguments": {}}


def result(call_id: str | None) -> dict:
    step = {"type": "function_result", "result": "ok"}
    return step if call_id is None else {**step, "call_id": call_id}


TEXT = {"type": "user_input", "content": [{"type": "text", "text": "hi"}]}


def test_calls_already_answered_in_the_timeline_are_not_awaited():
    timeline = [call("a"), result("a"), call("b"), call("c")]
    assert awaited_calls(timeline) == ["b", "c"]


def test_results_for_every_awaited_call_are_accepted():
    assert function_results_problem(["a", "b"], [result("b"), result("a")]) is None


def test_a_result_with_an_unknown_call_id_is_refused_naming_it_and_what_is_awaited():
    problem = function_results_problem(["a"], [result("zzz")])
    assert problem == "function_result call_id 'zzz' answers no function call (awaited: 'a')"


def test_plain_text_after_requires_action_is_refused_naming_the_awaited_calls():
    problem = function_results_problem(["a", "b"], [TEXT])
    assert problem is not None
    assert "awaits a function_result for call_id 'a', 'b'" in problem


def test_a_result_for_only_some_of_the_awaited_calls_is_refused():
    problem = function_results_problem(["a", "b"], [result("a")])
    assert problem is not None and "call_id 'b'" in problem and "'a'" not in problem


def test_a_result_without_a_call_id_is_always_refused():
    expected = "a function_result needs the call_id of the function_call it answers"
    assert function_results_problem([], [result(None)]) == expected
    assert function_results_problem(["a"], [result(None)]) == expected


def test_answering_the_same_call_twice_is_refused():
    problem = function_results_problem(["a"], [result("a"), result("a")])
    assert problem == "function_result call_id 'a' is answered twice"


def test_with_nothing_awaited_a_result_must_answer_a_call_in_the_same_input():
    assert function_results_problem([], [call("x"), result("x"), TEXT]) is None
    problem = function_results_problem([], [result("x")])
    assert (
        problem
        == "function_result call_id 'x' answers no function call (no function call awaits a result)"
    )


def test_text_is_fine_when_nothing_is_awaited():
    assert function_results_problem([], [TEXT]) is None
