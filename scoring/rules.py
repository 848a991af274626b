"""Rule conditions: CEL expressions over a transaction, checked when a rule is saved and run on every transaction.

The expressions are parsed, type-checked and evaluated by `cel-expr-python`, Google's CEL implementation in C++
behind a Python module: every name is declared with its type, so the library's own checker refuses a syntax
error, an unknown name or a type error with its position, and nothing here guesses at types. It takes a batch's
values in as whole columns, where the Rust-backed `common-expression-language` converted every value on its own,
which cost more than the conditions (docs/rules.md has the comparison). Nothing here evaluates an expression.

A condition reads the names in NAMES: the transaction's own fields, every model feature by its name, the active
model's `score` and the lists (`card_blocked`, ...). Where a field and a feature share a name (`amount`,
`channel`) the field is meant: `channel == "ecom"` reads better than the feature's code. A missing feature value
(a card's first payment has no history) is NaN, compared as IEEE says: every comparison with it is false but `!=`.

The live rules are compiled into one program that returns the list of their results for every row of a batch
(RuleSet): one evaluation a batch for all of them, given only the names some rule reads.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext.ext_bindings import ExtBindings

from scoring.features import FEATURES

log = logging.getLogger(__name__)

# A name's kind is its declared CEL type, and how a message names that type.
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
_CEL_TYPES = {NUMBER: cel.Type.DOUBLE, TEXT: cel.Type.STRING, WHOLE: cel.Type.INT, FLAG: cel.Type.BOOL}
_ENV = cel.NewEnv(variables={name: _CEL_TYPES[kind] for name, kind in NAMES.items()})
# A RuleSet's batch program reads a column a name (a list of its rows' values) and maps over the rows' indices;
# these names start with "_", which no name in NAMES does, so no condition can read them.
_COLUMN, _ROWS, _ROW = "_column_", "_rows", "_row"
_BATCH_ENV = cel.NewEnv(
    variables={f"{_COLUMN}{name}": cel.Type.List(_CEL_TYPES[kind]) for name, kind in NAMES.items()}
    | {_ROWS: cel.Type.List(cel.Type.INT)},
    extensions=[ExtBindings()],
)
# How the checker's type names read in a message.
_TYPE_WORDS = {"double": NUMBER, "string": TEXT, "int": WHOLE, "bool": FLAG, "uint": "an unsigned number"}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_OVERLOAD = re.compile(r"found no matching overload for '([^']+)' applied to '\((.*)\)'")
_COMPARISON = {"_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"}
_WHOLE_LITERAL_AFTER = re.compile(r"\s*-?\s*(\d+)(?![\w.])")
_WHOLE_LITERAL_BEFORE = re.compile(r"(?<![\w.])(\d+)\s*$")


class RuleError(ValueError):
    """A condition the service refuses: what is wrong, and where (1-based line and column) when that is known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.message, self.line, self.column = message, line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class Condition:
    """A checked condition: its source as written, the text compiled (whole-number literals compared with a
    number written as decimals: `_decimal_literals`), the compiled program and the names it reads."""

    source: str
    compiled: str
    program: Any
    names: tuple[str, ...]

    def holds(self, values: dict[str, Any]) -> bool:
        """Whether it holds for `values` (a dict with at least its names); where it fails (an integer divided by
        zero) it does not: the library returns the failure as a value, never raises it."""
        return self.program.eval(data=values).plain_value() is True


def check(source: str) -> Condition:
    """Compile `source` and refuse it (RuleError) for a syntax error, a name or function that does not exist, a
    use of a value as another type than it has, or a result that is not true or false."""
    text = source.strip()
    if not text:
        raise RuleError("the condition is empty: write an expression such as amount > 500")
    decimals: set[int] = set()  # offsets in `text` of whole-number literals' ends, written with ".0" after them
    while True:
        compiled = _with_decimals(text, decimals)
        try:
            program = _ENV.compile(compiled)
            break
        except RuntimeError as exc:
            said = str(exc)
        errors = [
            (_source_offset(_offset(compiled, int(line), int(column)), decimals), error)
            for line, column, error in _ERROR.findall(said)
        ]
        if not errors:
            raise RuleError(said.split("\n")[0]) from None
        mended, refused = _decimal_literals(text, errors)
        if mended <= decimals:  # nothing more to mend: the first refusal (a mend may take follow-on errors away)
            message, offset = _message(*refused[0], text)
            raise RuleError(message, **_line_column(text, offset))
        decimals |= mended
    result = program.return_type()
    if result != cel.Type.BOOL:
        kind = _TYPE_WORDS.get(result.name().lower(), f"a value of type {result.name().lower()}")
        raise RuleError(f"the condition must be true or false; it gives {kind}", line=1, column=1)
    return Condition(source=text, compiled=compiled, program=program, names=_names(text))


