"""The deployment files agree with the code: one install script, a non-root image health-checked on /healthz,
a compose file with volumes and a restart policy, the LICENSE pyproject names."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_install_script_pins_torch_first_and_is_used_everywhere():
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert subprocess.run(["sh", "-n", str(ROOT / "scripts" / "install.sh")], check=False).returncode == 0
    torch_at = script.index('"torch==$TORCH_VERSION"')
    assert "TORCH_VERSION=2.13.0" in script and torch_at < script.index('install -q "$SPEC"')
    assert "scripts/install.sh" in (ROOT / "Makefile").read_text()
    assert "scripts/install.sh" in (ROOT / "Dockerfile").read_text()


def test_dockerfile_runs_non_root_with_volumes_and_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, flags=re.M) and "/healthz" in text
    assert "VOLUME" in text and "/var/lib/kilroy/data" in text and "/var/lib/kilroy/adapters" in text
    assert "ARG TORCH_INDEX" in text  # the CUDA variant is a build argument


def test_compose_has_the_bot_volumes_restart_and_a_prometheus_profile():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot = compose["services"]["kilroy"]
    assert bot["restart"] == "unless-stopped" and bot["env_file"] == ".env" and len(bot["volumes"]) >= 3
    prom = compose["services"]["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["kilroy:8080"]


def test_systemd_unit_runs_kilroy_run_as_a_user():
    unit = (ROOT / "deploy" / "kilroy.service").read_text()
    assert "User=kilroy" in unit and re.search(r"^ExecStart=.*kilroy .*run$", unit, flags=re.M)
    assert "Restart=on-failure" in unit and "KillSignal=SIGTERM" in unit


def test_license_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
