"""Everything the package reads at run time ships in a wheel: every data file under
ffpt_ase/ (decks, channel table, parameters, pre-trained models) matches a package_data
pattern of setup.cfg."""

import fnmatch
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_is_package_data():
    from setuptools.config.setupcfg import read_configuration
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patterns = read_configuration(ROOT / "setup.cfg")["options"]["package_data"]["ffpt_ase"]
    assert all("," not in p and " " not in p for p in patterns), patterns
    package = ROOT / "ffpt_ase"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert any(d.startswith("applications/h2combustion/decks/") for d in data)
    missing = [d for d in data if not any(fnmatch.fnmatch(d, p) for p in patterns)]
    assert missing == []
