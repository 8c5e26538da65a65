#!/usr/bin/env python3
"""Helpers of scripts/check-ship.sh (run with the venv it makes).

  policy ROOT           what linters cannot know: the deploy wiring between
                        the Dockerfile, compose.origin.yml and the workflows
  slot-env ...          the environment docker compose gives a chimney slot,
                        with service hosts swapped for loopback addresses
  fake-upstream ...     a stand-in for api.github.com that logs requests
  probe ...             checks that a chimney started with that environment
                        serves

Exit status 1 with one `FAIL:` line per problem; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

SLOTS = {"chimney-blue": "blue", "chimney-green": "green"}
DRAGONFLY_IMAGE = "docker.dragonflydb.io/dragonflydb/dragonfly:"
# Every setting of CONTRACT 1 an operator sets in production, per slot.
# Which settings exist, and which are secrets, is read from the README's
# Configuration table (see readme_settings), which chimney's own tests hold
# to the settings it declares; only deploy policy is listed here.
SLOT_ENV_KEYS = [
    "CHIMNEY_ADDR",
    "CHIMNEY_REDIS",
    "CHIMNEY_REPO",
    "GITHUB_ORG",
    "GITHUB_REPOS_EXCLUDE",
    "CHIMNEY_CORS_ORIGINS",
    "GITHUB_TOKEN",
    "DEPLOY_TOKEN",
    "INVALIDATE_TOKEN",
    "INVALIDATE_ALL_ALLOWED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
]
# Besides the secrets, settings whose value must come from the operator's
# environment, empty when unset, and never be written in the file: the
# switch that widens what a leaked invalidation token can do.
OPERATOR_SWITCHES = ["INVALIDATE_ALL_ALLOWED"]
DRAGONFLY_MIB_PER_THREAD = 256


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.items.append(what)
        return ok

    def report(self, title: str) -> int:
        for item in self.items:
            print(f"FAIL: {item}")
        if self.items:
            print(f"{title}: {len(self.items)} problem(s)")
            return 1
        print(f"{title}: ok")
        return 0


# --- Compose interpolation ---------------------------------------------------

NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default},
    ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt},
    nested in defaults, and $$ for a literal $."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 0, i + 1
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise ValueError(f"unterminated ${{ in {text!r}")
            out.append(_expand(text[i + 2 : j], env, text))
            i = j + 1
        else:
            match = re.match(NAME, text[i + 1 :])
            if not match:
                raise ValueError(f"invalid interpolation in {text!r}")
            out.append(env.get(match.group(0), ""))
            i += 1 + match.end()
    return "".join(out)


def _expand(body: str, env: dict[str, str], whole: str) -> str:
    match = re.fullmatch(rf"({NAME})(?:(:-|-|:\?|\?|:\+|\+)(.*))?", body, re.S)
    if not match:
        raise ValueError(f"invalid interpolation ${{{body}}} in {whole!r}")
    name, op, arg = match.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    if op == ":-":
        return value if value else interpolate(arg, env)
    if op == "-":
        return value if value is not None else interpolate(arg, env)
    if op in (":?", "?"):
        if (op == ":?" and not value) or value is None:
            raise ValueError(f"{name} must be set: {arg}")
        return value
    if op == ":+":
        return interpolate(arg, env) if value else ""
    return interpolate(arg, env) if value is not None else ""


def interpolate_tree(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def environment_of(service: dict, operator_env: dict[str, str]) -> dict[str, str]:
    """A service's `environment` (list or mapping) as compose passes it to
    the container: scalars as strings, a bare name taken from the
    operator's environment (and left out when unset there)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in raw]
    else:
        pairs = list(raw.items())
    env: dict[str, str] = {}
    for key, value in pairs:
        if value is None:
            if key in operator_env:
                env[key] = operator_env[key]
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        else:
            env[key] = interpolate(str(value), operator_env)
    return env


# --- chimney's settings, from the README ---------------------------------------


