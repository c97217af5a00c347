"""deploy/ checked statically (no Docker engine here): the files parse, reference files
that exist, run the real entrypoint, and name only settings crm-handoff has."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from mappings.loader import load_mappings
from sync.cli import _parser
from sync.schedule import read_schedule_file
from sync.settings import SECRETS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OTHER_ENV = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD_FILE", "TMPDIR"}
OTHER_ENV |= {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def known_setting(name: str) -> bool:
    fields = {f.upper() for f in Settings.model_fields}
    return name in fields or name in OTHER_ENV or (name.endswith("_FILE") and name[:-5] in SECRETS)


def k8s_docs() -> dict[str, dict]:
    docs = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return {d["kind"]: d for d in docs if d and "kind" in d}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_console_script_and_run_command_are_real():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["handoff"] == "crm_handoff.launch:main"  # checks the install, then runs sync.cli
    module, func = scripts["handoff"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert _parser().parse_args(["run"]).command == "run"


def test_dockerfile_slim_non_root_worker_entrypoint():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim", "python:3.11-slim"]
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["handoff", "run"\]$', text, re.M)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for name in src.split():
            assert (ROOT / name).exists(), f"Dockerfile copies missing {name}"
    for name in re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]+)=", text, re.M):
        assert known_setting(name), name


def test_compose_parses_and_references_exist():
    data = compose()
    assert {"postgres", "sandboxes", "worker"} <= set(data["services"])
    for name, svc in data["services"].items():
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src}"
        for key in svc.get("environment", {}):
            assert known_setting(key), f"{name}: {key}"
    for secret in data["secrets"].values():
        assert (DEPLOY / secret["file"]).is_file()
    worker = data["services"]["worker"]
    assert worker["entrypoint"][-1].endswith("exec handoff run")
    assert worker["environment"]["HANDOFF_STATE_URL"].startswith("postgresql+psycopg://")
    assert "handoff sandbox serve" in data["services"]["sandboxes"]["entrypoint"][-1]


def test_k8s_deployment_probes_secret_configmap():
    docs = k8s_docs()
    assert {"Deployment", "Secret", "ConfigMap", "Service"} <= set(docs)
    kustom = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert all((DEPLOY / "k8s" / r).is_file() for r in kustom["resources"])
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    env = {e["name"]: e for e in container["env"]}
    assert all(known_setting(name) for name in env), sorted(env)
    assert int(env["HANDOFF_METRICS_PORT"]["value"]) == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    secret_keys = set(docs["Secret"]["stringData"])
    refs = [e["valueFrom"]["secretKeyRef"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})]
    vols = {v["name"]: v for v in pod["volumes"]}
    refs += [
        {"name": vols["credentials"]["secret"]["secretName"], "key": i["key"]}
        for i in vols["credentials"]["secret"]["items"]
    ]
    assert all(r["name"] == docs["Secret"]["metadata"]["name"] and r["key"] in secret_keys for r in refs)
    assert vols["mappings"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    for name in ("HUBSPOT_ACCESS_TOKEN_FILE", "SALESFORCE_ACCESS_TOKEN_FILE"):
        assert env[name]["value"].startswith(
            next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "credentials")
        )
    assert pod["terminationGracePeriodSeconds"] > float(env["HANDOFF_STOP_TIMEOUT_SECONDS"]["value"])


def test_k8s_configmap_holds_valid_mappings_and_schedule(tmp_path):
    data = k8s_docs()["ConfigMap"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    assert {p.name for p in (ROOT / "mappings" / "default").glob("*.yaml")} <= set(data)
    (tmp_path / "schedule.yaml").unlink()
    mapping = load_mappings(str(tmp_path))
    assert mapping.reps.reps
    (tmp_path / "schedule.yaml").write_text(data["schedule.yaml"])
    assert set(read_schedule_file(tmp_path / "schedule.yaml")) == {"sync", "weekly-reset"}


def test_systemd_unit_runs_the_worker_with_known_settings():
    lines = (DEPLOY / "systemd" / "crm-handoff.service").read_text().splitlines()
    pairs = [ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#")]
    keys = {k for k, _ in pairs}
    assert {"ExecStart", "User", "Restart", "KillSignal", "TimeoutStopSec"} <= keys
    assert dict(pairs)["ExecStart"].endswith("/handoff run")
    assert dict(pairs)["User"] != "root"
    for key, value in pairs:
        if key == "Environment":
            for name in re.findall(r"([A-Z][A-Z0-9_]+)=", value):
                assert known_setting(name), name


@pytest.mark.parametrize("doc", ["README.md", "deploy/README.md"])
def test_readmes_document_every_worker_setting(doc):
    text = (ROOT / doc).read_text()
    worker = [
        "HANDOFF_AUTO_MIGRATE",
        "HANDOFF_SYNC_INTERVAL_SECONDS",
        "HANDOFF_SCHEDULE_FILE",
        "HANDOFF_LEASE_TTL_SECONDS",
        "HANDOFF_STOP_TIMEOUT_SECONDS",
    ]
    if doc == "README.md":
        worker += [
            "HANDOFF_METRICS_PORT",
            "HANDOFF_METRICS_HOST",
            "HANDOFF_MISFIRE_GRACE_SECONDS",
            "HANDOFF_WORKER_ID",
        ]
    missing = [name for name in worker if f"`{name}" not in text]
    assert not missing, f"{doc} does not document {missing}"
