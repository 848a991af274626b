"""PostgreSQL's wire tools for the hot path's statements: cursors with binary, server-bound values.

Django's psycopg cursors bind on the client: every value is quoted into the SQL text (an array element by
element) and every result comes back as text to parse. The statements an ingest batch runs (the reads and
the one write in scoring/storage/postgres.py) take their values with `%b` placeholders through a plain
psycopg cursor instead, which sends arrays as arrays and decodes binary results in C.
"""

from __future__ import annotations

import struct
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorWrapper
from psycopg.adapt import Dumper
from psycopg.pq import Format

FLOAT4_ARRAY_OID = 1021  # real[]
FLOAT4_OID = 700


def binary_cursor(*, prepared: bool = False) -> CursorWrapper:
    """A server-binding psycopg cursor with binary results on this thread's connection.

    Wrapped as Django wraps its own: database errors come out as Django's (IntegrityError and the rest),
    and `connection.execute_wrapper()` hooks see the statements. `prepared`: its statements are prepared
    on the connection the first time (see _PreparingCursorWrapper).
    """
    db = connections[DEFAULT_DB_ALIAS]  # this thread's, not the proxy: the wrapper asks it for much
    db.ensure_connection()
    cursor = psycopg.Cursor(db.connection)
    cursor.format = psycopg.pq.Format.BINARY
    return (_PreparingCursorWrapper if prepared else CursorWrapper)(cursor, db)


class _PreparingCursorWrapper(CursorWrapper):
    """Django's cursor wrapper, executing with psycopg's `prepare=True`: PostgreSQL parses (and, when it
    finds a generic plan no worse, plans) the statement once per connection instead of every time.

    Only for statements whose plan cannot depend on the data: a generic plan is made once, from the
    statistics of the moment (a read of an empty table would keep a sequential scan).
    """

    def _execute(self, sql: str, params: Any, *ignored_wrapper_args: Any) -> Any:
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors:
            return self.cursor.execute(sql, params, prepare=True)


def read_together(statements: list[tuple[str, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    """The rows of several reads, sent in one round trip (psycopg's pipeline mode), each through a
    `binary_cursor()`; errors come out as Django's.

    Ingest's three reads of a batch (stored ids, card histories, merchant windows) then cost one round trip,
    not three, in the server and in PostgreSQL alike.
    """
    db = connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    with ExitStack() as stack:
        cursors = [stack.enter_context(binary_cursor()) for _ in statements]
        with db.wrap_database_errors, db.connection.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]


@dataclass(frozen=True)
class Float4Array:
    """A float32 numpy array sent as one binary `real[]` parameter (flattened), NaN where NaN.

    psycopg adapts numpy scalars but not arrays, and dumping a list of Python floats element by element is
    a noticeable share of a transaction's cost; this builds the array's binary form in one numpy pass.
    """

    values: np.ndarray


class Float4ArrayDumper(Dumper):
    """PostgreSQL's binary array format: a header (dimensions, no nulls, element type, size, lower bound 1),
    then each element as its length (4) and its big-endian float4."""

    format = Format.BINARY
    oid = FLOAT4_ARRAY_OID
    _element = np.dtype([("length", ">i4"), ("value", ">f4")])

    def dump(self, obj: Float4Array) -> bytes:
        flat = np.asarray(obj.values, dtype=np.float32).ravel()
        elements = np.empty(flat.size, dtype=self._element)
        elements["length"] = 4
        elements["value"] = flat
        return struct.pack("!iiIii", 1, 0, FLOAT4_OID, flat.size, 1) + elements.tobytes()


psycopg.adapters.register_dumper(Float4Array, Float4ArrayDumper)
