#!/usr/bin/env python3
"""Helpers of scripts/check-ship.sh (run with the venv it makes).

  policy ROOT           what linters cannot know: the deploy wiring between
                        the Dockerfile, compose.origin.yml and the workflows
  selftest ROOT         breaks a copy of ROOT in each way the policy must
                        catch, one regression at a time, and checks it does
  stop-grace ...        a service's stop_grace_period in whole seconds
  slot-env ...          the environment docker compose gives a chimney slot,
                        with service hosts swapped for loopback addresses
  probe ...             checks that a chimney started with that environment
                        serves, in front of the testkit's fake GitHub
                        (`fake-github`, started by check-ship.sh), whose
                        request log it reads from `GET /__requests`

Exit status 1 with one `FAIL:` line per problem; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
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
    "CHIMNEY_SHUTDOWN_GRACE",
    "GITHUB_TOKEN",
    "DEPLOY_TOKEN",
    "INVALIDATE_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "INVALIDATE_ALL_ALLOWED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
]
# Besides the secrets, settings whose value must come from the operator's
# environment, empty when unset, and never be written in the file: the
# switch that widens what a leaked invalidation token can do.
OPERATOR_SWITCHES = ["INVALIDATE_ALL_ALLOWED"]
# Not a chimney secret, but it carries a collector's credentials.
OPERATOR_CREDENTIALS = ["OTEL_EXPORTER_OTLP_HEADERS"]
DRAGONFLY_MIB_PER_THREAD = 256
# What chimney does after CHIMNEY_SHUTDOWN_GRACE on SIGTERM, at most: drain
# in-flight requests (5 s), then flush telemetry (5 s); CONTRACT 2 and the
# README's Deploy section. compose's stop_grace_period must cover all three
# or Docker SIGKILLs a slot mid-drain.
SHUTDOWN_DRAIN_S = 5
TELEMETRY_FLUSH_S = 5
# Caddy's defaults (reverse_proxy directive) when the snippet leaves them out.
CADDY_DEFAULT_HEALTH_TIMEOUT_S = 5.0
CADDY_DEFAULT_HEALTH_FAILS = 1
# Caddy keeps an idle upstream connection this long unless told otherwise
# (`transport http { keepalive }`); chimney closes one after 10 s idle
# (CONTRACT 2), and a request Caddy sends as chimney closes is lost.
CADDY_DEFAULT_KEEPALIVE_S = 120.0
CHIMNEY_IDLE_CLOSE_S = 10.0


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


def readme_otel_variables(root: Path) -> set[str]:
    """The OpenTelemetry variables chimney honours: every name in the first
    column of the table under the README's Observability "### Settings"."""
    text = (root / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Observability\n.*?^### Settings\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M)
    if not match:
        raise ValueError(f"{root / 'README.md'}: no Settings table under Observability")
    names = set()
    for line in match.group(1).splitlines():
        if line.startswith("|"):
            names.update(re.findall(r"`(OTEL_[A-Z_]+)`", line.strip("|").split("|")[0]))
    return names


def operator_only(root: Path) -> list[str]:
    """Variables a slot must take from the operator's environment as ${X:-}."""
    secrets = [name for name, secret in readme_settings(root).items() if secret]
    return secrets + OPERATOR_SWITCHES + OPERATOR_CREDENTIALS


# --- policy -------------------------------------------------------------------


def size_bytes(text) -> int | None:
    """`1gb`, `1536m`, `512MiB`, `1073741824` as bytes (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", str(text), re.I)
    if not match:
        return None
    number, unit, _ = match.groups()
    scale = 1024 ** "bkmgt".index(unit.lower() or "b")
    return int(float(number) * scale)


DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text) -> float | None:
    """A Go/compose/Caddy duration (`10s`, `1m30s`, `250ms`) as seconds;
    None when unreadable. A bare number is not a duration."""
    text = str(text).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(args):
            return args[i + 1]
    return None


def check_logging(name: str, service: dict, problems: Problems) -> None:
    """A log driver that rotates: json-file with max-size and max-file, or
    local (which rotates by default). Without `logging`, the daemon's
    default json-file driver never rotates and fills the disk."""
    logging = service.get("logging") or {}
    driver = logging.get("driver")
    options = logging.get("options") or {}
    if driver == "local":
        return
    if not problems.check(
        driver == "json-file",
        f"compose: {name} has no rotating log driver (logging: driver json-file with max-size and "
        f"max-file options, or local), got {driver!r}",
    ):
        return
    max_size = size_bytes(options.get("max-size", ""))
    problems.check(
        max_size is not None and max_size > 0,
        f"compose: {name}'s json-file logging has no max-size, so its log never rotates",
    )
    max_file = str(options.get("max-file", ""))
    problems.check(
        max_file.isdigit() and int(max_file) >= 1,
        f"compose: {name}'s json-file logging has no max-file, so rotated logs are never removed",
    )


def check_compose(root: Path, problems: Problems) -> dict:
    """Returns what the other checks compare with: each slot's shutdown
    grace in seconds (`graces`) and published host port (`host_ports`)."""
    found: dict = {"graces": {}, "host_ports": {}}
    path = root / "compose.origin.yml"
    raw = load_yaml(path)
    # As docker compose would see it with no operator variables set.
    data = interpolate_tree(raw, {})
    services = data.get("services") or {}
    for name in ["dragonfly", *SLOTS]:
        problems.check(name in services, f"compose: no service {name}")
    # Without a project name, compose names the containers after the
    # directory it runs in: the deploy job's checkout and an operator's
    # directory would each start slots of their own on the same ports.
    project = data.get("name")
    problems.check(
        isinstance(project, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project) is not None,
        f"compose: no valid top-level project name (name: chimney), got {project!r}",
    )
    for name, service in services.items():
        check_logging(name, service or {}, problems)

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
    known = set(readme_settings(root)) | readme_otel_variables(root)
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
                f"compose: {name} sets {key}, which is not a chimney setting "
                "(README's Configuration table or its Observability settings)",
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
        container_port = env.get("CHIMNEY_ADDR", "").rsplit(":", 1)[-1]
        test = json.dumps((service.get("healthcheck") or {}).get("test"))
        probe = re.search(r"https?://[^/\"]+:(\d+)/readyz\b", test)
        if problems.check(
            probe is not None,
            f"compose: {name}'s healthcheck does not probe http://127.0.0.1:<port>/readyz "
            "(readiness: 503 from SIGTERM on)",
        ):
            problems.check(
                probe.group(1) == container_port,
                f"compose: {name}'s healthcheck probes port {probe.group(1)}, CHIMNEY_ADDR listens on {container_port}",
            )
        # Draining: from SIGTERM /readyz answers 503 while requests are
        # still served for the grace, then the drain and the flush follow;
        # Docker must not SIGKILL before all three are over.
        grace_text = env.get("CHIMNEY_SHUTDOWN_GRACE")
        grace = duration_seconds(grace_text) if grace_text is not None else None
        if problems.check(
            grace is not None and grace > 0,
            f"compose: {name} needs CHIMNEY_SHUTDOWN_GRACE (a duration > 0, e.g. 10s) so Caddy sees /readyz "
            f"fail before the listener closes, got {grace_text!r}",
        ):
            found["graces"][name] = grace
            stop_text = service.get("stop_grace_period", "10s")
            stop = duration_seconds(stop_text)
            need = grace + SHUTDOWN_DRAIN_S + TELEMETRY_FLUSH_S
            problems.check(
                stop is not None and stop > need,
                f"compose: {name}'s stop_grace_period {stop_text} must exceed CHIMNEY_SHUTDOWN_GRACE "
                f"{grace_text} + {SHUTDOWN_DRAIN_S}s drain + {TELEMETRY_FLUSH_S}s telemetry flush = {need:g}s, "
                "or Docker kills the slot mid-drain",
            )
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
        if problems.check(len(ports) == 1, f"compose: {name} should publish exactly one port"):
            parts = ports[0].split(":")
            if len(parts) == 3:
                found["host_ports"][name] = f"{parts[0]}:{parts[1]}"
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
    return found


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
        bool(health) and re.search(r"/readyz\b", health[-1]) is not None,
        "Dockerfile: the runtime stage has no HEALTHCHECK on /readyz",
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


# --- Caddy (the README's documented configuration) ----------------------------


def caddy_snippet(root: Path) -> str | None:
    readme = root / "README.md"
    if not readme.exists():
        return None
    blocks = re.findall(r"^\s*```caddy\s*\n(.*?)^\s*```", readme.read_text(encoding="utf-8"), re.M | re.S)
    return next((block for block in blocks if "reverse_proxy" in block), None)


def check_caddy(root: Path, compose: dict, problems: Problems) -> None:
    """The README's Caddy site: proxies to both slots, takes a slot out of
    rotation (active checks of /readyz) well within the slot's shutdown
    grace, and retries on the other slot a request that fails on a
    closing one."""
    snippet = caddy_snippet(root)
    if not problems.check(snippet is not None, "README: no ```caddy block with the reverse_proxy to the slots"):
        return
    lines = [line.split("#", 1)[0].split() for line in snippet.splitlines()]
    lines = [words for words in lines if words]
    proxy = next((words for words in lines if words[0] == "reverse_proxy"), [])
    upstreams = {word.removeprefix("http://") for word in proxy[1:] if word != "{"}
    for name, hostport in compose.get("host_ports", {}).items():
        problems.check(hostport in upstreams, f"README Caddy: reverse_proxy does not proxy to {name} at {hostport}")
    settings = {words[0]: words[1:] for words in lines if len(words) > 1}

    def seconds(key: str, default: float | None = None) -> float | None:
        if key not in settings:
            return default
        value = duration_seconds(settings[key][0])
        problems.check(value is not None, f"README Caddy: cannot read {key} {settings[key][0]!r}")
        return value

    uri = (settings.get("health_uri") or [""])[0]
    problems.check(
        uri == "/readyz",
        f"README Caddy: health_uri is {uri or 'unset'!r}, not /readyz (the endpoint that fails from SIGTERM on)",
    )
    interval = seconds("health_interval")
    timeout = seconds("health_timeout", CADDY_DEFAULT_HEALTH_TIMEOUT_S)
    fails_text = (settings.get("health_fails") or [str(CADDY_DEFAULT_HEALTH_FAILS)])[0]
    fails = int(fails_text) if fails_text.isdigit() else None
    problems.check(fails is not None, f"README Caddy: cannot read health_fails {fails_text!r}")
    if problems.check(interval is not None, "README Caddy: no health_interval") and timeout is not None and fails:
        # The longest a closing slot can stay in rotation: `fails` checks,
        # each up to an interval apart and taking up to the timeout.
        out_after = fails * interval + timeout
        for name, grace in compose.get("graces", {}).items():
            problems.check(
                grace > out_after,
                f"README Caddy: health_interval {settings['health_interval'][0]} x health_fails {fails} + "
                f"health_timeout {timeout:g}s = {out_after:g}s is not shorter than {name}'s "
                f"CHIMNEY_SHUTDOWN_GRACE {grace:g}s: Caddy would still send requests when the listener closes",
            )
    keepalive = seconds("keepalive", CADDY_DEFAULT_KEEPALIVE_S)
    if keepalive is not None:
        problems.check(
            keepalive < CHIMNEY_IDLE_CLOSE_S,
            f"README Caddy: idle upstream connections are kept {keepalive:g}s (transport http keepalive), "
            f"not less than chimney's {CHIMNEY_IDLE_CLOSE_S:g}s idle close: a request sent as chimney closes "
            "one fails (a POST is not retried)",
        )
    for key, why in (
        ("lb_try_duration", "a request that fails on a closing slot is not retried on the other one"),
        ("fail_duration", "a slot that just failed a request is not avoided by the retry"),
    ):
        value = seconds(key)
        problems.check(value is not None and value > 0, f"README Caddy: no {key} > 0, so {why}")


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
    built = check_build(build, ci.get("name") if ci else None, problems) if build else {}
    deploy = workflow(root, "chimney-deploy.yml", problems)
    if deploy:
        check_deploy(deploy, built, problems)
    check_ci_gate(root, problems)


# The script both workflows run before pushing or deploying a commit's image.
CI_GATE = "scripts/ci-passed.sh"


def uses(step: dict, action: str) -> bool:
    return str(step.get("uses", "")).split("@", 1)[0] == action


def first(steps: list[dict], match) -> int | None:
    return next((i for i, step in enumerate(steps) if match(step)), None)


def run_text(step: dict) -> str:
    return str(step.get("run", ""))


def check_build(build: dict, ci_name: str | None, problems: Problems) -> dict:
    """The build runs after ci passed and records the commit it built.
    Returns the workflow's name and the artifact holding that commit."""
    found = {"name": build.get("name"), "artifact": None, "artifact_path": None}
    on = build["on"] if isinstance(build["on"], dict) else {}
    run = on.get("workflow_run") or {}
    problems.check(
        ci_name is not None
        and ci_name in (run.get("workflows") or [])
        and "completed" in (run.get("types") or [])
        and "main" in (run.get("branches") or []),
        f"chimney-build.yml: not started by workflow_run of {ci_name!r} (types: [completed], branches: [main]); "
        "images must be built after the tests passed",
    )
    problems.check("push" not in on, "chimney-build.yml: also builds on push, beside ci instead of after it")
    text = steps_text(build)
    problems.check("docker/build-push-action" in text, "chimney-build.yml: no docker/build-push-action")
    problems.check(
        "linux/amd64" in text and "linux/arm64" in text,
        "chimney-build.yml: does not build linux/amd64 and linux/arm64",
    )
    problems.check("ghcr.io" in text, "chimney-build.yml: does not push to GHCR")
    problems.check(
        "CHIMNEY_VERSION=" in text and "WGMESH_VERSION=" in text,
        "chimney-build.yml: does not pass CHIMNEY_VERSION and WGMESH_VERSION",
    )
    permissions = build.get("permissions") or {}
    problems.check(
        permissions.get("packages") == "write",
        "chimney-build.yml: needs permissions packages: write to push",
    )
    problems.check(
        permissions.get("actions") in ("read", "write"),
        f"chimney-build.yml: needs permissions actions: read ({CI_GATE} reads ci's runs)",
    )
    for name, job in (build.get("jobs") or {}).items():
        job = job or {}
        steps = job.get("steps") or []
        push_at = first(steps, lambda s: uses(s, "docker/build-push-action"))
        if push_at is None:
            continue
        where = f"chimney-build.yml: job {name}"
        condition = str(job.get("if", ""))
        problems.check(
            "github.event.workflow_run.conclusion == 'success'" in condition,
            f"{where} builds after a ci run that failed (its if: must require "
            "github.event.workflow_run.conclusion == 'success')",
        )
        problems.check(
            "github.event.workflow_run.event == 'push'" in condition,
            f"{where} builds after ci of a pull request (its if: must require github.event.workflow_run.event == 'push')",
        )
        problems.check(
            "github.event.workflow_run.head_sha" in str((job.get("env") or {}).get("BUILD_SHA", "")),
            f"{where}: BUILD_SHA must be github.event.workflow_run.head_sha, the commit ci tested "
            "(in a run started by ci, github.sha is main's head)",
        )
        checkout = steps[first(steps, lambda s: uses(s, "actions/checkout")) or 0] if steps else {}
        ref = str((checkout.get("with") or {}).get("ref", ""))
        problems.check(
            uses(checkout, "actions/checkout") and ("workflow_run.head_sha" in ref or "BUILD_SHA" in ref),
            f"{where} checks out main's head, not the commit ci tested (actions/checkout with ref: "
            "${{ github.event.workflow_run.head_sha }})",
        )
        gate_at = first(steps, lambda s: CI_GATE in run_text(s) and "BUILD_SHA" in run_text(s))
        problems.check(
            gate_at is not None and gate_at < push_at and "always()" not in str(steps[gate_at].get("if", "")),
            f'{where} does not run {CI_GATE} "$BUILD_SHA" before pushing (a build by hand would push an untested commit)',
        )
        meta = next((s for s in steps if uses(s, "docker/metadata-action")), {})
        tags = str((meta.get("with") or {}).get("tags", ""))
        problems.check(
            "value=${{ env.BUILD_SHA }}" in tags and "type=sha" not in tags,
            f"{where} does not tag the image with the built commit (type=raw,value=${{{{ env.BUILD_SHA }}}}; "
            "type=sha tags github.sha)",
        )
        version_lines = [
            line for step in steps for line in run_text(step).splitlines() if "chimney_version=" in line
        ]
        problems.check(
            any(re.search(r"chimney_version=\S*\$\{?BUILD_SHA\}?(?![:\w])", line) for line in version_lines),
            f"{where}: chimney_version (CHIMNEY_VERSION) does not end in the full built commit $BUILD_SHA, so "
            "/api/version cannot show the deploy which commit a slot runs",
        )
        args = str((steps[push_at].get("with") or {}).get("build-args", ""))
        problems.check(
            re.search(r"CHIMNEY_VERSION=\$\{\{\s*steps\.\w+\.outputs\.chimney_version\s*\}\}", args) is not None,
            f"{where}: the build does not pass CHIMNEY_VERSION=${{{{ steps.<id>.outputs.chimney_version }}}}",
        )
        upload_at = first(steps, lambda s: uses(s, "actions/upload-artifact"))
        if problems.check(
            upload_at is not None and upload_at > push_at,
            f"{where} does not upload the built commit for chimney-deploy (actions/upload-artifact after the push)",
        ):
            upload = steps[upload_at].get("with") or {}
            path = str(upload.get("path", "")).rstrip("/")
            problems.check(
                any(
                    re.search(rf'echo "\$\{{?BUILD_SHA\}}?"\s*>\s*"?{re.escape(path)}/sha\b', run_text(s))
                    for s in steps[push_at:upload_at]
                ),
                f"{where}: the uploaded {path or '?'}/ holds no sha file with $BUILD_SHA",
            )
            found["artifact"] = upload.get("name")
    return found


def check_deploy(deploy: dict, built: dict, problems: Problems) -> None:
    build_name = built.get("name")
    on = deploy["on"] if isinstance(deploy["on"], dict) else {}
    run = on.get("workflow_run") or {}
    problems.check(
        build_name is not None and build_name in (run.get("workflows") or []),
        f"chimney-deploy.yml: not triggered by workflow_run of {build_name!r}",
    )
    problems.check(
        "completed" in (run.get("types") or []),
        "chimney-deploy.yml: workflow_run must be on types: [completed]",
    )
    problems.check("push" not in on, "chimney-deploy.yml: also deploys on push, before the image exists")
    problems.check(
        "CHIMNEY_IMAGE" in json.dumps(deploy.get("jobs") or {}),
        "chimney-deploy.yml: does not hand compose the image (CHIMNEY_IMAGE)",
    )
    problems.check(
        ((deploy.get("permissions") or {}).get("actions")) in ("read", "write"),
        f"chimney-deploy.yml: needs permissions actions: read (the build's artifact, {CI_GATE})",
    )
    jobs = {name: job or {} for name, job in (deploy.get("jobs") or {}).items()}
    deploying = {name: job for name, job in jobs.items() if "docker compose" in json.dumps(job)}
    problems.check(bool(deploying), "chimney-deploy.yml: no job runs docker compose")
    for name, job in deploying.items():
        where = f"chimney-deploy.yml: job {name}"
        condition = str(job.get("if", ""))
        problems.check(
            "github.event.workflow_run.conclusion == 'success'" in condition,
            f"{where} deploys without checking that the build succeeded "
            "(its if: must require github.event.workflow_run.conclusion == 'success')",
        )
        problems.check(
            "github.event.workflow_run.event == 'workflow_run'" in condition,
            f"{where} deploys builds that ci did not start (its if: must require "
            "github.event.workflow_run.event == 'workflow_run')",
        )
        text = json.dumps(job)
        problems.check(
            "workflow_run.head_sha" not in text,
            f"{where} takes workflow_run.head_sha, which for a build started by ci is main's head, not the "
            "built commit; read the commit from the build's artifact",
        )
        steps = job.get("steps") or []
        download_at = first(steps, lambda s: uses(s, "actions/download-artifact"))
        download = (steps[download_at].get("with") or {}) if download_at is not None else {}
        problems.check(
            download_at is not None
            and built.get("artifact") is not None
            and download.get("name") == built.get("artifact")
            and "github.event.workflow_run.id" in str(download.get("run-id", "")),
            f"{where} does not download the build's {built.get('artifact')!r} artifact "
            "(run-id: ${{ github.event.workflow_run.id }}) to learn the built commit",
        )
        sha_at = first(
            steps,
            lambda s: re.search(r"DEPLOY_SHA=\S*\s*>>\s*\"?\$GITHUB_ENV", run_text(s)) is not None
            and "/sha" in run_text(s),
        )
        problems.check(
            sha_at is not None and download_at is not None and sha_at > download_at,
            f"{where} does not set DEPLOY_SHA from the downloaded record's sha file",
        )
        deploy_at = first(
            steps,
            lambda s: "docker compose" in run_text(s)
            and "up -d" in run_text(s)
            and "CHIMNEY_IMAGE" in (s.get("env") or {})
            and not s.get("if"),
        )
        if not problems.check(
            deploy_at is not None,
            f"{where} has no unconditional step running docker compose up -d with CHIMNEY_IMAGE",
        ):
            continue
        gate_at = first(steps, lambda s: CI_GATE in run_text(s) and "DEPLOY_SHA" in run_text(s))
        problems.check(
            gate_at is not None and gate_at < deploy_at and not steps[gate_at].get("if")
            and not steps[gate_at].get("continue-on-error"),
            f'{where} does not run {CI_GATE} "$DEPLOY_SHA" (failing the job) before deploying: an untested '
            "commit could be deployed",
        )
        check_deploy_steps(where, steps, deploy_at, problems)


def secrets_of(step: dict) -> set[str]:
    return {key for key, value in (step.get("env") or {}).items() if "secrets." in str(value)}


def after(steps: list[dict], start: int | None, match) -> int | None:
    if start is None:
        return None
    found = first(steps[start + 1 :], match)
    return None if found is None else start + 1 + found


def check_deploy_steps(where: str, steps: list[dict], deploy_at: int, problems: Problems) -> None:
    """Around the step that updates the slot: its previous image recorded
    before, a smoke test of the deployed commit after, a rollback to the
    recorded image when either fails, and the outcome reported."""
    previous_at = first(
        steps,
        lambda s: bool(s.get("id"))
        and "docker inspect" in run_text(s)
        and "image=" in run_text(s)
        and "GITHUB_OUTPUT" in run_text(s),
    )
    problems.check(
        previous_at is not None and previous_at < deploy_at and not steps[previous_at].get("if"),
        f"{where} does not record the slot's current image (docker inspect, to a step output) before "
        "deploying, so it cannot roll back",
    )
    smoke_at = after(steps, deploy_at, lambda s: "/api/version" in run_text(s))
    rollback_at = None
    if problems.check(smoke_at is not None, f"{where} has no smoke test of /api/version after the deploy"):
        smoke = steps[smoke_at]
        text = run_text(smoke)
        problems.check(
            re.search(r"curl [^\n]*127\.0\.0\.1:\$\{?PORT\}?/readyz", text) is not None,
            f"{where}: the smoke test does not wait for the slot's /readyz (curl http://127.0.0.1:$PORT/readyz)",
        )
        problems.check(
            "chimney_version" in text and re.search(r"\$\{?DEPLOY_SHA\}?", text) is not None and "exit 1" in text,
            f"{where}: the smoke test does not fail when /api/version's chimney_version is not the deployed "
            "commit $DEPLOY_SHA",
        )
        problems.check(
            not smoke.get("if") and not smoke.get("continue-on-error"),
            f"{where}: the smoke test can be skipped or fail without failing the deploy",
        )
        rollback_at = after(
            steps,
            smoke_at,
            lambda s: "failure()" in str(s.get("if", ""))
            and "docker compose" in run_text(s)
            and "up -d" in run_text(s),
        )
    if problems.check(
        rollback_at is not None,
        f"{where} has no rollback after the smoke test (if: failure(), docker compose up -d with the "
        "recorded image)",
    ):
        rollback = steps[rollback_at]
        image = str((rollback.get("env") or {}).get("CHIMNEY_IMAGE", ""))
        previous_id = steps[previous_at].get("id") if previous_at is not None else "<id>"
        problems.check(
            f"steps.{previous_id}.outputs.image" in image,
            f"{where}: the rollback does not hand compose the recorded image "
            f"(CHIMNEY_IMAGE: ${{{{ steps.{previous_id}.outputs.image }}}}), got {image!r}",
        )
        missing = sorted(secrets_of(steps[deploy_at]) - secrets_of(rollback))
        problems.check(
            not missing,
            f"{where}: the rollback does not pass {missing} as the deploy does, so compose would bring the "
            "old image back without them",
        )
    reports = [
        (i, step)
        for i, step in enumerate(steps)
        if "post-deploy-event.sh" in run_text(step)
        and "DEPLOY_SHA" in str((step.get("env") or {}).get("SHA", ""))
        and "DEPLOY_TOKEN" in secrets_of(step)
    ]

    def reported(outcome: str) -> list[tuple[int, dict]]:
        return [(i, s) for i, s in reports if str((s.get("env") or {}).get("OUTCOME")) == outcome]

    problems.check(
        any(
            smoke_at is not None
            and i > smoke_at
            and "failure()" not in str(s.get("if", ""))
            and "always()" not in str(s.get("if", ""))
            for i, s in reported("success")
        ),
        f"{where} does not report a successful deploy (post-deploy-event.sh, OUTCOME: success, SHA: the "
        "deployed commit) after the smoke test",
    )
    problems.check(
        any(
            "failure()" in str(s.get("if", "")) and (rollback_at is None or i > rollback_at)
            for i, s in reported("failure")
        ),
        f"{where} does not report a failed deploy (post-deploy-event.sh, OUTCOME: failure, if: failure()) "
        "after the rollback",
    )


def check_ci_gate(root: Path, problems: Problems) -> None:
    hook = root / "scripts/post-deploy-event.sh"
    problems.check(
        hook.exists() and os.access(hook, os.X_OK),
        "scripts/post-deploy-event.sh (the deploy's report) is missing or not executable",
    )
    gate = root / CI_GATE
    if not problems.check(gate.exists(), f"{CI_GATE} is missing"):
        return
    problems.check(os.access(gate, os.X_OK), f"{CI_GATE} is not executable")
    text = gate.read_text(encoding="utf-8")
    problems.check(
        "actions/workflows/$workflow/runs" in text and re.search(r"^workflow=ci\.yml$", text, re.M) is not None,
        f"{CI_GATE} does not look up the runs of .github/workflows/ci.yml",
    )


def policy_problems(root: Path) -> Problems:
    problems = Problems()
    compose = check_compose(root, problems)
    check_caddy(root, compose, problems)
    check_dockerfile(root, problems)
    check_workflows(root, problems)
    return problems


def cmd_policy(args) -> int:
    return policy_problems(Path(args.root)).report("deploy wiring")


# --- selftest -----------------------------------------------------------------
#
# Each mutation is one regression the policy exists to catch, applied to a
# copy of the checked files; the policy must then report a problem
# containing `expect`. A mutation whose text no longer occurs in the file
# fails the self-test too, so the list is kept in step with the files.


def text_edit(old: str, new: str):
    def edit(text: str) -> str:
        if old not in text:
            raise LookupError(f"the text {old!r} no longer occurs")
        return text.replace(old, new)

    return edit


def not_executable(text: str) -> str:
    """Leaves the text alone; the self-test clears the file's x bits."""
    return text


def unshared(node):
    """A copy in which no two places share one object (YAML aliases and
    merge keys do), so an edit changes one place only."""
    if isinstance(node, dict):
        return {key: unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [unshared(item) for item in node]
    return node


def yaml_edit(change):
    """`change(data)` edits the parsed document in place."""

    def edit(text: str) -> str:
        data = unshared(yaml.safe_load(text))
        change(data)
        return yaml.safe_dump(data, sort_keys=False, width=1000)

    return edit


def service(name: str, key: str, change):
    def edit(data):
        change(data["services"][name], key)

    return edit


def drop(mapping: dict, key: str) -> None:
    if key not in mapping:
        raise LookupError(f"no key {key!r} to drop")
    del mapping[key]


def steps_of(data, job: str) -> list[dict]:
    return data["jobs"][job]["steps"]


def step_named(data, job: str, name: str) -> dict:
    for step in steps_of(data, job):
        if step.get("name") == name:
            return step
    raise LookupError(f"no step {name!r} in job {job}")


def drop_step(job: str, name: str):
    def edit(data):
        steps_of(data, job).remove(step_named(data, job, name))

    return edit


def trigger(data) -> dict:
    return data[True] if True in data else data["on"]


BUILD = ".github/workflows/chimney-build.yml"
DEPLOY = ".github/workflows/chimney-deploy.yml"

MUTATIONS: list[tuple[str, str, object, str]] = [
    # (the regression, file, edit, a substring of the FAIL line expected)
    (
        "compose without a project name",
        "compose.origin.yml",
        yaml_edit(lambda d: drop(d, "name")),
        "no valid top-level project name",
    ),
    (
        "Dragonfly logging without rotation (daemon default)",
        "compose.origin.yml",
        yaml_edit(service("dragonfly", "logging", drop)),
        "dragonfly has no rotating log driver",
    ),
    (
        "one slot's json-file logging without max-file",
        "compose.origin.yml",
        yaml_edit(service("chimney-green", "logging", lambda s, k: drop(s[k]["options"], "max-file"))),
        "chimney-green's json-file logging has no max-file",
    ),
    (
        "one slot's json-file logging without max-size",
        "compose.origin.yml",
        yaml_edit(service("chimney-blue", "logging", lambda s, k: drop(s[k]["options"], "max-size"))),
        "chimney-blue's json-file logging has no max-size",
    ),
    (
        "a slot's healthcheck back on /healthz (liveness, stays 200 while stopping)",
        "compose.origin.yml",
        yaml_edit(
            service(
                "chimney-blue",
                "healthcheck",
                lambda s, k: s[k].update(test=[w.replace("/readyz", "/healthz") for w in s[k]["test"]]),
            )
        ),
        "chimney-blue's healthcheck does not probe",
    ),
    (
        "the slots without CHIMNEY_SHUTDOWN_GRACE",
        "compose.origin.yml",
        yaml_edit(
            lambda d: [drop(d["services"][name]["environment"], "CHIMNEY_SHUTDOWN_GRACE") for name in SLOTS]
        ),
        "needs CHIMNEY_SHUTDOWN_GRACE",
    ),
    (
        "CHIMNEY_SHUTDOWN_GRACE 0s (the listener closes while Caddy still routes to it)",
        "compose.origin.yml",
        text_edit('CHIMNEY_SHUTDOWN_GRACE: "10s"', 'CHIMNEY_SHUTDOWN_GRACE: "0s"'),
        "needs CHIMNEY_SHUTDOWN_GRACE",
    ),
    (
        "CHIMNEY_SHUTDOWN_GRACE shorter than Caddy needs to notice",
        "compose.origin.yml",
        text_edit('CHIMNEY_SHUTDOWN_GRACE: "10s"', 'CHIMNEY_SHUTDOWN_GRACE: "2s"'),
        "is not shorter than chimney-blue's CHIMNEY_SHUTDOWN_GRACE",
    ),
    (
        "stop_grace_period shorter than grace + drain + flush",
        "compose.origin.yml",
        text_edit("stop_grace_period: 30s", "stop_grace_period: 15s"),
        "chimney-green's stop_grace_period 15s must exceed",
    ),
    (
        "no stop_grace_period (Docker's 10 s default)",
        "compose.origin.yml",
        yaml_edit(lambda d: [drop(d["services"][name], "stop_grace_period") for name in SLOTS]),
        "stop_grace_period 10s must exceed",
    ),
    (
        "the image's HEALTHCHECK back on /healthz",
        "Dockerfile",
        text_edit('/readyz\\" || exit 1', '/healthz\\" || exit 1'),
        "no HEALTHCHECK on /readyz",
    ),
    (
        "Caddy checks /healthz",
        "README.md",
        text_edit("health_uri /readyz", "health_uri /healthz"),
        "health_uri is '/healthz', not /readyz",
    ),
    (
        "Caddy's health_interval longer than the grace",
        "README.md",
        text_edit("health_interval 2s", "health_interval 15s"),
        "is not shorter than chimney-green's CHIMNEY_SHUTDOWN_GRACE",
    ),
    (
        "Caddy without health_interval",
        "README.md",
        text_edit("health_interval 2s", ""),
        "README Caddy: no health_interval",
    ),
    (
        "Caddy keeps idle connections to a slot longer than chimney does",
        "README.md",
        text_edit("keepalive 5s", "keepalive 30s"),
        "not less than chimney's 10s idle close",
    ),
    (
        "Caddy at its default idle keepalive (2 minutes)",
        "README.md",
        text_edit("keepalive 5s", ""),
        "are kept 120s",
    ),
    (
        "Caddy does not retry (no lb_try_duration)",
        "README.md",
        text_edit("lb_try_duration 5s", ""),
        "no lb_try_duration > 0",
    ),
    (
        "Caddy without passive health checks (no fail_duration)",
        "README.md",
        text_edit("fail_duration 10s", ""),
        "no fail_duration > 0",
    ),
    (
        "Caddy proxies to a port no slot publishes",
        "README.md",
        text_edit("reverse_proxy 127.0.0.1:8081 127.0.0.1:8082", "reverse_proxy 127.0.0.1:8081 127.0.0.1:8083"),
        "does not proxy to chimney-green at 127.0.0.1:8082",
    ),
    (
        "the build runs on push, beside ci rather than after it",
        BUILD,
        yaml_edit(lambda d: trigger(d).update(push={"branches": ["main"]})),
        "also builds on push",
    ),
    (
        "the build no longer started by ci",
        BUILD,
        yaml_edit(lambda d: drop(trigger(d), "workflow_run")),
        "not started by workflow_run of 'ci'",
    ),
    (
        "the build runs after a failed ci",
        BUILD,
        text_edit("github.event.workflow_run.conclusion == 'success' &&", ""),
        "builds after a ci run that failed",
    ),
    (
        "the build runs after ci of a pull request",
        BUILD,
        text_edit("&&\n       github.event.workflow_run.event == 'push'", ""),
        "builds after ci of a pull request",
    ),
    (
        "the build builds github.sha (main's head) instead of the tested commit",
        BUILD,
        text_edit("BUILD_SHA: ${{ github.event.workflow_run.head_sha || github.sha }}", "BUILD_SHA: ${{ github.sha }}"),
        "BUILD_SHA must be github.event.workflow_run.head_sha",
    ),
    (
        "the build checks out main's head",
        BUILD,
        yaml_edit(lambda d: drop(steps_of(d, "image")[0], "with")),
        "checks out main's head",
    ),
    (
        "the build pushes without asking whether ci passed",
        BUILD,
        yaml_edit(drop_step("image", "The tests passed for this commit")),
        "does not run scripts/ci-passed.sh",
    ),
    (
        "the image tagged with type=sha (github.sha)",
        BUILD,
        text_edit("type=raw,value=${{ env.BUILD_SHA }}", "type=sha,format=long,prefix="),
        "does not tag the image with the built commit",
    ),
    (
        "CHIMNEY_VERSION with a 7-digit sha",
        BUILD,
        text_edit("+${BUILD_SHA}", "+${BUILD_SHA::7}"),
        "does not end in the full built commit",
    ),
    (
        "CHIMNEY_VERSION not passed to the image build",
        BUILD,
        text_edit("CHIMNEY_VERSION=${{ steps.meta.outputs.chimney_version }}", "CHIMNEY_VERSION="),
        "does not pass CHIMNEY_VERSION=",
    ),
    (
        "the build records no commit for the deploy",
        BUILD,
        yaml_edit(drop_step("image", "Upload the record")),
        "does not upload the built commit",
    ),
    (
        "the deploy runs after a failed build",
        DEPLOY,
        text_edit("github.event.workflow_run.conclusion == 'success' &&", ""),
        "deploys without checking that the build succeeded",
    ),
    (
        "the deploy takes workflow_run.head_sha",
        DEPLOY,
        text_edit('sha=$(cat "$RUNNER_TEMP/chimney-image/sha")', "sha=${{ github.event.workflow_run.head_sha }}"),
        "takes workflow_run.head_sha",
    ),
    (
        "the deploy does not download the build's record",
        DEPLOY,
        yaml_edit(drop_step("deploy", "Download the build's record")),
        "does not download the build's 'chimney-image' artifact",
    ),
    (
        "the deploy does not ask whether ci passed",
        DEPLOY,
        yaml_edit(drop_step("deploy", "The tests passed for this commit")),
        "does not run scripts/ci-passed.sh",
    ),
    (
        "the deploy's ci gate may fail without stopping it",
        DEPLOY,
        yaml_edit(lambda d: step_named(d, "deploy", "The tests passed for this commit").update({"continue-on-error": True})),
        "does not run scripts/ci-passed.sh",
    ),
    (
        "the ci gate asks about another workflow",
        CI_GATE,
        text_edit("workflow=ci.yml", "workflow=chimney-build.yml"),
        "does not look up the runs of .github/workflows/ci.yml",
    ),
    (
        "the deploy no longer records what the slot ran",
        DEPLOY,
        yaml_edit(drop_step("deploy", "Record what the slot runs now")),
        "does not record the slot's current image",
    ),
    (
        "the smoke test no longer compares /api/version with the deployed commit",
        DEPLOY,
        yaml_edit(
            lambda d: step_named(d, "deploy", "Smoke test").update(
                run=step_named(d, "deploy", "Smoke test")["run"].split("chimney_version=$(")[0]
            )
        ),
        "does not fail when /api/version's chimney_version is not the deployed commit",
    ),
    (
        "the smoke test may fail without failing the deploy",
        DEPLOY,
        yaml_edit(lambda d: step_named(d, "deploy", "Smoke test").update({"continue-on-error": True})),
        "the smoke test can be skipped or fail",
    ),
    (
        "the smoke test waits for /healthz instead of /readyz",
        DEPLOY,
        text_edit('"http://127.0.0.1:$PORT/readyz"; then\n              ready=true', '"http://127.0.0.1:$PORT/healthz"; then\n              ready=true'),
        "the smoke test does not wait for the slot's /readyz",
    ),
    (
        "the deploy without a rollback step",
        DEPLOY,
        yaml_edit(drop_step("deploy", "Roll the slot back")),
        "has no rollback after the smoke test",
    ),
    (
        "the rollback runs even when the deploy succeeded",
        DEPLOY,
        yaml_edit(lambda d: drop(step_named(d, "deploy", "Roll the slot back"), "if")),
        "has no rollback after the smoke test",
    ),
    (
        "the rollback puts back the new image",
        DEPLOY,
        yaml_edit(
            lambda d: step_named(d, "deploy", "Roll the slot back")["env"].update(
                CHIMNEY_IMAGE="${{ steps.meta.outputs.image }}"
            )
        ),
        "the rollback does not hand compose the recorded image",
    ),
    (
        "the rollback brings the old image back without DEPLOY_TOKEN",
        DEPLOY,
        yaml_edit(lambda d: drop(step_named(d, "deploy", "Roll the slot back")["env"], "DEPLOY_TOKEN")),
        "the rollback does not pass ['DEPLOY_TOKEN']",
    ),
    (
        "no failure report to /api/deploy/events",
        DEPLOY,
        yaml_edit(drop_step("deploy", "Notify chimney of the failed deploy")),
        "does not report a failed deploy",
    ),
    (
        "the failure report before the rollback",
        DEPLOY,
        yaml_edit(
            lambda d: steps_of(d, "deploy").insert(
                0,
                steps_of(d, "deploy").pop(
                    steps_of(d, "deploy").index(step_named(d, "deploy", "Notify chimney of the failed deploy"))
                ),
            )
        ),
        "does not report a failed deploy",
    ),
    (
        "no success report to /api/deploy/events",
        DEPLOY,
        yaml_edit(drop_step("deploy", "Notify chimney of the deploy")),
        "does not report a successful deploy",
    ),
    (
        "the deploy's report no longer executable",
        "scripts/post-deploy-event.sh",
        not_executable,
        "post-deploy-event.sh (the deploy's report) is missing or not executable",
    ),
]

# What the policy reads besides the mutated files; big trees are skipped.
SELFTEST_SKIP = {".git", "target", "node_modules"}


def cmd_selftest(args) -> int:
    root = Path(args.root)
    problems = Problems()
    baseline = policy_problems(root)
    if not problems.check(not baseline.items, f"the policy fails on {root} itself: {baseline.items}"):
        return problems.report("policy self-test")
    with tempfile.TemporaryDirectory(prefix="ship-selftest-") as tmp:
        copy = Path(tmp) / "root"
        shutil.copytree(root, copy, ignore=lambda _dir, names: [n for n in names if n in SELFTEST_SKIP])
        for what, name, edit, expect in MUTATIONS:
            path = copy / name
            original = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
            try:
                path.write_text(edit(original), encoding="utf-8")
                if edit is not_executable:
                    path.chmod(mode & ~0o111)
                found = policy_problems(copy).items
            except Exception as error:  # noqa: BLE001 (any crash is a finding)
                problems.check(False, f"{what}: {type(error).__name__}: {error}")
                continue
            finally:
                path.write_text(original, encoding="utf-8")
                path.chmod(mode)
            if problems.check(
                any(expect in item for item in found),
                f"not caught: {what} ({name}); expected a problem containing {expect!r}, got {found}",
            ):
                print(f"caught: {what}")
    return problems.report(f"policy self-test ({len(MUTATIONS)} regressions)")


# --- stop-grace ---------------------------------------------------------------


def cmd_stop_grace(args) -> int:
    """Whole seconds Docker gives the service between SIGTERM and SIGKILL."""
    data = interpolate_tree(load_yaml(Path(args.compose)), {})
    service = (data.get("services") or {}).get(args.service)
    if service is None:
        print(f"FAIL: compose: no service {args.service}", file=sys.stderr)
        return 1
    text = service.get("stop_grace_period", "10s")
    seconds = duration_seconds(text)
    if seconds is None:
        print(f"FAIL: compose: cannot read {args.service}'s stop_grace_period {text!r}", file=sys.stderr)
        return 1
    print(int(-(-seconds // 1)))
    return 0


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
    status, _, body = request(f"{args.upstream.rstrip('/')}/__requests")
    seen = json.loads(body) if status == 200 else []
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

    selftest = sub.add_parser("selftest")
    selftest.add_argument("root")
    selftest.set_defaults(run=cmd_selftest)

    grace = sub.add_parser("stop-grace")
    grace.add_argument("--compose", required=True)
    grace.add_argument("--service", required=True)
    grace.set_defaults(run=cmd_stop_grace)

    slot = sub.add_parser("slot-env")
    slot.add_argument("--compose", required=True)
    slot.add_argument("--service", required=True)
    slot.add_argument("--operator-env", action="append", default=[], metavar="NAME=VALUE")
    slot.add_argument("--map", action="append", default=[], metavar="HOST:PORT=HOST:PORT")
    slot.add_argument("--listen", required=True)
    slot.add_argument("--out", required=True)
    slot.set_defaults(run=cmd_slot_env)

    probe = sub.add_parser("probe")
    probe.add_argument("--base", required=True)
    probe.add_argument("--upstream", required=True, help="the fake GitHub's base URL")
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
