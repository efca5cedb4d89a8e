"""Jepsen-style fault harness: targets, nemeses, workloads, histories and checkers."""
