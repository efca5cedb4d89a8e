"""The `dynamo-ref` entry point: the node's command line (``dynamo_ref.cli``) with the fault
harness's commands added. ``dynamo_ref`` never imports the harness; the harness registers its
commands here, loaded only when one runs."""

from __future__ import annotations

from dynamo_ref.cli import LazyGroup
from dynamo_ref.cli import main as _main

assert isinstance(_main, LazyGroup)
_main.lazy("check", "harness.check_cli:check_command", "Check a history: verdict and timeline.")
_main.lazy("campaign", "harness.campaign_cli:campaign_command", "Run a fault campaign.")
_main.lazy("serve", "harness.serve:serve_command", "Serve campaign reports on loopback.")

main = _main

__all__ = ["main"]
