"""Rule conditions in CEL: what check() accepts, what it refuses and where it points, and how RuleSet runs them."""

from __future__ import annotations

import math

import pytest

from scoring.rules import RuleError, RuleSet, check


def refusal(source: str) -> RuleError:
    with pytest.raises(RuleError) as refused:
        check(source)
    return refused.value


def test_the_issues_example_is_accepted_with_the_names_it_reads():
    condition = check('amount > 500 && card_count_1h >= 3 && country != "PL"')
    assert sorted(condition.names) == ["amount", "card_count_1h", "country"]


def test_a_syntax_error_is_refused_at_its_position():
    error = refusal("amount >> 3")
    assert (error.line, error.column) == (1, 9) and error.message.startswith("syntax error")
    assert refusal("amount > ").message == "syntax error: the condition ends where a value or name was expected"


def test_an_unknown_name_is_refused_where_it_is_used_with_a_suggestion():
    error = refusal("amount > 100 &&\n  amont < 4")
    assert (error.line, error.column) == (2, 3)
    assert error.message == "unknown name 'amont' (did you mean amount?)"


def test_a_name_used_as_another_type_is_refused_in_the_clause_that_misuses_it():
    error = refusal("amount > 1000.0 && country > 5")
    assert (error.line, error.column) == (1, 20)
    assert error.message == "country is text, but the condition uses it as a number"


def test_a_condition_that_is_not_true_or_false_is_refused():
    assert refusal("amount * 2.0").message == "the condition must be true or false; it gives a number"


def test_an_unknown_function_is_refused():
    assert refusal("foo(amount)").message == "unknown function or name 'foo'"


def test_a_ruleset_runs_every_rule_on_every_row_and_a_failure_or_a_missing_value_does_not_hold():
    rules = RuleSet([check("amount > 500"), check("seconds_since_card_prev < 60"), check("int(amount) / 0 > 1")])
    columns = {"amount": [600.0, 10.0], "seconds_since_card_prev": [math.nan, 5.0]}
    failures: dict[int, str] = {}

    assert rules.run(columns, 2, failures=failures) == [[True, False, False], [False, True, False]]
    assert list(failures) == [2]  # the division; the missing value is no failure
