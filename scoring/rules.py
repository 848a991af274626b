"""Rule conditions: CEL expressions over a transaction, checked when a rule is saved and run on every transaction.

The expressions are parsed and evaluated by `common-expression-language` (CEL's Rust implementation behind a
Python module): it runs a condition in microseconds where the pure-Python `cel-python` takes a hundred times as
long (docs/rules.md has the comparison). Nothing here evaluates an expression itself.

A condition reads the names in NAMES: the transaction's own fields, every model feature by its name, the active
model's `score` and the lists (`card_blocked`, ...). Where a field and a feature share a name (`amount`,
`channel`) the field is meant: `channel == "ecom"` reads better than the feature's code. A missing feature value
(a card's first payment has no history) is NaN: the library refuses to order it, so a rule that compares it does
not hit, negated or not, unless an `||` lets the rest of the condition decide (docs/rules.md).

Every live rule is compiled into one program that returns the list of their results: one evaluation a
transaction for all of them, and the values it is given are only the names some rule reads (handing the library
a value costs more than comparing it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cel

from scoring.features import FEATURES

# A name's kind decides the sample values a condition is checked with, and how the message names its type.
NUMBER, TEXT, WHOLE, FLAG = "a number", "text", "a whole number", "true or false"
FIELDS = {
    "amount": NUMBER,
    "currency": TEXT,
    "country": TEXT,
    "channel": TEXT,
    "mcc": TEXT,
    "card_id": TEXT,
    "merchant_id": TEXT,
    "hour": WHOLE,  # the hour of the transaction's own time, 0-23 (UTC)
}
LIST_NAMES = {"card_blocked": FLAG, "card_allowed": FLAG, "merchant_blocked": FLAG, "merchant_allowed": FLAG}
NAMES: dict[str, str] = {name: NUMBER for name in FEATURES} | FIELDS | {"score": NUMBER} | LIST_NAMES
SAMPLES = {
    NUMBER: (0.0, 1e6, 3.5),
    TEXT: ("", "ZZ", "ecom"),
    WHOLE: (0, 23, 12),
    FLAG: (False, True, True),
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PARSE_POSITION = re.compile(r"<input>:(\d+):(\d+)")


class RuleError(ValueError):
    """A condition the service refuses: what is wrong, and where (1-based line and column) when that is known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.message, self.line, self.column = message, line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class Condition:
    """A checked condition: its source, the compiled program and the names it reads."""

    source: str
    program: Any
    names: tuple[str, ...]

    def holds(self, values: dict[str, Any]) -> bool:
        """Whether it holds for `values` (a dict with at least its names); where it fails (an integer divided by
        zero, a missing value the library refuses to order) it does not."""
        try:
            return self.program.execute(values) is True
        except Exception:
            return False


def check(source: str) -> Condition:
    """Compile `source` and refuse it (RuleError) for a syntax error, a name that does not exist, a use of a name
    as another type than it has, or a result that is not true or false."""
    text = source.strip()
    if not text:
        raise RuleError("the condition is empty: write an expression such as amount > 500")
    try:
        program = cel.compile(text)
    except (ValueError, RuntimeError) as exc:
        raise _syntax_error(str(exc)) from None
    names = tuple(program.variables())
    for name in names:
        if name not in NAMES:
            line, column = _position(text, name)
            raise RuleError(f"unknown name {name!r}{_suggestion(name)}", line=line, column=column)
    for values in _samples(names):
        result = _run_for_check(text, program, values)
        if not isinstance(result, bool):
            raise RuleError(f"the condition must be true or false; it gives {_kind_of(result)}", line=1, column=1)
    return Condition(source=text, program=program, names=names)


def _run_for_check(text: str, program: Any, values: dict[str, Any]) -> Any:
    try:
        return program.execute(values)
    except TypeError:
        raise _type_error(text) from None
    except RuntimeError as exc:  # an unknown function, or an error the library finds only when it runs
        if "Undefined variable or function" in str(exc):
            name = _quoted(str(exc))
            line, column = _position(text, name) if name else (None, None)
            raise RuleError(f"unknown function or name {name!r}", line=line, column=column) from None
        return True
    except Exception:  # e.g. an integer divided by zero for these sample values: not a mistake in the condition
        return True


