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


def test_compose_scale_profile_runs_postgres_two_shards_and_a_gpu_worker():
    """`docker compose --profile scale`: PostgreSQL (volume, health check), shards 0 and 1 of 2 on it, one CUDA worker
    on the queue, every process on one adapters volume; the plain `docker compose up` still starts the one bot."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services, volumes = compose["services"], compose["volumes"]
    assert "profiles" not in services["kilroy"]
    scale = {name: s for name, s in services.items() if "scale" in s.get("profiles", [])}
    assert set(scale) == {"postgres", "shard-0", "shard-1", "worker"}

    pg = scale["postgres"]
    assert pg["image"].startswith("postgres:") and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    data = [v for v in pg["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert data and data[0].split(":")[0] in volumes

    def volume(service: dict, path: str) -> str:
        return next(v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == path)

    shards = [scale["shard-0"], scale["shard-1"]]
    adapters = {volume(s, "/var/lib/kilroy/adapters") for s in [*shards, scale["worker"]]}
    assert len(adapters) == 1 and adapters <= set(volumes)  # promotions land where every process reads
    # each process its own data folder (the run lock), no two the same
    assert len({volume(s, "/var/lib/kilroy/data") for s in [*shards, scale["worker"]]}) == 3
    for i, shard in enumerate(shards):
        env = shard["environment"]
        assert shard["command"] == ["run"]
        assert env["KILROY_SHARD_COUNT"] == "2" and env["KILROY_SHARD_IDS"] == str(i)
        assert shard["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert shards[0]["ports"] != shards[1]["ports"]

    worker = scale["worker"]
    assert worker["command"] == ["worker"] and worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    cuda = worker["build"]["args"]["TORCH_INDEX"]
    assert "/whl/cu" in cuda and cuda in (ROOT / "Dockerfile").read_text()  # the index the Dockerfile documents
    gpu = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]

    for name in ("shard-0", "shard-1", "worker"):
        env = scale[name]["environment"]
        assert (
            env["KILROY_DATABASE_URL"].startswith("postgresql://kilroy:")
            and "@postgres:5432/kilroy" in env["KILROY_DATABASE_URL"]
        )
        assert env["KILROY_TRAINING_QUEUE"] == "postgres"
    # every KILROY_ name is a setting (.env.example lists them all); the shard and queue settings come with the
    # shards and jobs branches, merged beside this file
    documented = set(re.findall(r"^#? ?(KILROY_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    named = {k for s in scale.values() for k in s.get("environment", {}) if k.startswith("KILROY_")}
    assert named - documented <= {"KILROY_SHARD_COUNT", "KILROY_SHARD_IDS", "KILROY_TRAINING_QUEUE"}


def test_every_third_party_package_the_code_imports_is_declared():
    """A clean install gets what bot/ and cogs/ import at module level or lazily (a merge once dropped asyncpg, and
    a fresh install could not open KILROY_DATABASE_URL): each is in dependencies or, for the queue, the scale extra."""
    import ast
    import sys
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = " ".join(project["dependencies"] + project["optional-dependencies"]["scale"]).lower()
    # import name -> distribution name, where they differ
    dist = {
        "discord": "discord.py",
        "dotenv": "python-dotenv",
        "pythonjsonlogger": "python-json-logger",
        "yaml": "pyyaml",
    }
    imported: set[str] = set()
    for folder in ("bot", "cogs"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in {"bot", "cogs", "tests"}}
    missing = sorted(
        m for m in third_party if dist.get(m, m).lower().replace("_", "-") not in declared.replace("_", "-")
    )
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"
