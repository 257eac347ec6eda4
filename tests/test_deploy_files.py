"""The deployment files are valid and say only what the services really do.

- monitoring: the dashboard and the scrape configs name series and ports that exist;
- compose: deploy/docker-compose.yml against the Compose Specification's JSON schema
  (vendored in deploy/schemas/compose-spec/), the same commands as ops/stack.py;
- Helm: `helm lint` and `helm template` of deploy/helm/lakeside-assistant with Helm's own
  engine (helm-python-sdk: the Helm v4 Go SDK as a library), default values and vLLM,
  then every rendered manifest against the Kubernetes JSON schemas (kubernetes-validate);
- consistency: every environment variable compose and the chart give the services is
  one the code reads; health checks and probes ask paths the services serve.
"""
from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

import pytest
import yaml

from ops import settings, stack

SOURCES = ["actions/metrics.py", "ops/exporter.py", "generator/metrics.py"]
DEPLOY = settings.ROOT / "deploy"
CHART = DEPLOY / "helm" / "lakeside-assistant"
# Newest Kubernetes whose schemas kubernetes-validate (as pinned) ships.
KUBERNETES_VERSION = "1.28.0"
VLLM = {"generator": {"vllm": {"enabled": True}}}
# The values an install must give (the chart refuses to render without them).
IDENTITY = {"secrets": {"restChannelToken": "rest-token", "socketioJwtKey": "jwt-key"}}
# Our services in compose and in the chart (the others are stock images).
OWN_SERVICES = ("rasa", "actions", "generator", "exporter")
MUST_BE_SET = {
    "rasa": {"TRACKER_STORE_URL", "LOCK_STORE_URL", "EVENT_BROKER_URL", "ACTION_ENDPOINT_URL", "RASA_API_TOKEN",
             "REST_CHANNEL_TOKEN", "SOCKETIO_JWT_KEY"},
    "actions": {"GENERATOR_URL", "GENERATOR_MODEL", "GENERATOR_API_KEY", "EMBEDDINGS_URL", "EMBEDDINGS_MODEL",
                "BANK_DB_URL"},
    "exporter": {"TRACKER_STORE_URL"},
}
PORTS = {"rasa": 5005, "actions": 5055, "generator": 8000, "exporter": 9105}


def _exported() -> set:
    names = set()
    for source in SOURCES:
        text = (settings.ROOT / source).read_text()
        names |= {_base(n) for n in re.findall(r"\"((?:rasa|action_server|generator)_[a-z_]+)\"", text)}
    return names