def readme_settings(root: Path) -> dict[str, bool]:
    """Every environment variable chimney reads, mapped to whether it holds
    a secret: the `env` column of the README's Configuration table, a row
    being secret when its `setting` cell ends with "(secret)"."""
    text = (root / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not match:
        raise ValueError(f"{root / 'README.md'}: no Configuration section")
    rows = [line.strip().strip("|").split("|") for line in match.group(1).splitlines() if line.startswith("|")]
    if not rows:
        raise ValueError(f"{root / 'README.md'}: no settings table under Configuration")
    header = [cell.strip() for cell in rows[0]]
    if "setting" not in header or "env" not in header:
        raise ValueError(f"{root / 'README.md'}: the settings table has no setting or env column: {header}")
    setting, env = header.index("setting"), header.index("env")
    settings = {}
    for row in rows[2:]:
        name = row[env].strip().strip("`")
        if name:
            settings[name] = row[setting].strip().endswith("(secret)")
    return settings


def operator_only(root: Path) -> list[str]:
    """Variables a slot must take from the operator's environment as ${X:-}."""
    secrets = [name for name, secret in readme_settings(root).items() if secret]
    return secrets + OPERATOR_SWITCHES


# --- policy -------------------------------------------------------------------


def size_bytes(text) -> int | None:
    """`1gb`, `1536m`, `512MiB`, `1073741824` as bytes (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", str(text), re.I)
    if not match:
        return None
    number, unit, _ = match.groups()
    scale = 1024 ** "bkmgt".index(unit.lower() or "b")
    return int(float(number) * scale)


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(args):
            return args[i + 1]
    return None


def check_compose(root: Path, problems: Problems) -> None:
    path = root / "compose.origin.yml"
    raw = load_yaml(path)
    # As docker compose would see it with no operator variables set.
    data = interpolate_tree(raw, {})
    services = data.get("services") or {}
    for name in ["dragonfly", *SLOTS]:
        problems.check(name in services, f"compose: no service {name}")

    dragonfly = services.get("dragonfly") or {}
    if dragonfly:
        problems.check(
            str(dragonfly.get("image", "")).startswith(DRAGONFLY_IMAGE),
            f"compose: dragonfly's image is not the official {DRAGONFLY_IMAGE}<tag>",
        )
        mounts = [str(volume).split(":") for volume in dragonfly.get("volumes") or []]
        data_volume = next((m[0] for m in mounts if len(m) > 1 and m[1] == "/data"), None)
        problems.check(data_volume is not None, "compose: dragonfly has no volume on /data")
        if data_volume is not None and not data_volume.startswith(("/", ".")):
            problems.check(
                data_volume in (data.get("volumes") or {}),
                f"compose: volume {data_volume} is not declared under volumes:",
            )
        command = [str(arg) for arg in dragonfly.get("command") or []]
        limit = dragonfly.get("mem_limit") or (
            ((dragonfly.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        ).get("memory")
        maxmemory = flag_value(command, "maxmemory")
        threads = flag_value(command, "proactor_threads")
        if problems.check(limit is not None, "compose: dragonfly has no memory limit (mem_limit)") and problems.check(
            maxmemory is not None, "compose: dragonfly has no --maxmemory"
        ):
            limit_b, max_b = size_bytes(limit), size_bytes(maxmemory)
            if problems.check(
                limit_b is not None and max_b is not None,
                f"compose: cannot read dragonfly sizes mem_limit={limit!r} --maxmemory={maxmemory!r}",
            ):
                problems.check(
                    max_b < limit_b,
                    f"compose: dragonfly --maxmemory={maxmemory} must stay below mem_limit={limit}",
                )
                if problems.check(
                    threads is not None and threads.isdigit(),
                    "compose: dragonfly needs --proactor_threads (else it takes one per CPU and "
                    f"demands {DRAGONFLY_MIB_PER_THREAD} MiB of maxmemory for each)",
                ):
                    need = int(threads) * DRAGONFLY_MIB_PER_THREAD * 1024 * 1024
                    problems.check(
                        max_b >= need,
                        f"compose: dragonfly exits at start with {threads} threads and --maxmemory="
                        f"{maxmemory} (needs {DRAGONFLY_MIB_PER_THREAD} MiB per thread)",
                    )
        problems.check("healthcheck" in dragonfly, "compose: dragonfly has no healthcheck")
        problems.check(
            dragonfly.get("restart") in ("always", "unless-stopped"),
            "compose: dragonfly has no restart policy",
        )

    deploy_ports = deploy_workflow_ports(root)
    known = readme_settings(root)
    operator_keys = operator_only(root)
    slot_envs = {}
    for name, colour in SLOTS.items():
        service = services.get(name)
        if not service:
            continue
        env = environment_of(service, {})
        raw_env = (raw.get("services", {}).get(name) or {}).get("environment") or {}
        slot_envs[name] = env
        for key in SLOT_ENV_KEYS:
            problems.check(key in env, f"compose: {name} does not set {key}")
        # chimney ignores variables it does not know, so a misspelt one
        # would silently leave its setting at the default.
        for key in sorted(env):
            problems.check(
                key in known,
                f"compose: {name} sets {key}, which is not a chimney setting (README's Configuration table)",
            )
        for key in operator_keys:
            text = str(raw_env.get(key, "")) if isinstance(raw_env, dict) else ""
            problems.check(
                re.fullmatch(rf"\$\{{{key}(:?-)?\}}", text) is not None,
                f"compose: {name} must take {key} from the operator's environment as "
                f"${{{key}:-}} (empty default, never a value in the file), not {text!r}",
            )
        problems.check(
            service.get("restart") in ("always", "unless-stopped", "on-failure"),
            f"compose: {name} has no restart policy",
        )
        test = service.get("healthcheck", {}).get("test")
        problems.check("/healthz" in json.dumps(test), f"compose: {name}'s healthcheck does not probe /healthz")
        depends = service.get("depends_on") or {}
        if isinstance(depends, dict):
            for dep, spec in depends.items():
                condition = (spec or {}).get("condition", "service_started")
                problems.check(
                    condition == "service_started",
                    f"compose: {name} waits for {dep} to be {condition}; chimney must start without "
                    "Dragonfly (condition: service_started at most)",
                )
        problems.check(
            "${CHIMNEY_IMAGE" in str((raw.get("x-chimney") or {}).get("image", ""))
            or "${CHIMNEY_IMAGE" in str((raw["services"].get(name) or {}).get("image", "")),
            f"compose: {name}'s image is not taken from CHIMNEY_IMAGE (the deploy picks the tag)",
        )
        redis = urllib.parse.urlsplit(env.get("CHIMNEY_REDIS", ""))
        problems.check(
            redis.scheme in ("redis", "rediss") and redis.hostname in services and redis.hostname != name,
            f"compose: {name}'s CHIMNEY_REDIS={env.get('CHIMNEY_REDIS')!r} does not point at a service of this file",
        )
        attributes = dict(
            item.split("=", 1) for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if "=" in item
        )
        problems.check(
            attributes.get("deployment.slot") == colour,
            f"compose: {name}'s OTEL_RESOURCE_ATTRIBUTES lacks deployment.slot={colour}",
        )
        ports = [str(port) for port in service.get("ports") or []]
        container_port = env.get("CHIMNEY_ADDR", "").rsplit(":", 1)[-1]
        if problems.check(len(ports) == 1, f"compose: {name} should publish exactly one port"):
            parts = ports[0].split(":")
            problems.check(
                len(parts) == 3 and parts[0] == "127.0.0.1",
                f"compose: {name} publishes {ports[0]!r}; only on 127.0.0.1, for Caddy",
            )
            problems.check(
                parts[-1] == container_port,
                f"compose: {name} publishes container port {parts[-1]} but CHIMNEY_ADDR listens on {container_port}",
            )
            if colour in deploy_ports and len(parts) == 3:
                problems.check(
                    parts[1] == deploy_ports[colour],
                    f"compose: {name} is on host port {parts[1]}, the deploy workflow smoke-tests "
                    f"{deploy_ports[colour]}",
                )
    if len(slot_envs) == 2:
        blue, green = slot_envs["chimney-blue"], slot_envs["chimney-green"]
        differ = sorted(k for k in set(blue) | set(green) if blue.get(k) != green.get(k))
        problems.check(
            differ == ["OTEL_RESOURCE_ATTRIBUTES"],
            f"compose: the slots' environments should differ only in OTEL_RESOURCE_ATTRIBUTES, not {differ}",
        )


def deploy_workflow_ports(root: Path) -> dict[str, str]:
    path = root / ".github/workflows/chimney-deploy.yml"
    if not path.exists():
        return {}
    return dict(re.findall(r"\b(blue|green)\)\s*port=(\d+)", path.read_text(encoding="utf-8")))


# --- Dockerfile ---------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments
    and parser directives dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerignore_allows(root: Path, source: str) -> bool:
    ignore = root / ".dockerignore"
    if not ignore.exists():
        return True
    patterns = [
        line.strip()
        for line in ignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    path = os.path.normpath(source).lstrip("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        prefixes = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return not excluded


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def check_dockerfile(root: Path, problems: Problems) -> None:
    path = root / "Dockerfile"
    if not problems.check(path.exists(), "Dockerfile: missing"):
        return
    instructions = dockerfile_instructions(path)
    global_args = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([(keyword, rest)])
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                name, value = rest.split("=", 1)
                global_args[name] = value.strip('"')
        else:
            stages[-1].append((keyword, rest))
    if not problems.check(len(stages) >= 2, "Dockerfile: not multi-stage (a build stage and a runtime stage)"):
        return

    def resolve(text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), text)

    builder, final = stages[0], stages[-1]
    builder_from = resolve(builder[0][1])
    image = next((word for word in builder_from.split() if not word.startswith("--")), "")
    if problems.check(image.startswith("rust:"), f"Dockerfile: the build stage is {image}, not rust:<version>"):
        cargo = (root / "Cargo.toml").read_text(encoding="utf-8")
        needed = re.search(r'^rust-version\s*=\s*"([^"]+)"', cargo, re.M)
        if needed:
            problems.check(
                version_tuple(image.split(":", 1)[1]) >= version_tuple(needed.group(1)),
                f"Dockerfile: {image} is older than Cargo.toml's rust-version {needed.group(1)}",
            )
    problems.check(
        "--platform=$BUILDPLATFORM" in builder[0][1],
        "Dockerfile: the build stage should run on $BUILDPLATFORM and cross-compile (amd64 + arm64)",
    )
    builder_runs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    for arch in ("amd64", "arm64"):
        problems.check(arch in builder_runs, f"Dockerfile: the build stage does not handle TARGETARCH={arch}")
    builds = [rest for keyword, rest in builder if keyword == "RUN" and "cargo build" in rest]
    problems.check(
        bool(builds) and all("--locked" in rest and "--release" in rest for rest in builds),
        "Dockerfile: every cargo build must be --release --locked",
    )
    builder_args = [rest.split("=", 1)[0] for keyword, rest in builder if keyword == "ARG"]
    for name in ("CHIMNEY_VERSION", "WGMESH_VERSION"):
        problems.check(name in builder_args, f"Dockerfile: the build stage does not take ARG {name}")

    final_image = resolve(final[0][1]).split()[0]
    problems.check(
        final_image.startswith(("debian:", "gcr.io/distroless/")),
        f"Dockerfile: the runtime image {final_image} is not debian-slim or distroless",
    )
    users = [rest.split(":")[0] for keyword, rest in final if keyword == "USER"]
    problems.check(
        bool(users) and users[-1] not in ("root", "0"),
        "Dockerfile: the runtime stage must end with a non-root USER",
    )
    health = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    problems.check(
        bool(health) and "/healthz" in health[-1],
        "Dockerfile: the runtime stage has no HEALTHCHECK on /healthz",
    )
    problems.check(
        any(keyword == "EXPOSE" and "8080" in rest for keyword, rest in final),
        "Dockerfile: the runtime stage does not EXPOSE 8080",
    )
    problems.check(
        any(keyword in ("ENTRYPOINT", "CMD") and "chimney" in rest for keyword, rest in final),
        "Dockerfile: the runtime stage does not run chimney",
    )
    final_runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    if final_image.startswith("debian:"):
        problems.check("ca-certificates" in final_runs, "Dockerfile: the runtime stage lacks ca-certificates")
    copies = []
    for keyword, rest in (item for stage in stages for item in stage):
        if keyword in ("COPY", "ADD") and "--from=" not in rest:
            words = [word for word in rest.split() if not word.startswith("--")]
            copies.extend(words[:-1])
    final_copies = [
        [word for word in rest.split() if not word.startswith("--")]
        for keyword, rest in final
        if keyword == "COPY" and "--from=" not in rest
    ]
    problems.check(
        any("docs" in [os.path.normpath(src) for src in words[:-1]] for words in final_copies),
        "Dockerfile: the runtime stage does not copy the docs/ dashboard",
    )
    for source in copies:
        problems.check((root / source).exists(), f"Dockerfile: COPY source {source} does not exist")
        problems.check(
            dockerignore_allows(root, source),
            f"Dockerfile: COPY source {source} is excluded by .dockerignore",
        )


# --- workflows ----------------------------------------------------------------


def workflow(root: Path, name: str, problems: Problems):
    path = root / ".github/workflows" / name
    if not problems.check(path.exists(), f"workflows: {name} is missing"):
        return None
    data = load_yaml(path) or {}
    # YAML 1.1 reads the key `on` as true.
    data["on"] = data.get("on", data.get(True)) or {}
    return data


def steps_text(data) -> str:
    return json.dumps(data.get("jobs") or {})


def check_workflows(root: Path, problems: Problems) -> None:
    ci = workflow(root, "ci.yml", problems)
    if ci:
        text = steps_text(ci)
        problems.check("cargo fmt --check" in text, "ci.yml: no cargo fmt --check")
        problems.check(
            re.search(r"cargo clippy[^\"]*-D warnings", text) is not None,
            "ci.yml: no cargo clippy ... -D warnings",
        )
        readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").exists() else ""
        problems.check(
            "./scripts/test.sh" in readme and "./scripts/test.sh" in text,
            "ci.yml: does not run the README's test command ./scripts/test.sh",
        )
        problems.check("openapi_spec" in text, "ci.yml: no OpenAPI drift check (cargo test --test api openapi_spec)")
        services = [
            service
            for job in (ci.get("jobs") or {}).values()
            for service in ((job or {}).get("services") or {}).values()
        ]
        problems.check(
            any(str(s.get("image", "")).startswith(("redis", "docker.dragonflydb.io")) for s in services),
            "ci.yml: no Redis service for the shared-tier tests",
        )

    build = workflow(root, "chimney-build.yml", problems)
    build_name = None
    if build:
        build_name = build.get("name")
        text = steps_text(build)
        push = build["on"].get("push") if isinstance(build["on"], dict) else None
        problems.check(
            isinstance(push, dict) and "main" in (push.get("branches") or []),
            "chimney-build.yml: does not build pushes to main",
        )
        problems.check("docker/build-push-action" in text, "chimney-build.yml: no docker/build-push-action")
        problems.check(
            "linux/amd64" in text and "linux/arm64" in text,
            "chimney-build.yml: does not build linux/amd64 and linux/arm64",
        )
        problems.check("ghcr.io" in text, "chimney-build.yml: does not push to GHCR")
        problems.check(
            "type=sha,format=long" in text or "github.sha" in text,
            "chimney-build.yml: images are not tagged with the commit",
        )
        problems.check(
            "CHIMNEY_VERSION=" in text and "WGMESH_VERSION=" in text,
            "chimney-build.yml: does not pass CHIMNEY_VERSION and WGMESH_VERSION",
        )
        problems.check(
            ((build.get("permissions") or {}).get("packages")) == "write",
            "chimney-build.yml: needs permissions packages: write to push",
        )

    deploy = workflow(root, "chimney-deploy.yml", problems)
    if deploy:
        on = deploy["on"] if isinstance(deploy["on"], dict) else {}
        run = on.get("workflow_run")
        called = "workflow_call" in on
        if run is not None or not called:
            run = run or {}
            problems.check(
                build_name is not None and build_name in (run.get("workflows") or []),
                f"chimney-deploy.yml: not triggered by workflow_run of {build_name!r}",
            )
            problems.check(
                "completed" in (run.get("types") or []),
                "chimney-deploy.yml: workflow_run must be on types: [completed]",
            )
            problems.check("push" not in on, "chimney-deploy.yml: also deploys on push, before the image exists")
            text = json.dumps(deploy.get("jobs") or {})
            problems.check(
                "workflow_run.conclusion == 'success'" in text,
                "chimney-deploy.yml: deploys without checking that the build succeeded",
            )
            problems.check(
                "github.event.workflow_run.head_sha" in text,
                "chimney-deploy.yml: does not deploy the image of the built commit (workflow_run.head_sha)",
            )
        problems.check(
            "CHIMNEY_IMAGE" in json.dumps(deploy.get("jobs") or {}),
            "chimney-deploy.yml: does not hand compose the image (CHIMNEY_IMAGE)",
        )


def cmd_policy(args) -> int:
    root = Path(args.root)
    problems = Problems()
    check_compose(root, problems)
    check_dockerfile(root, problems)
    check_workflows(root, problems)
    return problems.report("deploy wiring")


# --- slot-env -----------------------------------------------------------------


def cmd_slot_env(args) -> int:
    data = load_yaml(Path(args.compose))
    service = (data.get("services") or {}).get(args.service)
    if service is None:
        print(f"FAIL: compose: no service {args.service}", file=sys.stderr)
        return 1
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    env = environment_of(service, operator_env)
    hosts = dict(item.split("=", 1) for item in args.map)
    for key, value in list(env.items()):
        if key == "CHIMNEY_ADDR":
            continue
        parts = urllib.parse.urlsplit(value)
        if parts.scheme and parts.netloc:
            netloc = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
            if netloc in hosts:
                env[key] = urllib.parse.urlunsplit(parts._replace(netloc=hosts[netloc]))
            elif parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                print(
                    f"FAIL: {args.service}: {key} points at {netloc}, which this check has no "
                    "loopback stand-in for (map it, or set the variable for the test)",
                    file=sys.stderr,
                )
                return 1
    addr = env.get("CHIMNEY_ADDR")
    if addr is None:
        print(f"FAIL: {args.service}: CHIMNEY_ADDR is not set", file=sys.stderr)
        return 1
    env["CHIMNEY_ADDR"] = args.listen
    # What the container adds: the image's PATH, HOSTNAME, HOME.
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("HOSTNAME", args.service)
    env.setdefault("HOME", "/nonexistent")
    with open(args.out, "w", encoding="utf-8") as out:
        for key, value in sorted(env.items()):
            out.write(f"{key}={value}\0")
    hidden = operator_only(Path(args.compose).parent)
    shown = {k: ("<set>" if k in hidden and v else v) for k, v in sorted(env.items())}
    print(f"{args.service} environment (compose address {addr}):")
    for key, value in shown.items():
        print(f"  {key}={value}")
    return 0


# --- fake upstream ------------------------------------------------------------


def cmd_fake_upstream(args) -> int:
    log = open(args.log, "a", encoding="utf-8", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            log.write(json.dumps({"method": "GET", "path": self.path, "headers": dict(self.headers)}) + "\n")
            if re.fullmatch(r"/repos/[^/]+/[^/]+/pulls(\?.*)?", self.path):
                body = json.dumps([{"number": 7, "title": "ship check", "state": "open"}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("ETag", '"ship-check-1"')
                self.send_header("X-RateLimit-Remaining", "4999")
                self.send_header("X-RateLimit-Reset", str(int(time.time()) + 3600))
            else:
                body = json.dumps({"message": "Not Found"}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(args.port_file).write_text(str(server.server_address[1]), encoding="utf-8")
    server.serve_forever()
    return 0


# --- probe --------------------------------------------------------------------


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, lower_keys(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower_keys(error.headers), error.read()


def lower_keys(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def running(pid: int) -> bool:
    """Whether the process lives (a zombie, not yet waited for, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmd_probe(args) -> int:
    base = args.base.rstrip("/")
    problems = Problems()
    # What the slot was given, read back from the file slot-env wrote.
    text = Path(args.env_file).read_text(encoding="utf-8")
    slot_env = dict(item.split("=", 1) for item in text.split("\0") if item)
    repo = slot_env.get("CHIMNEY_REPO", "atvirokodosprendimai/wgmesh")
    deadline = time.monotonic() + args.wait
    health = None
    while time.monotonic() < deadline:
        if not running(args.pid):
            problems.check(False, "chimney exited before answering /healthz")
            return problems.report("slot smoke test")
        try:
            status, _, body = request(f"{base}/healthz")
            health = json.loads(body) if status == 200 else None
            if health and health.get("dragonfly") == "connected":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    if not problems.check(health is not None, f"/healthz did not answer 200 within {args.wait}s"):
        return problems.report("slot smoke test")
    print(f"GET /healthz -> 200 {json.dumps(health)}")
    problems.check(health.get("status") == "ok", "/healthz status is not ok")
    problems.check(
        health.get("dragonfly") == "connected",
        f"/healthz reports dragonfly {health.get('dragonfly')!r}, not connected, after {args.wait}s",
    )

    status, headers, body = request(f"{base}/api/version")
    print(f"GET /api/version -> {status} {body.decode(errors='replace')}")
    version = json.loads(body) if status == 200 else {}
    problems.check(
        bool(version.get("chimney_version")) and bool(version.get("wgmesh_version")),
        "/api/version lacks chimney_version or wgmesh_version",
    )
    problems.check(bool(headers.get("x-trace-id")), "responses carry no X-Trace-ID")

    status, _, body = request(f"{base}/")
    print(f"GET / -> {status} ({len(body)} bytes)")
    problems.check(status == 200 and b"<html" in body.lower(), "/ does not serve the dashboard from docs/")

    status, headers, body = request(f"{base}/api/github/pulls")
    print(f"GET /api/github/pulls -> {status} X-Cache={headers.get('x-cache')} {body.decode(errors='replace')}")
    problems.check(status == 200 and b"ship check" in body, "/api/github/pulls did not proxy the fake upstream")
    problems.check(headers.get("x-cache") == "MISS", "the first proxied request was not a MISS")
    seen = [json.loads(line) for line in Path(args.upstream_log).read_text(encoding="utf-8").splitlines()]
    pulls = [entry for entry in seen if entry["path"].endswith("/pulls")]
    if problems.check(bool(pulls), "the fake upstream saw no request for /pulls"):
        entry = pulls[0]
        print(f"upstream saw GET {entry['path']}")
        problems.check(
            entry["path"] == f"/repos/{repo}/pulls",
            f"upstream was asked for {entry['path']}, not /repos/{repo}/pulls",
        )
        authorization = {k.lower(): v for k, v in entry["headers"].items()}.get("authorization")
        problems.check(
            authorization == f"Bearer {slot_env.get('GITHUB_TOKEN', '').strip()}",
            "upstream did not get GITHUB_TOKEN from the compose environment as Bearer",
        )
    status, headers, _ = request(f"{base}/api/github/pulls")
    print(f"GET /api/github/pulls again -> {status} X-Cache={headers.get('x-cache')}")
    problems.check(headers.get("x-cache") == "HIT", "the second proxied request was not a HIT")

    event = json.dumps({"sha": "0123456789abcdef", "slot": "blue", "outcome": "success"}).encode()
    status, _, body = request(
        f"{base}/api/deploy/events",
        "POST",
        event,
        {"Authorization": f"Bearer {slot_env.get('DEPLOY_TOKEN', '')}", "Content-Type": "application/json"},
    )
    print(f"POST /api/deploy/events (DEPLOY_TOKEN from the compose environment) -> {status}")
    problems.check(status == 200, f"POST /api/deploy/events answered {status}, not 200")
    status, _, body = request(f"{base}/api/deploy/status")
    last = (json.loads(body) if status == 200 else {}).get("last_deploy") or {}
    print(f"GET /api/deploy/status -> {status} last_deploy.sha={last.get('sha')}")
    problems.check(last.get("sha") == "0123456789abcdef", "/api/deploy/status does not show the event")
    return problems.report("slot smoke test")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    policy = sub.add_parser("policy")
    policy.add_argument("root")
    policy.set_defaults(run=cmd_policy)

    slot = sub.add_parser("slot-env")
    slot.add_argument("--compose", required=True)
    slot.add_argument("--service", required=True)
    slot.add_argument("--operator-env", action="append", default=[], metavar="NAME=VALUE")
    slot.add_argument("--map", action="append", default=[], metavar="HOST:PORT=HOST:PORT")
    slot.add_argument("--listen", required=True)
    slot.add_argument("--out", required=True)
    slot.set_defaults(run=cmd_slot_env)

    fake = sub.add_parser("fake-upstream")
    fake.add_argument("--port-file", required=True)
    fake.add_argument("--log", required=True)
    fake.set_defaults(run=cmd_fake_upstream)

    probe = sub.add_parser("probe")
    probe.add_argument("--base", required=True)
    probe.add_argument("--upstream-log", required=True)
    probe.add_argument("--env-file", required=True)
    probe.add_argument("--pid", type=int, required=True, help="chimney's PID: stop waiting if it exits")
    probe.add_argument("--wait", type=float, default=30)
    probe.set_defaults(run=cmd_probe)

    args = parser.parse_args()
    try:
        return args.run(args)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