def _type_error(text: str) -> RuleError:
    """Where the type error is: the smallest `&&`/`||` clause that fails alone, and in it the name whose value,
    given another type, makes the error go (the library says that types clash, not where)."""
    offset, clause = _failing_clause(text)
    program = cel.compile(clause)
    names = tuple(program.variables())
    for name in names:
        for kind, samples in SAMPLES.items():
            if kind == NAMES[name] or not _runs(program, names, swap=(name, samples)):
                continue
            line, column = _position(text, name, start=offset)
            return RuleError(f"{name} is {NAMES[name]}, but the condition uses it as {kind}", line=line, column=column)
    line, column = _line_column(text, offset)
    return RuleError(
        "type error: the two sides of an operator are of different types; CEL converts nothing (write 500.0 or "
        f"double(x), or quote text): {clause.strip()}",
        line=line,
        column=column,
    )


def _runs(program: Any, names: tuple[str, ...], *, swap: tuple[str, tuple[Any, ...]] | None = None) -> bool:
    """Whether `program` runs without a type error on every sample (with one name's values swapped for others)."""
    for values in _samples(names):
        if swap:
            values[swap[0]] = swap[1][sum(1 for v in values.values() if v) % len(swap[1])]
        try:
            program.execute(values)
        except TypeError:
            return False
        except Exception:
            continue
    return True


def _failing_clause(text: str, offset: int = 0) -> tuple[int, str]:
    """The first top-level `&&`/`||` operand of `text` that has a type error by itself (searched into
    parentheses), with its offset in the whole source; `text` itself when no smaller part has one."""
    parts = _top_level_parts(text)
    if len(parts) == 1:
        inner = text.strip()
        if inner.startswith("(") and inner.endswith(")") and len(_top_level_parts(inner[1:-1])) > 1:
            start = text.index("(") + 1
            return _failing_clause(inner[1:-1], offset + start)
        return offset, text
    for start, part in parts:
        try:
            program = cel.compile(part)
        except Exception:
            continue
        if not _runs(program, tuple(program.variables())):
            return _failing_clause(part, offset + start)
    return offset, text


def _top_level_parts(text: str) -> list[tuple[int, str]]:
    """`text` cut at `&&` and `||` outside parentheses, brackets and string literals: (offset, part) each."""
    parts, depth, start, i = [], 0, 0, 0
    blanked = _STRING.sub(lambda m: " " * len(m[0]), text)
    while i < len(blanked):
        ch = blanked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and blanked[i : i + 2] in ("&&", "||"):
            parts.append((start, text[start:i]))
            start = i + 2
            i += 1
        i += 1
    parts.append((start, text[start:]))
    return parts


def _syntax_error(said: str) -> RuleError:
    found = _PARSE_POSITION.search(said)
    detail = (
        said.split("Syntax error:", 1)[-1].split("\n")[0].strip() if "Syntax error:" in said else said.split("\n")[0]
    )
    detail = re.sub(r" expecting \{.*\}$", "", detail)  # the parser's list of every token it could take
    if "'<EOF>'" in detail:
        detail = "the condition ends where a value or name was expected"
    if found:
        return RuleError(f"syntax error: {detail}", line=int(found[1]), column=int(found[2]))
    return RuleError(f"syntax error: {detail}")


def _position(text: str, name: str, *, start: int = 0) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the first use of `name` as an identifier from `start`, outside string
    literals."""
    blanked = _STRING.sub(lambda m: " " * len(m[0]), text)
    for match in _IDENTIFIER.finditer(blanked, start):
        if match[0] == name:
            return _line_column(text, match.start())
    return None, None


def _line_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _quoted(said: str) -> str:
    found = re.search(r"'([^']+)'", said)
    return found[1] if found else ""


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, NAMES, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else "; names are listed on the rules page"


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return TEXT
    if isinstance(value, int | float):
        return NUMBER
    return type(value).__name__


def _samples(names: Sequence[str]) -> Iterable[dict[str, Any]]:
    """Values of each name's type: all low, all high, and mixed (so both sides of an `&&` are reached)."""
    for i in range(3):
        yield {name: SAMPLES[NAMES[name]][i] for name in names}
    for shift in range(2):
        yield {name: SAMPLES[NAMES[name]][(j + shift) % 2] for j, name in enumerate(names)}


