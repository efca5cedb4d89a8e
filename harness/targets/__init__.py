"""Targets: the systems under test, each behind the `Target` protocol in `base.py`."""
