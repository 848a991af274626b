"""Rule conditions in CEL: what check() accepts, what it refuses and where it points, and how RuleSet runs them."""

from __future__ import annotations

import math

import pytest

from scoring.rules import FLAG, NAMES, NUMBER, TEXT, WHOLE, RuleError, RuleSet, check


def refusal(source: str) -> RuleError:
    with pytest.raises(RuleError) as refused:
        check(source)
    return refused.value


def test_the_issues_example_is_accepted_with_the_names_it_reads():
    condition = check('amount > 500 && card_count_1h >= 3 && country != "PL"')
    assert sorted(condition.names) == ["amount", "card_count_1h", "country"]
    assert condition.holds({"amount": 500.5, "card_count_1h": 3.0, "country": "DE"})
    assert not condition.holds({"amount": 500.0, "card_count_1h": 3.0, "country": "DE"})


def test_a_whole_number_compared_with_a_number_is_read_as_that_number_on_either_side():
    assert check("amount > 500").compiled == "amount > 500.0"
    assert check("-5 <= amount").compiled == "-5.0 <= amount"
    assert check("amount == 1000 || hour != 4").compiled == "amount == 1000.0 || hour != 4"  # hour is whole
    assert check('mcc == "5999" && amount > 5').compiled == 'mcc == "5999" && amount > 5.0'


def test_a_whole_number_value_compared_with_a_decimal_is_refused_with_what_to_write():
    error = refusal("hour > 3.5")
    assert (error.line, error.column) == (1, 6)
    assert error.message == (
        "> cannot be applied to a whole number and a number: write a whole-number literal as a decimal (2.0), or "
        "convert the whole number with double(...)"
    )
    assert check("double(hour) > 3.5").names == ("hour",)


def test_a_syntax_error_is_refused_at_its_position():
    error = refusal("amount >> 3")
    assert (error.line, error.column) == (1, 9) and error.message.startswith("syntax error")
    assert refusal("amount > ").message == "syntax error: the condition ends where a value or name was expected"


def test_an_unknown_name_is_refused_where_it_is_used_with_a_suggestion():
    error = refusal("amount > 100 &&\n  amont < 4")
    assert (error.line, error.column) == (2, 3)
    assert error.message == "unknown name 'amont' (did you mean amount?)"


def test_a_type_error_is_refused_at_the_operator_that_cannot_take_its_operands():
    error = refusal("amount > 1000.0 && country > 5")
    assert (error.line, error.column) == (1, 28)
    assert error.message == "> cannot be applied to text and a whole number"
    assert refusal("amount + country > 1.0").message == "+ cannot be applied to a number and text"
    assert refusal("amount * 2 > 100.0").message.startswith("* cannot be applied to a number and a whole number:")


def test_a_refusal_after_a_whole_number_was_read_as_a_decimal_points_into_the_condition_as_written():
    error = refusal("amount > 500 && hour")
    assert (error.line, error.column) == (1, 14)
    assert error.message == "&& cannot be applied to true or false and a whole number"


def test_a_condition_that_is_not_true_or_false_is_refused():
    assert refusal("amount * 2.0").message == "the condition must be true or false; it gives a number"


def test_an_unknown_function_is_refused_at_its_name():
    error = refusal("amount > 1.0 && eval(amount)")
    assert (error.line, error.column, error.message) == (1, 17, "unknown function 'eval'")


def test_the_names_read_leave_out_text_in_quotes_and_what_follows_a_dot():
    assert check('mcc.startsWith("amount") && card_id != "score"').names == ("mcc", "card_id")


def test_a_missing_value_compares_false_and_only_not_equal_holds():
    missing = {"seconds_since_card_prev": math.nan}
    assert not check("seconds_since_card_prev < 60.0").holds(missing)
    assert not check("seconds_since_card_prev >= 60.0").holds(missing)
    assert check("seconds_since_card_prev != 60.0").holds(missing)
    assert check("!(seconds_since_card_prev < 60.0)").holds(missing)


def test_a_ruleset_runs_every_rule_on_every_row_and_a_failure_does_not_hold():
    rules = RuleSet([check("amount > 500"), check("seconds_since_card_prev < 60"), check("int(amount) / 0 > 1")])
    columns = {"amount": [600.0, 10.0], "seconds_since_card_prev": [math.nan, 5.0]}
    failures: dict[int, str] = {}

    assert rules.run(columns, 2, failures=failures) == [[True, False, False], [False, True, False]]
    assert list(failures) == [2] and "divide by zero" in failures[2]


def test_a_batch_gives_each_row_what_the_rules_give_it_alone():
    conditions = [
        check('amount > 500 && country != "PL"'),
        check("hour < 6 || seconds_since_card_prev < 2"),
        check('mcc.startsWith("59") && !card_blocked'),
    ]
    rules = RuleSet(conditions)
    columns = {
        "amount": [600.0, 10.0, 501.0, 7000.0],
        "country": ["DE", "DE", "PL", ""],
        "hour": [3, 12, 23, 5],
        "seconds_since_card_prev": [math.nan, 1.0, 30.0, math.nan],
        "mcc": ["5999", "5411", "5912", ""],
        "card_blocked": [False, False, True, False],
    }
    rows = [{name: column[i] for name, column in columns.items()} for i in range(4)]

    expected = [[c.holds(row) for c in conditions] for row in rows]
    assert expected == [[True, True, True], [False, True, False], [False, False, False], [True, True, False]]
    assert rules.run(columns, 4) == expected
    assert [rules.run({n: [v] for n, v in row.items()}, 1)[0] for row in rows] == expected


def test_rules_reading_too_many_names_to_bind_together_run_a_row_at_a_time_with_the_same_results():
    # One rule per name: binding every name nests the batch program deeper than the library takes.
    sources = {NUMBER: "{} > 1.0", TEXT: '{} == "x"', WHOLE: "{} > 1", FLAG: "{}"}
    conditions = [check(sources[kind].format(name)) for name, kind in NAMES.items()]
    values = {NUMBER: [2.0, 0.0], TEXT: ["x", "y"], WHOLE: [2, 0], FLAG: [True, False]}
    columns = {name: values[kind] for name, kind in NAMES.items()}

    wide = RuleSet(conditions)
    assert wide.batch_program is None
    assert wide.run(columns, 2) == [[True] * len(conditions), [False] * len(conditions)]
    assert RuleSet(conditions[:20]).batch_program is not None
