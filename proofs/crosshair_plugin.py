"""Loaded by CrossHair (``--extra_plugin``) before any analysis starts, outside its tracing.

icontract creates, on first use, one global set of the objects whose invariants are being
checked. Created during symbolic execution, that set is CrossHair's symbolic set: every add and
discard wraps it in one more lazy layer, it outlives the path that made it, and after enough
paths a membership test overflows the stack. The RecursionError then shows up as a false
counterexample on whatever invariant-carrying method runs next. A plain set made here is never
wrapped.
"""

import icontract._checkers

if icontract._checkers._IN_PROGRESS.get() is None:
    icontract._checkers._IN_PROGRESS.set(set())
