"""requirements.txt is the one pins file; environment.yml must carry exactly the same pins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_every_requirement_is_an_exact_pin():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", line), line


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    yml_pins = {}
    for item in pip_section:
        if item.startswith("-e"):
            continue
        name, version = item.split("==")
        yml_pins[name.lower()] = version
    expected = {k: v for k, v in requirement_pins().items() if k != "horovod"}  # built by setup_env.py
    assert yml_pins == expected
    assert "setup_env.py --horovod-only" in (ROOT / "environment.yml").read_text()


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in requirement_pins().items():
        installed = version(name)
        assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, pinned {pinned}"