def _decimal_literals(text: str, errors: list[tuple[int, str]]) -> tuple[set[int], list[tuple[int, str]]]:
    """Where in `text` a whole-number literal compared with a number ends (to be written as a decimal, `500` as
    `500.0`), and the errors (offset, message) that are not such a comparison or whose whole number is not a
    literal.

    CEL compares a whole number with a decimal one when it runs, but its checker refuses the comparison unless
    an option this binding does not expose is set; a team writes `amount > 500` and means the number."""
    ends, refused = set(), []
    for at, said in errors:  # `at`: the operator's offset
        found = _OVERLOAD.fullmatch(said)
        sides = tuple(t.strip() for t in found[2].split(",")) if found else ()
        literal = None
        if found and found[1] in _COMPARISON and sides == ("double", "int"):
            literal = _WHOLE_LITERAL_AFTER.match(text, at + len(found[1].strip("_")))
        elif found and found[1] in _COMPARISON and sides == ("int", "double"):
            literal = _WHOLE_LITERAL_BEFORE.search(text, 0, at)
        if literal:
            ends.add(literal.end(1))
        else:
            refused.append((at, said))
    return ends, refused


def _with_decimals(text: str, ends: set[int]) -> str:
    for end in sorted(ends, reverse=True):
        text = text[:end] + ".0" + text[end:]
    return text


def _source_offset(offset: int, ends: set[int]) -> int:
    """An offset in `_with_decimals(text, ends)` as the offset in `text` it came from."""
    for k, end in enumerate(sorted(ends)):
        if offset < end + 2 * k:
            return offset - 2 * k
    return offset - 2 * len(ends)


def _message(at: int, said: str, text: str) -> tuple[str, int]:
    """The checker's message in the words of the rules page, and the offset in `text` to point at."""
    if said.startswith("Syntax error:"):
        detail = re.sub(r" expecting (\{.*\}|'[^']*')$", "", said.removeprefix("Syntax error:").strip())
        if "'<EOF>'" in detail:
            detail = "the condition ends where a value or name was expected"
        return f"syntax error: {detail}", at
    undeclared = re.match(r"undeclared reference to '([^']+)'", said)
    if undeclared:
        name = undeclared[1]
        if text[at : at + 1] == "(":  # a call: the library points at its parenthesis, the page at the name
            return f"unknown function '{name}'", len(text[:at].rstrip()) - len(name)
        return f"unknown name '{name}'{_suggestion(name)}", at
    overload = _OVERLOAD.fullmatch(said)
    if overload:
        operator = overload[1].strip("_")
        types = [_TYPE_WORDS.get(t.strip(), t.strip()) for t in overload[2].split(",")]
        if set(types) == {NUMBER, WHOLE}:  # a comparison with a literal was mended already: a value, or arithmetic
            return (
                f"{operator} cannot be applied to {' and '.join(types)}: write a whole-number literal as a decimal "
                "(2.0), or convert the whole number with double(...)"
            ), at
        return f"{operator} cannot be applied to {' and '.join(types)}", at
    return said, at


def _names(text: str) -> tuple[str, ...]:
    """The declared names `text` reads: its identifiers outside string literals that are not a field or method
    after a dot. (A comprehension's own variable that shadows a name is counted too: a value handed over unread.)"""
    blanked = _STRING.sub(lambda m: "0" * len(m[0]), text)
    found = []
    for match in _IDENTIFIER.finditer(blanked):
        name = match[0]
        before = blanked[: match.start()].rstrip()
        if name in NAMES and name not in found and not (before.endswith(".") and _selects(before[:-1])):
            found.append(name)
    return tuple(found)


