"""Schemathesis hooks for tests/fuzzing.py (loaded by the schemathesis command through SCHEMATHESIS_HOOKS).

A receive on an empty queue long-polls for its whole `wait` (up to MAX_WAIT, 20 s): a valid `wait` is cut to a
few milliseconds, so that a case takes milliseconds and a run stays within its budget. Values the document rules
out (below 0, above MAX_WAIT, not a number) are sent as generated, so their refusal is still tested.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from wonderq.commands import MAX_WAIT

LONGEST_WAIT = 0.01  # seconds: long enough to park the receive, short enough not to count


def _cut(container: object) -> None:
    if not isinstance(container, dict) or isinstance(container.get("wait"), bool):
        return
    wait = container.get("wait")
    try:
        number = float(wait) if isinstance(wait, int | float | str) else None
    except ValueError:  # not a number: sent as it is
        return
    if number is not None and LONGEST_WAIT < number <= MAX_WAIT:
        container["wait"] = str(LONGEST_WAIT) if isinstance(wait, str) else LONGEST_WAIT


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]) -> None:
    """Cut the long poll of a receive (in its body or its query) to LONGEST_WAIT."""
    if case.operation.path.endswith("/receive"):
        _cut(case.body)
        _cut(case.query)
