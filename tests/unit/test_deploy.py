"""Tests of deploy/: every file validates with the tool made for it, and all of them agree with the code.

No Docker daemon or cluster runs here, so: the Kubernetes manifests go through ``kubernetes-validate --strict``
(the API's own schemas), the compose file through the ``compose-spec`` parser (after YAML anchors and merge keys
are resolved, as docker compose does), and a consistency check reads the Procfile, the Dockerfile, the compose
file, the manifests, the systemd units and the environment templates side by side with what
``worker/settings.py`` (and the rest of the code) reads.  The processes themselves are run by
``tests/e2e/test_deploy_processes.py``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from compose_spec import PyCompose

from worker.celery_conf import SOFT_SHUTDOWN_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRETS = {"KIE_API_KEY", "KIE_WEBHOOK_SECRET", "KIE_WEBHOOK_HMAC_KEY"}
OUR_VARIABLE = re.compile(r"\b((?:KIE|CELERY)_[A-Z0-9_]+|REDIS_URL)\b")


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def resource(kind: str, name: str) -> dict:
    [doc] = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container(deployment: dict) -> dict:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        if "=" in line and re.match(r"^[A-Z][A-Z0-9_]*=", line):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def variables_the_code_reads() -> set[str]:
    found = set()
    for folder in ("worker", "webhook"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"[\"']((?:KIE|CELERY)_[A-Z0-9_]+|REDIS_URL)[\"']", path.read_text()))
    for script in DEPLOY.glob("*.sh"):     # the container's entry point and health check
        found |= set(re.findall(r"\$\{?((?:KIE|CELERY)_[A-Z0-9_]+)", script.read_text()))
    return found


# -- validators -------------------------------------------------------------------------------------------------

def test_every_manifest_validates_against_the_kubernetes_schemas():
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name not in ("kustomization.yaml",
                                                                         "worker-scaledobject.yaml")]
    tool = Path(sys.executable).with_name("kubernetes-validate")
    done = subprocess.run([str(tool), "--strict", *files], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.findall(r"passed for resource (\S+)", done.stdout + done.stderr)
    kinds = sorted(f"{d['kind'].lower()}/{d['metadata']['name']}" for d in manifests() if d["kind"] != "ScaledObject")
    assert sorted(passed) == kinds


def test_the_validator_refuses_a_broken_manifest(tmp_path):
    broken = (K8S / "web.yaml").read_text().replace("containerPort: 8000", "containerPort: eight-thousand")
    (tmp_path / "web.yaml").write_text(broken)
    tool = Path(sys.executable).with_name("kubernetes-validate")
    done = subprocess.run([str(tool), "--strict", str(tmp_path / "web.yaml")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "containerPort" in done.stdout + done.stderr


def test_the_compose_file_is_valid_compose_after_its_anchors_are_resolved():
    parsed = PyCompose.from_yaml(yaml.safe_dump(compose()))
    assert sorted(parsed.service_names()) == ["beat", "flower", "redis", "web", "worker"]
    with pytest.raises(ValueError, match="replicas"):
        PyCompose.from_yaml("services:\n  worker:\n    image: x\n    deploy: {replicas: two}\n")


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


# -- one set of commands --------------------------------------------------------------------------------------

def test_the_procfile_has_its_process_types_and_every_deploy_file_runs_them_through_it():
    assert set(procfile()) == {"web", "worker", "beat", "dashboard"}
    entrypoint = (DEPLOY / "entrypoint.sh").read_text()
    assert "Procfile" in entrypoint and "web|worker|beat|dashboard)" in entrypoint
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["entrypoint.sh"]' in dockerfile and 'CMD ["web"]' in dockerfile
    assert "COPY Procfile" in dockerfile
    services = compose()["services"]
    assert {name: services[name]["command"] for name in ("web", "worker", "beat", "flower")} == {
        "web": ["web"], "worker": ["worker"], "beat": ["beat"], "flower": ["flower"]}
    for name in ("web", "worker", "beat", "flower"):
        assert container(resource("Deployment", f"kie-queue-{name}"))["args"] == [name]
        assert env_of(container(resource("Deployment", f"kie-queue-{name}")))["KIE_PROCESS"] == name
        assert services[name]["environment"]["KIE_PROCESS"] == name


def test_the_systemd_units_run_the_procfile_commands():
    commands = procfile()
    for kind, unit in (("web", "kie-queue-web.service"), ("worker", "kie-queue-worker@.service"),
                       ("beat", "kie-queue-beat.service")):
        text = (DEPLOY / "systemd" / unit).read_text()
        [exec_start] = re.findall(r"^ExecStart=(.*)$", text, re.M)
        program, *args = shlex.split(commands[kind])
        assert exec_start.split()[0].endswith("/" + program), (unit, exec_start)
        # the Procfile's own arguments, in order (a unit may add a hostname, a schedule path, a local bind)
        wanted = [a for a in args if "$PORT" not in a]
        got = shlex.split(exec_start)[1:]
        assert [a for a in got if a in wanted] == wanted, (unit, exec_start)


# -- one set of ports -----------------------------------------------------------------------------------------

def test_the_web_port_is_the_same_everywhere():
    assert "$PORT" in procfile()["web"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"PORT=8000", dockerfile) and re.search(r"^EXPOSE 8000\b", dockerfile, re.M)
    web = compose()["services"]["web"]
    assert web["environment"]["PORT"] == "8000" and "8000:8000" in web["ports"]
    c = container(resource("Deployment", "kie-queue-web"))
    assert env_of(c)["PORT"] == "8000" and c["ports"] == [{"name": "http", "containerPort": 8000}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = resource("Service", "kie-queue-web")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = resource("Ingress", "kie-queue-web")
    [path] = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/kie/callback/" and path["backend"]["service"]["name"] == "kie-queue-web"


def test_the_callback_path_the_ingress_exposes_is_the_one_the_code_serves():
    from worker.tokens import CALLBACK_PATH
    [path] = resource("Ingress", "kie-queue-web")["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == CALLBACK_PATH


# -- one set of variables -------------------------------------------------------------------------------------

def test_every_variable_a_deploy_file_sets_is_one_the_code_reads():
    read = variables_the_code_reads()
    sources = {
        "kie-queue.env.example": set(env_file(DEPLOY / "kie-queue.env.example")),
        "compose.env": set(env_file(DEPLOY / "compose.env")),
        "configmap.yaml": set(resource("ConfigMap", "kie-queue-config")["data"]),
        "secret.example.yaml": set(resource("Secret", "kie-queue-secrets")["stringData"]),
        "Dockerfile": set(OUR_VARIABLE.findall((DEPLOY / "Dockerfile").read_text())),
        "docker-compose.yml": {k for s in compose()["services"].values() for k in (s.get("environment") or {})},
    }
    for name, variables in sources.items():
        ours = {v for v in variables if OUR_VARIABLE.fullmatch(v)}
        assert ours <= read, f"{name} sets variables nothing reads: {sorted(ours - read)}"


def test_the_required_variables_are_provided_and_secrets_live_only_in_the_secret():
    config = resource("ConfigMap", "kie-queue-config")["data"]
    secret = resource("Secret", "kie-queue-secrets")["stringData"]
    assert {"KIE_API_KEY", "KIE_WEBHOOK_SECRET"} <= set(secret) and set(secret) <= SECRETS
    assert not SECRETS & set(config)
    assert "REDIS_URL" in config and "KIE_CALLBACK_URL" in config
    example = env_file(DEPLOY / "kie-queue.env.example")
    assert {"KIE_API_KEY", "KIE_WEBHOOK_SECRET", "REDIS_URL", "KIE_CALLBACK_URL"} <= set(example)
    for doc in manifests():
        if doc["kind"] == "Deployment":
            c = container(doc)
            assert not SECRETS & set(env_of(c)), f"{doc['metadata']['name']} sets a secret in plain env"
    for service in compose()["services"].values():
        assert not SECRETS & set(service.get("environment") or {})


# -- scaling and shutdown -------------------------------------------------------------------------------------

def test_keda_scales_the_worker_deployment_on_the_queue_the_workers_consume():
    scaled = resource("ScaledObject", "kie-queue-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == resource("Deployment", "kie-queue-worker")["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    config = resource("ConfigMap", "kie-queue-config")["data"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == config["KIE_QUEUE"]
    host, port = trigger["metadata"]["address"].split(":")
    redis_service = resource("Service", "kie-queue-redis")
    assert host == redis_service["metadata"]["name"] and int(port) == redis_service["spec"]["ports"][0]["port"]
    assert config["REDIS_URL"] == f"redis://{host}:{port}/{trigger['metadata']['databaseIndex']}"
    assert int(trigger["metadata"]["listLength"]) > 0
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_workers_stop_softly_within_the_grace_every_platform_gives():
    worker = resource("Deployment", "kie-queue-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > SOFT_SHUTDOWN_S
    assert env_of(container(worker))["REMAP_SIGTERM"] == "SIGQUIT"
    service = compose()["services"]["worker"]
    assert int(service["stop_grace_period"].rstrip("s")) > SOFT_SHUTDOWN_S
    assert service["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    unit = (DEPLOY / "systemd" / "kie-queue-worker@.service").read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1)) > SOFT_SHUTDOWN_S
    assert "Environment=REMAP_SIGTERM=SIGQUIT" in unit


def test_beat_runs_exactly_once():
    beat = resource("Deployment", "kie-queue-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert compose()["services"]["beat"]["deploy"]["replicas"] == 1
    assert "ScaledObject" not in {d["kind"] for d in manifests() if "beat" in d["metadata"]["name"]}


def test_the_image_runs_as_the_same_non_root_user_the_manifests_require():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*healthcheck\.sh", dockerfile, re.M)
    for doc in manifests():
        if doc["kind"] == "Deployment":
            ctx = doc["spec"]["template"]["spec"]["securityContext"]
            assert ctx == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001}, doc["metadata"]["name"]


def test_the_job_store_redis_keeps_an_append_only_file():
    redis_args = container(resource("StatefulSet", "kie-queue-redis"))["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    compose_redis = compose()["services"]["redis"]["command"]
    assert compose_redis[compose_redis.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in compose()["services"]["redis"]["volumes"])