def _selects(before_dot: str) -> bool:
    """Whether a dot after `before_dot` selects from a value (`mcc.size`) rather than starts a name (`.amount`)."""
    stripped = before_dot.rstrip()
    return bool(stripped) and (stripped[-1].isalnum() or stripped[-1] in "_)]}")


def _offset(text: str, line: int, column: int) -> int:
    """The index in `text` of a 1-based line and column (the library counts columns in characters)."""
    lines = text.split("\n")
    return sum(len(earlier) + 1 for earlier in lines[: line - 1]) + column - 1


def _line_column(text: str, offset: int) -> dict[str, int]:
    before = text[:offset]
    return {"line": before.count("\n") + 1, "column": offset - (before.rfind("\n") + 1) + 1}


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, NAMES, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else "; names are listed on the rules page"


# --- running many rules ------------------------------------------------------------------------------------------


class RuleSet:
    """Rules compiled into one program that returns each one's result, in their order, for a whole batch.

    The batch program maps over the rows, binding each name to its row's value in the batch's columns
    (`cel.bind`) around the list of conditions as written: a column is handed to the library as one list, far
    cheaper than a value a row, and the conditions are checked again together. A lone row runs the row program,
    which skips the batch program's fixed cost.

    The library refuses comprehensions nested more than 32 deep, and each bound name is one: rules reading more
    names than that (or with deep comprehensions of their own) run a row at a time. Slower, never refused."""

    def __init__(self, conditions: Sequence[Condition]) -> None:
        self.conditions = list(conditions)
        self.names = sorted({name for c in self.conditions for name in c.names})
        results = "[" + ", ".join(f"({c.compiled})" for c in self.conditions) + "]"
        # Each condition checked alone; a list of them is not nested deeper than its deepest.
        self.row_program = _ENV.compile(results) if self.conditions else None
        for name in reversed(self.names):
            results = f"cel.bind({name}, {_COLUMN}{name}[{_ROW}], {results})"
        batch = f"{_ROWS}.map({_ROW}, {results})"
        self.batch_program = _compiled(_BATCH_ENV, batch) if self.conditions else None

    def run(
        self, columns: dict[str, Sequence[Any]], rows: int, *, failures: dict[int, str] | None = None
    ) -> list[list[bool]]:
        """Each row's result for each rule. `columns`: a sequence of `rows` values for each name in self.names.
        A rule that fails on a row (e.g. an integer divided by zero) does not hold for it; `failures`, when
        given, gets each failing rule's index with what went wrong the first time."""
        if not self.conditions:
            return [[] for _ in range(rows)]
        if rows > 1 and self.batch_program is not None:
            data = {f"{_COLUMN}{name}": columns[name] for name in self.names} | {_ROWS: list(range(rows))}
            results = self.batch_program.eval(data=data).plain_value()
            if isinstance(results, list):
                return results
            # A rule failed on some row, and a list with a failure in it is the failure: row by row.
        out = []
        for i in range(rows):
            row = {name: columns[name][i] for name in self.names}
            results = self.row_program.eval(data=row).plain_value()
            out.append(results if isinstance(results, list) else self._alone(row, failures))
        return out

    def _alone(self, row: dict[str, Any], failures: dict[int, str] | None) -> list[bool]:
        """Each rule run alone on `row`, a failure not holding (and kept in `failures`)."""
        out = []
        for index, condition in enumerate(self.conditions):
            result = condition.program.eval(data=row).plain_value()
            if not isinstance(result, bool) and failures is not None and index not in failures:
                failures[index] = str(result)
            out.append(result is True)
        return out


def _compiled(env: Any, text: str) -> Any:
    """`text` compiled, or None when the library refuses its depth (see RuleSet): the rules then run a row at a
    time."""
    try:
        return env.compile(text)
    except RuntimeError as exc:
        log.info("the live rules run a row at a time: %s", str(exc).split("\n")[0])
        return None


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
