"""Conformance: every history of the shared Knossos and Porcupine suites, checked with the model
its README names, gets the verdict the upstream tests assert.

The suites live beside the repository, in `shared/conformance` (read only). A missing folder is
a failure, not a skip: these tests are the evidence that the checker agrees with its peers.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import models as M
from harness.checkers.linearizable import CheckResult, check
from harness.checkers.models import Model
from harness.history import pair, read_edn_history, read_porcupine_etcd_log, read_porcupine_kv

AnyModel = Model[Any, Any, Any]

# Generous: the whole suite takes about a second; a budget only turns a hang into "unknown".
TIME_LIMIT = 120.0


def conformance_dir() -> Path:
    """`shared/conformance` beside the repository (as CI clones it)."""
    return Path(__file__).resolve().parents[2] / "shared" / "conformance"


def require_conformance() -> Path:
    root = conformance_dir()
    if not (root / "porcupine" / "verdicts.csv").is_file() or not (root / "knossos").is_dir():
        pytest.fail(
            f"conformance suite not found at {root}: clone the repository beside `shared/` "
            "(with shared/conformance/{knossos,porcupine}) to run these tests",
            pytrace=False,
        )
    return root


MISSING = "conformance-suite-missing"


def _files(sub: str, pattern: str) -> list[str]:
    """Relative paths for parametrization, or one placeholder that fails when run."""
    root = conformance_dir() / sub
    if not root.is_dir():
        return [MISSING]
    return sorted(str(p.relative_to(root)) for p in root.rglob(pattern))


def _verdict_rows() -> list[dict[str, str]]:
    path = conformance_dir() / "porcupine" / "verdicts.csv"
    if not path.is_file():
        return [{"file": MISSING}]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _check(model: AnyModel, path: Path) -> CheckResult:
    if path.suffix == ".log":
        ops = read_porcupine_etcd_log(path)
    elif path.suffix == ".txt":
        ops = read_porcupine_kv(path)
    else:
        ops = read_edn_history(path)
    return check(model, pair(ops), time_limit=TIME_LIMIT)


def test_conformance_suite_present() -> None:
    root = require_conformance()
    assert len(_verdict_rows()) == 109
    assert len(list((root / "porcupine" / "jepsen").glob("*.log"))) == 103
    assert len(list((root / "knossos").rglob("*.edn"))) == 122


# ---------------------------------------------------------------------------------------------
# Porcupine: verdicts.csv


@pytest.mark.parametrize("row", _verdict_rows(), ids=lambda r: r["file"])
def test_porcupine(row: dict[str, str]) -> None:
    root = require_conformance() / "porcupine"
    path = root / row["file"]
    if row["model"] == "etcd-cas-register":
        result = _check(M.etcd_register(), path)
    else:
        assert row["model"] == "kv-get-put-append"
        result = _check(M.kv(), path)
    if row["expected_linearizable"] == "":
        # etcd_095.log: empty, no upstream test. Nothing happened, which is linearizable.
        assert row["operations"] == "0"
        assert result.operations == []
        assert result.verdict == "valid"
        return
    expected = "valid" if row["expected_linearizable"] == "true" else "invalid"
    assert len(result.operations) == int(row["operations"])
    assert result.verdict == expected, result.describe()


# Porcupine's NoPartition tests: the kv files as one map-valued state. Its own tests run c01 and
# c10 this way (about 2.3 s in Go for c10); c50 is not run unpartitioned upstream.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("c01-ok", "valid"),
        ("c01-bad", "invalid"),
        pytest.param("c10-ok", "valid", marks=pytest.mark.slow),
        pytest.param("c10-bad", "invalid", marks=pytest.mark.slow),
    ],
)
def test_porcupine_kv_without_partitions(name: str, expected: str) -> None:
    root = require_conformance() / "porcupine" / "kv"
    result = _check(M.kv(partitioned=False), root / f"{name}.txt")
    assert len(result.partitions) == 1
    assert result.verdict == expected


# ---------------------------------------------------------------------------------------------
# Knossos: the README table (core_test.clj's test-examples)


def _knossos_model(rel: str) -> AnyModel:
    if rel.startswith("multi-register/"):
        return M.multi_register({"x": 0, "y": 0})
    return M.cas_register(0)


@pytest.mark.parametrize(
    "rel", [f for f in _files("knossos", "*.edn") if not f.startswith("mutex/")]
)
def test_knossos(rel: str) -> None:
    root = require_conformance() / "knossos"
    expected = "valid" if "/good/" in f"/{rel}" else "invalid"
    assert "/good/" in f"/{rel}" or "/bad/" in f"/{rel}"
    result = _check(_knossos_model(rel), root / rel)
    assert result.verdict == expected, result.describe()


# wgl_test.clj: the first operation that cannot be linearized (by its completion's :index) and,
# for bad-analysis, the :previous-ok.
WGL_CASES = [
    ("bad-analysis.edn", 0, (21, 2, 14), (19, 0, 11)),
    ("cas-failure.edn", 0, (70, 0, 491), None),
    ("immediate-failure.edn", 0, (1, 3, 3), None),
    ("rethink-fail-minimal.edn", None, (1, 3, 4), None),
    ("rethink-fail-smaller.edn", None, (12, 3, 217), None),
]


@pytest.mark.parametrize(("name", "initial", "op", "previous"), WGL_CASES)
def test_knossos_first_failing_op(
    name: str,
    initial: int | None,
    op: tuple[int, int, int],
    previous: tuple[int, int, int] | None,
) -> None:
    path = require_conformance() / "knossos" / "cas-register" / "bad" / name
    result = _check(M.cas_register(initial), path)
    assert result.verdict == "invalid"
    assert result.failure is not None
    failed = result.failure.failed_op
    assert failed is not None
    assert failed.completion is not None
    assert (failed.process, failed.status, failed.f) == (op[0], "ok", "read")
    assert (failed.output, failed.completion.index) == op[1:]
    if previous is not None:
        prev = result.failure.previous_ok
        assert prev is not None
        assert prev.completion is not None
        assert (prev.process, prev.output, prev.completion.index) == previous


def test_knossos_mutex_etcd() -> None:
    # No upstream assertion (report_test.clj only renders it). The checker must reach a definite
    # verdict and, on "invalid", name the operation it cannot linearize.
    path = require_conformance() / "knossos" / "mutex" / "bad" / "etcd.edn"
    result = _check(M.mutex(), path)
    assert result.verdict in ("valid", "invalid")
    if result.verdict == "invalid":
        assert result.failure is not None
        assert result.failure.failed_op is not None
