"""The one switch for icontract checks in the core.

Contracts are on by default (tests, proofs). Set ``DYNAMO_REF_CONTRACTS=0`` in the environment
before ``dynamo_ref`` is imported to switch them off (benchmarks): icontract decides at decoration
time, so the setting cannot change inside a running process.
"""

import os
from collections.abc import Callable
from typing import Any, TypeVar

from dynamo_ref.core.checker import QUERY

ENABLED: bool = os.environ.get("DYNAMO_REF_CONTRACTS", "1").strip().lower() not in {
    "0",
    "false",
    "off",
    "no",
}

_F = TypeVar("_F", bound=Callable[..., Any])


def query(func: _F) -> _F:
    """Mark a method (or a property's getter) that reads its instance and changes nothing.

    A class's invariants are checked before and after every call that can change an instance,
    so around a query they would be checked again on the state the last such call left:
    ``core/checker.py`` does not wrap a query in invariant checks. Whether each query really
    changes nothing is tested (tests/test_cheap_contracts.py), not assumed.
    """
    setattr(func, QUERY, True)
    return func


if ENABLED:
    # icontract's checks at a fraction of its per-call cost; see checker.py.
    from dynamo_ref.core.checker import install

    install()