# --- running many rules ------------------------------------------------------------------------------------------


class RuleSet:
    """Rules compiled into one program that returns each one's result, in their order."""

    def __init__(self, conditions: Sequence[Condition]) -> None:
        self.conditions = list(conditions)
        self.names = sorted({name for c in self.conditions for name in c.names})
        joined = ", ".join(_guarded(c) for c in self.conditions)
        self.program = cel.compile(f"[{joined}]") if self.conditions else None

    def run(
        self, columns: dict[str, Sequence[Any]], rows: int, *, failures: dict[int, str] | None = None
    ) -> list[list[bool]]:
        """Each row's result for each rule. `columns`: a sequence of `rows` values for each name in self.names.
        A rule that fails on a row (e.g. an integer divided by zero) does not hold for it; `failures`, when
        given, gets each failing rule's index with what went wrong the first time."""
        if self.program is None:
            return [[] for _ in range(rows)]
        names = self.names
        values = (
            [dict(zip(names, row, strict=True)) for row in zip(*(columns[n] for n in names), strict=True)]
            if names
            else [{}] * rows
        )
        out = []
        conditions = self.conditions
        for row in values:
            try:
                results = self.program.execute(row)
            except Exception:  # one rule failed on this row: the others still count
                out.append([self._holds(c, row, index=j, failures=failures) for j, c in enumerate(conditions)])
                continue
            if None in results:  # a rule that reads a missing value, run alone (_guarded says why)
                results = [conditions[j].holds(row) if r is None else r for j, r in enumerate(results)]
            out.append([r is True for r in results])
        return out

    @staticmethod
    def _holds(condition: Condition, row: dict[str, Any], *, index: int, failures: dict[int, str] | None) -> bool:
        try:
            return condition.program.execute({n: row[n] for n in condition.names}) is True
        except Exception as exc:
            # The library refuses to order NaN (a missing value) against a number: the rule does not hold, as
            # meant, and that is no failure to tell anyone about.
            missing = any(isinstance(row[n], float) and row[n] != row[n] for n in condition.names)
            if failures is not None and index not in failures and not missing:
                failures[index] = f"{type(exc).__name__}: {exc}"
            return False


def _guarded(condition: Condition) -> str:
    """A condition as one item of a RuleSet's program: null where a feature it reads is missing (NaN).

    The library refuses to order NaN against a number, and that error would cost the whole row's program: every
    rule would then run alone. Guarded, only the rules that read a missing value run alone (where `||` may still
    make them hold); a missing value is common (a card's first payment has no history)."""
    optional = [name for name in condition.names if name in FEATURES and name not in FIELDS]
    if not optional:
        return f"({condition.source})"
    present = " && ".join(f"{name} == {name}" for name in optional)  # NaN is the one value not equal to itself
    return f"(({present}) ? ({condition.source}) : null)"


def conjuncts(condition: Condition) -> list[Condition]:
    """The clauses of a condition that is a chain of top-level `&&`, each checked on its own; [condition] for any
    other. Rows can then be run through one clause after another, each on the rows the last one kept: what
    `&&` gives (a clause that fails on a row does not hold, as a whole condition that fails does not)."""
    parts = _top_level_parts(condition.source)
    if len(parts) < 2 or any(condition.source[start - 2 : start] != "&&" for start, _ in parts[1:]):
        return [condition]
    try:
        return [check(part) for _, part in parts]
    except RuleError:  # a clause that does not check alone (it cannot, if the whole did; kept whole to be sure)
        return [condition]