def _base(series: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", series)


def test_dashboard_queries_use_exported_series():
    dashboard = json.loads((settings.ROOT / "deploy" / "grafana" / "lakeside-assistant.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:rasa|action_server|generator)_[a-z_]+)", e)}
    assert used and {_base(s) for s in used} <= _exported()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_each_metrics_port():
    config = yaml.safe_load((settings.ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"rasa": ["127.0.0.1:9105"], "actions": ["127.0.0.1:5055"], "generator": ["127.0.0.1:8000"],
                       "console": ["127.0.0.1:8090"]}


def test_compose_prometheus_scrapes_the_same_jobs_by_service_name():
    config = yaml.safe_load((DEPLOY / "prometheus-compose.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"rasa": ["exporter:9105"], "actions": ["actions:5055"], "generator": ["generator:8000"]}
    assert set(_compose()["services"]) >= {"exporter", "actions", "generator"}


# --- what the code reads and serves -------------------------------------------------

ENV_READ = re.compile(
    r"""(?:environ(?:\.get)?|\benv\.get|getenv|_env_int|_env_float|_int|_float|_str|_text|_number|_integer|_port|_networks|burst)"""
    r"""\s*[(\[]\s*(?:env,\s*)?["']([A-Z][A-Z0-9_]+)["']"""
)


def _env_read_by_code() -> Set[str]:
    """Environment variables the project's code, Rasa itself or deploy/endpoints.yml read."""
    import rasa.constants
    import rasa.core.constants

    names: Set[str] = set()
    for folder in ("assistant", "actions", "addons", "generator", "ops"):
        for path in (settings.ROOT / folder).rglob("*.py"):
            if "tests" not in path.parts:
                names |= set(ENV_READ.findall(path.read_text()))
    # Rasa's own settings (README: SANIC_WORKERS and the SQL pool knobs) ...
    names |= {
        rasa.constants.ENV_SANIC_WORKERS,
        rasa.core.constants.POSTGRESQL_POOL_SIZE,
        rasa.core.constants.POSTGRESQL_MAX_OVERFLOW,
        rasa.core.constants.POSTGRESQL_SCHEMA,
    }
    # ... and the ${VARIABLES} Rasa expands when it reads the containers' endpoints file.
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)\}", (DEPLOY / "endpoints.yml").read_text()))
    return names


def _served_paths() -> Dict[str, Set[str]]:
    """The GET paths each service answers, read from the code that serves them."""
    import rasa.server
    import rasa_sdk.endpoint

    import actions.server

    def routes(source: str) -> Set[str]:
        return set(re.findall(r"""@app\.get\(\s*["'](/[^"']*)["']""", source))

    exporter = re.search(r"self\.path not in \(([^)]*)\)", (settings.ROOT / "ops" / "exporter.py").read_text())
    return {
        "rasa": routes(inspect.getsource(rasa.server)),
        "actions": routes(inspect.getsource(rasa_sdk.endpoint)) | routes(inspect.getsource(actions.server)),
        "generator": routes((settings.ROOT / "generator" / "app.py").read_text()),
        "exporter": set(re.findall(r'"(/[^"]*)"', exporter.group(1))),
    }


def test_the_served_paths_are_found():
    served = _served_paths()
    assert "/" in served["rasa"] and "/health" in served["actions"] and "/metrics" in served["actions"]
    assert {"/health", "/health/live", "/metrics"} <= served["generator"]
    assert {"/health", "/metrics"} <= served["exporter"]
    assert {"TRACKER_STORE_URL", "LOCK_STORE_URL", "EVENT_BROKER_URL", "GENERATOR_URL"} <= _env_read_by_code()


def test_container_endpoints_differ_only_in_the_action_server_address():
    ours = yaml.safe_load((settings.ROOT / "endpoints.yml").read_text())
    containers = yaml.safe_load((DEPLOY / "endpoints.yml").read_text())
    assert containers.pop("action_endpoint") == {"url": "${ACTION_ENDPOINT_URL}"}
    ours.pop("action_endpoint")
    assert containers == ours


# --- compose --------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _compose_env(service: dict) -> Dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def test_compose_file_follows_the_compose_specification():
    import jsonschema

    schema = json.loads((DEPLOY / "schemas" / "compose-spec" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    validator.check_schema(schema)
    compose = _compose()
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict: a misspelt key is an error.
    broken = {**compose, "services": {**compose["services"], "rasa": {**compose["services"]["rasa"], "helthcheck": {}}}}
    assert not validator.is_valid(broken)


def test_compose_has_the_whole_stack_with_secrets_from_the_env_file():
    compose = _compose()
    assert set(compose["services"]) >= {
        "rasa", "actions", "generator", "exporter", "postgres", "redis", "rabbitmq", "prometheus", "grafana", "nginx"
    }
    assert compose["services"]["rasa"]["deploy"]["replicas"] == 2
    text = (DEPLOY / "docker-compose.yml").read_text()
    example = (DEPLOY / ".env.example").read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD", "RASA_API_TOKEN",
                   "GRAFANA_ADMIN_PASSWORD", "REST_CHANNEL_TOKEN", "SOCKETIO_JWT_KEY"):
        assert f"${{{secret}:?" in text, f"{secret} must come from deploy/.env, required"
        assert re.search(rf"^{secret}=", example, re.M), f"{secret} missing from deploy/.env.example"


def test_compose_and_the_images_run_what_ops_stack_runs(tmp_path):
    compose = _compose()["services"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for name in OWN_SERVICES:
        assert compose[name]["build"]["target"] in targets
    actions = stack.actions_service(5055, tmp_path)
    assert compose["actions"]["command"] == ["python", *actions.argv[1:3]]
    assert compose["exporter"]["command"][:4] == ["python", "-m", "ops", "exporter"]
    assert 'CMD ["python", "-m", "generator"]' in dockerfile
    # Rasa: deploy/run-rasa.sh passes every option ops/stack.py and ops/run.py pass.
    assert dockerfile.rstrip().endswith('CMD ["sh", "deploy/run-rasa.sh"]')
    script = (DEPLOY / "run-rasa.sh").read_text().replace("\\\n", " ")
    rasa_cmd = re.search(r"^exec (rasa run .*)$", script, re.M).group(1)
    rasa = stack.rasa_service(5005, tmp_path, Path("m"), Path("e"), extra_args=["--enable-api", "--auth-token", "t"])
    assert {arg for arg in rasa.argv if arg.startswith("--")} <= set(rasa_cmd.split())
    assert "--endpoints deploy/endpoints.yml" in rasa_cmd
    # Each image's /app is what deploy/image_files.py lays (tests/test_image.py serves a turn
    # from the same layout): the Python packages the services import (the core with them)
    # and the artefacts of `make setup` they need.
    image_files = _image_files()
    for image in ("generator", "assistant"):
        assert f"python deploy/image_files.py lay {image} /src /image" in dockerfile
        assert re.search(rf"^FROM \S+ AS {image}\n(?:.*\n)*?COPY --from={image}-build /image/ /app/$", dockerfile, re.M)
    assistant = image_files.IMAGES["assistant"]
    for package in ("assistant/", "actions/", "addons/", "ops/", "console/", "knowledge/"):
        assert package in assistant.code, f"the assistant image lacks {package}"
    assert {"build/knowledge/index.npz", "models/embeddings/", "models/*.tar.gz"} <= set(assistant.artefacts)
    assert image_files.IMAGES["generator"].artefacts == ["models/generator/"]
    # What the image copies exists (data/nlu/banking77.yml is made by `make data`).
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (settings.ROOT / path).exists(), f"deploy/Dockerfile copies missing {path}"


def _image_files():
    """deploy/image_files.py (a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("image_files", DEPLOY / "image_files.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("image_files", module)
    spec.loader.exec_module(module)
    return module


# --- Helm -----------------------------------------------------------------------------


def _merge(base: dict, extra: Optional[dict]) -> dict:
    merged = dict(base)
    for key, value in (extra or {}).items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if nested else value
    return merged


def _render(values: Optional[dict] = None, identity: bool = True) -> List[dict]:
    """The chart rendered with these values (and, unless `identity` is False, IDENTITY)."""
    import helm_python as helm

    values = _merge(IDENTITY, values) if identity else values
    rendered = helm.Chart.load(CHART).render(values, name="bank", namespace="lakeside", is_install=True)
    return [doc for path, text in rendered.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


def _containers(manifests: Iterable[dict]) -> Dict[str, dict]:
    return {
        container["name"]: container
        for doc in manifests if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }


def _chart_env(container: dict) -> Dict[str, str]:
    return {item["name"]: item.get("value", "<secret>") for item in container.get("env", [])}


@pytest.mark.parametrize("values", [None, VLLM], ids=["defaults", "vllm"])
def test_helm_lint_passes(values):
    import helm_python as helm

    report = helm.lint(CHART, _merge(IDENTITY, values), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2: warning, 3: error
    assert problems == [] and report["errors"] == []


@pytest.mark.parametrize("values", [None, VLLM], ids=["defaults", "vllm"])
def test_rendered_chart_is_valid_kubernetes(values):
    import kubernetes_validate

    manifests = _render(values)
    kinds = sorted({doc["kind"] for doc in manifests})
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service"]
    for doc in manifests:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any error
    scaled = {doc["spec"]["scaleTargetRef"]["name"] for doc in manifests if doc["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"bank-lakeside-assistant-rasa", "bank-lakeside-assistant-actions"}


def test_vllm_serves_chat_and_the_cpu_generator_the_embeddings():
    default, vllm = _containers(_render()), _containers(_render(VLLM))
    assert "generator" in default and "vllm" not in default
    assert "generator" in vllm  # kept: vLLM does not serve the embeddings model
    server = vllm["vllm"]
    assert server["image"].startswith("vllm/vllm-openai:")
    assert server["args"][:2] == ["--model", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    generator_url = "http://bank-lakeside-assistant-generator:8000/v1"
    assert _chart_env(default["actions"])["GENERATOR_URL"] == generator_url
    assert _chart_env(vllm["actions"])["GENERATOR_URL"] == "http://bank-lakeside-assistant-vllm:8000/v1"
    assert _chart_env(vllm["actions"])["GENERATOR_MODEL"] == server["args"][3]
    for containers in (default, vllm):  # the embeddings stay on the CPU generator
        env = _chart_env(containers["actions"])
        assert env["EMBEDDINGS_URL"] == generator_url and env["EMBEDDINGS_MODEL"] == "all-MiniLM-L6-v2"
    services = {d["metadata"]["name"]: d for d in _render(VLLM) if d["kind"] == "Service"}
    selector = {name: doc["spec"]["selector"]["app.kubernetes.io/component"] for name, doc in services.items()}
    assert selector["bank-lakeside-assistant-generator"] == "generator"
    assert selector["bank-lakeside-assistant-vllm"] == "vllm"
    # compose: chat wherever GENERATOR_URL says (vLLM in deploy/.env), embeddings on the generator
    actions = _compose_env(_compose()["services"]["actions"])
    assert actions["EMBEDDINGS_URL"] == "${EMBEDDINGS_URL:-http://generator:8000/v1}"
    assert actions["GENERATOR_URL"] == "${GENERATOR_URL:-http://generator:8000/v1}"


def test_the_services_log_json_in_compose_and_the_chart():
    """Rasa, the action server and the generator write JSON lines in the deployments
    (LOG_FORMAT; `make run` keeps text)."""
    compose = _compose()["services"]
    for values in (None, VLLM):
        containers = _containers(_render(values))
        for name in ("rasa", "actions", "generator"):
            assert _compose_env(compose[name])["LOG_FORMAT"] == "${LOG_FORMAT:-json}"
            assert _chart_env(containers[name])["LOG_FORMAT"] == "json"
    assert "LOG_FORMAT" in _env_read_by_code()


def test_the_chart_needs_the_rest_token_and_the_jwt_key():
    """Without them a deployment would either leave REST open or have no signed identity."""
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="restChannelToken"):
        _render(identity=False)
    with pytest.raises(helm.HelmError, match="socketioJwtKey"):
        _render({"secrets": {"restChannelToken": "rest-token"}}, identity=False)
    secret = next(d for d in _render() if d["kind"] == "Secret")
    assert {"REST_CHANNEL_TOKEN", "SOCKETIO_JWT_KEY"} <= set(secret["data"])
    rasa = _chart_env(_containers(_render())["rasa"])
    assert rasa["REST_CHANNEL_TOKEN"] == rasa["SOCKETIO_JWT_KEY"] == "<secret>"
    # an existing Secret must hold them (README "Deployment"); the chart then makes none
    assert not [d for d in _render({"secrets": {"existingSecret": "bank"}}, identity=False) if d["kind"] == "Secret"]


def test_compose_needs_the_rest_token_and_the_jwt_key():
    rasa = _compose_env(_compose()["services"]["rasa"])
    for name in ("REST_CHANNEL_TOKEN", "SOCKETIO_JWT_KEY"):
        assert rasa[name].startswith(f"${{{name}:?"), f"compose must refuse to start without {name}"
    # no setting of the old trust rule (Rasa and the action server refuse to start with it)
    text = (DEPLOY / "docker-compose.yml").read_text() + (CHART / "values.yaml").read_text()
    assert "BANK_CUSTOMER_ID_CHANNELS" not in text and "BANK_DEMO_CUSTOMER_ID" not in text


def test_several_rasa_pods_need_a_lock_store():
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="lockStoreUrl"):
        _render({"secrets": {"lockStoreUrl": ""}})
    _render({"secrets": {"lockStoreUrl": ""}, "rasa": {"replicas": 1, "autoscaling": {"enabled": False}}})


# --- the bank database: migrations before the action server, the demo seed optional ----

MIGRATE = ["python", "-m", "assistant.bank", "migrate"]
SEED = ["python", "-m", "assistant.bank", "seed"]


def test_compose_migrates_the_bank_database_before_the_action_server():
    compose = _compose()["services"]
    job, seed, actions = compose["bank-migrate"], compose["bank-seed"], compose["actions"]
    assert job["command"] == MIGRATE and job["restart"] == "no" and job["build"]["target"] == "assistant"
    assert job["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert actions["depends_on"]["bank-migrate"] == {"condition": "service_completed_successfully"}
    # the demo seed only when asked for (a profile `up` does not start)
    assert seed["command"] == SEED and seed["profiles"] == ["demo"]
    assert seed["depends_on"]["bank-migrate"] == {"condition": "service_completed_successfully"}
    url = _compose_env(actions)["BANK_DB_URL"]
    assert url.startswith("postgresql://rasa:${POSTGRES_PASSWORD:?") and url.endswith("@postgres:5432/bank")
    assert _compose_env(job)["BANK_DB_URL"] == _compose_env(seed)["BANK_DB_URL"] == url
    # compose's PostgreSQL creates the `bank` database on a new volume
    mounts = compose["postgres"]["volumes"]
    init = next(m for m in mounts if "docker-entrypoint-initdb.d" in m).split(":")[0]
    assert "CREATE DATABASE bank" in (DEPLOY / init).read_text()
    assert set(_compose_env(job)) <= _env_read_by_code()


def test_the_chart_migrates_in_an_init_container_and_seeds_only_when_asked():
    for values in (None, VLLM):
        manifests = _render(values)
        actions = next(d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-actions"))
        pod = actions["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == MIGRATE and init["image"] == pod["containers"][0]["image"]
        env = {item["name"]: item for item in init["env"]}
        served = {item["name"]: item for item in pod["containers"][0]["env"]}
        assert env["BANK_DB_URL"]["valueFrom"] == served["BANK_DB_URL"]["valueFrom"]
        assert not [d for d in manifests if d["kind"] == "Job"]
    secret = next(d for d in _render() if d["kind"] == "Secret")
    assert "BANK_DB_URL" in secret["data"]
    import kubernetes_validate

    seeded = _render({"bank": {"demoSeed": True}})
    (job,) = [d for d in seeded if d["kind"] == "Job"]
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == SEED
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


# --- consistency between compose, the chart and the code ------------------------------


def test_services_get_only_variables_the_code_reads():
    read = _env_read_by_code()
    compose = _compose()["services"]
    for name in OWN_SERVICES:
        unknown = set(_compose_env(compose[name])) - read
        assert not unknown, f"compose sets {unknown} for {name}, which no code reads"
    for values in (None, VLLM):
        for name, container in _containers(_render(values)).items():
            if name == "vllm":  # vLLM's own image, configured by its flags and VLLM_API_KEY
                continue
            unknown = set(_chart_env(container)) - read
            assert not unknown, f"the chart sets {unknown} for {name}, which no code reads"
    chart = _containers(_render())
    for name, names in MUST_BE_SET.items():
        assert names <= set(_compose_env(compose[name])), f"compose: {name} lacks {names}"
        assert names <= set(_chart_env(chart[name])), f"chart: {name} lacks {names}"


def test_health_checks_and_probes_ask_served_paths():
    served = _served_paths()
    for name in OWN_SERVICES:
        test = " ".join(_compose()["services"][name]["healthcheck"]["test"])
        port, path = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", test).groups()
        assert int(port) == PORTS[name] and path in served[name], f"compose healthcheck of {name}: {test}"
    for values in (None, VLLM):
        for name, container in _containers(_render(values)).items():
            probes = [container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container]
            assert len(probes) >= 2, f"{name} needs readiness and liveness probes"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in probes:
                assert ports[probe["httpGet"]["port"]] == PORTS.get(name, 8000)
                if name == "vllm":  # vLLM's OpenAI server answers /health
                    assert probe["httpGet"]["path"] == "/health"
                else:
                    assert probe["httpGet"]["path"] in served[name], f"{name} probe {probe}"
