"""The one switch for icontract checks in the core.

Contracts are on by default (tests, proofs). Set ``DYNAMO_REF_CONTRACTS=0`` in the environment
before ``dynamo_ref`` is imported to switch them off (benchmarks): icontract decides at decoration
time, so the setting cannot change inside a running process.
"""

import os

ENABLED: bool = os.environ.get("DYNAMO_REF_CONTRACTS", "1").strip().lower() not in {
    "0",
    "false",
    "off",
    "no",
}

if ENABLED:
    # icontract's checks at a fraction of its per-call cost; see checker.py.
    from dynamo_ref.core.checker import install

    install()
