"""Nova's extra-spec operators: does one host value satisfy one requested value?"""

from __future__ import annotations

import operator
from collections.abc import Callable

Compare = Callable[[str, str], bool]


def _numeric(compare: Callable[[float, float], bool]) -> Compare:
    def check(have: str, want: str) -> bool:
        # Nova raises on a non-numeric value; here a value that is not a number simply does
        # not satisfy a numeric requirement, so one odd aggregate cannot fail a request.
        try:
            return compare(float(have), float(want))
        except ValueError:
            return False

    return check


# Nova's table (nova/scheduler/filters/extra_specs_ops.py). `=` is "at least", not
# equality: a flavor asking `= 4` for a capacity wants 4 or more.
_OPERATORS: dict[str, Compare] = {
    "=": _numeric(operator.ge),
    "==": _numeric(operator.eq),
    "!=": _numeric(operator.ne),
    ">=": _numeric(operator.ge),
    "<=": _numeric(operator.le),
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
    "<in>": lambda have, want: want in have,
}


def match(value: str, requirement: str) -> bool:
    """True if the host's `value` satisfies the flavor's `requirement`.

    The requirement's first word may be an operator: `= 4`, `>= 4`, `s== abc`,
    `<in> gpu` (substring), `<all-in> a b` (every word a substring),
    `<or> a <or> b` (any of). Without one, the whole requirement must equal the value.
    """
    words = requirement.split()
    if not words:
        return value == requirement
    op = words[0]
    if op == "<or>":
        # "<or> a <or> b <or> c": the choices are every other word after the first.
        return value in words[1::2]
    if op == "<all-in>":
        return len(words) > 1 and all(word in value for word in words[1:])
    compare = _OPERATORS.get(op)
    if compare is None:
        return value == requirement
    # An operator with no operand asks for nothing a host could satisfy.
    return len(words) > 1 and compare(value, words[1])
