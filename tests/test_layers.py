"""The package's layers (pyproject.toml, [tool.importlinter]) hold: import-linter checks the contracts."""

from importlinter.cli import lint_imports

from xtal_utils.paths import ROOT


def test_import_contracts_hold():
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
