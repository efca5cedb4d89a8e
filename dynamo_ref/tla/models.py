"""The TLC models of spec/Dynamo.tla and what each must conclude."""

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from dynamo_ref.tla.tlc import Simulation, TlcResult, Verdict

Suite = Literal["ci", "nightly"]
MANIFEST = Path("models") / "models.toml"


class ManifestError(ValueError):
    """models.toml is missing or malformed."""


@dataclass(frozen=True)
class Model:
    """One cfg under spec/models/ with the outcome TLC must reach."""

    name: str
    suite: Suite
    violates: str | None
    module: str = "MCDynamo.tla"
    # A random simulation of this many seconds instead of the full search.
    simulate: Simulation | None = None
    # The cfg file's name, when models share one (default: the model's name).
    config: str | None = None

    @property
    def expect_pass(self) -> bool:
        return self.violates is None

    @property
    def expected(self) -> str:
        return "pass" if self.violates is None else f"fail: {self.violates}"

    def cfg(self, spec_dir: Path) -> Path:
        return spec_dir / "models" / f"{self.config or self.name}.cfg"

    def matches(self, result: TlcResult) -> bool:
        if self.violates is None:
            return result.verdict is Verdict.PASS
        return (
            result.verdict in (Verdict.INVARIANT, Verdict.PROPERTY)
            and result.violated == self.violates
        )


def default_spec_dir() -> Path:
    """spec/ of the checkout this package runs from, else ./spec."""
    beside_package = Path(__file__).resolve().parents[2] / "spec"
    if (beside_package / MANIFEST).is_file():
        return beside_package
    return Path.cwd() / "spec"


def _model(entry: object, where: Path) -> Model:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: each [[model]] must be a table")
    table = cast(dict[str, object], entry)
    name = table.get("name")
    suite = table.get("suite", "ci")
    expect = table.get("expect")
    prop = table.get("property")
    module = table.get("module", "MCDynamo.tla")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: a model has no name")
    if suite not in ("ci", "nightly"):
        raise ManifestError(f"{where}: model {name}: suite must be 'ci' or 'nightly'")
    if expect == "pass" and prop is not None:
        raise ManifestError(f"{where}: model {name}: a passing model names no property")
    if expect == "fail" and not (isinstance(prop, str) and prop):
        raise ManifestError(f"{where}: model {name}: a failing model names its property")
    if expect not in ("pass", "fail"):
        raise ManifestError(f"{where}: model {name}: expect must be 'pass' or 'fail'")
    if not isinstance(module, str):
        raise ManifestError(f"{where}: model {name}: module must be a file name")
    config = table.get("cfg")
    if config is not None and not (isinstance(config, str) and config):
        raise ManifestError(f"{where}: model {name}: cfg must be a model file's name")
    simulate: Simulation | None = None
    if "simulate" in table:
        seconds, depth, seed = table["simulate"], table.get("depth", 100), table.get("seed", 1)
        if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0):
            raise ManifestError(f"{where}: model {name}: simulate must be seconds > 0")
        if not (isinstance(depth, int) and depth > 0 and isinstance(seed, int)):
            raise ManifestError(f"{where}: model {name}: depth must be > 0, seed an integer")
        simulate = Simulation(float(seconds), depth, seed)
    return Model(name, suite, cast(str | None, prop), module, simulate, config)


def load_models(spec_dir: Path) -> list[Model]:
    path = spec_dir / MANIFEST
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"model list not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path}: {error}") from None
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ManifestError(f"{path}: expected [[model]] tables")
    models = [_model(entry, path) for entry in entries]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ManifestError(f"{path}: duplicate model names")
    for m in models:
        if not m.cfg(spec_dir).is_file():
            raise ManifestError(f"{path}: model {m.name}: {m.cfg(spec_dir)} not found")
    return models
