#!/usr/bin/env python3
"""The layering rules of src/, checked on the code as written.

    domain     pure rules: std and small pure crates; nothing of ours but itself
    ports      traits over the domain
    adapters   outbound technology; domain and ports, never each other
    service    orchestration; domain and ports only, no framework
    http       the inbound adapter; services, domain and ports
    bootstrap  the composition root: the only code naming a concrete adapter

A violation is a path (`use poem::…`, `crate::adapters::…`,
`opentelemetry::Context::current()`) in a layer that must not name it.
Comments are ignored, and so are `#[cfg(test)]` modules: tests may build a
service over a real in-memory adapter (see README, Layout). Exits 1 and
prints every violation, with its file and line, when there is one.

Usage: scripts/check-layers.py [SRC_DIR]   (default: src)
"""

import re
import sys
from pathlib import Path

FRAMEWORKS = {
    "tokio", "poem", "poem_openapi", "redis", "deadpool_redis", "reqwest",
    "quick_cache", "opentelemetry", "opentelemetry_sdk", "opentelemetry_otlp",
    "opentelemetry_semantic_conventions", "opentelemetry_appender_tracing",
    "tracing_opentelemetry", "tracing_subscriber", "config", "clap", "serde",
    "serde_json",
}
OUTBOUND_TECH = {
    "redis", "deadpool_redis", "reqwest", "quick_cache", "config", "clap",
}
OTEL = {
    "opentelemetry", "opentelemetry_sdk", "opentelemetry_otlp",
    "opentelemetry_semantic_conventions", "opentelemetry_appender_tracing",
    "tracing_opentelemetry",
}
LAYERS = ["domain", "ports", "adapters", "service", "http", "bootstrap"]

# layer -> (crates it must not name, our layers it must not name)
RULES = {
    "domain": (FRAMEWORKS, {"ports", "adapters", "service", "http", "bootstrap"}),
    "ports": (FRAMEWORKS, {"adapters", "service", "http", "bootstrap"}),
    "adapters": ({"poem", "poem_openapi", "config", "clap"}, {"service", "http", "bootstrap"}),
    "service": (OTEL | OUTBOUND_TECH | {"poem", "poem_openapi", "tracing_subscriber"},
                {"adapters", "http", "bootstrap"}),
    "http": (OUTBOUND_TECH | {"opentelemetry_otlp", "tracing_subscriber"},
             {"adapters", "bootstrap"}),
    "bootstrap": (set(), set()),
}

CRATE_PATH = re.compile(r"(?<![\w:])([a-z_][a-z0-9_]*)::")
OUR_PATH = re.compile(r"\bcrate::(?:\{\s*)?([a-z_]+)")
GROUPED = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.split("\n"))


def strip_test_modules(text: str) -> str:
    """Blanks every `#[cfg(test)]` item (a module or a single item), keeping
    line numbers."""
    out = list(text)
    for match in re.finditer(r"#\[cfg\(test\)\]", text):
        start = match.start()
        brace = text.find("{", match.end())
        semi = text.find(";", match.end())
        if brace == -1 or (semi != -1 and semi < brace):
            end = semi + 1
        else:
            depth, i = 0, brace
            while i < len(text):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            end = i + 1
        for i in range(start, min(end, len(text))):
            if out[i] != "\n":
                out[i] = " "
    return "".join(out)


def strip_strings(text: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', text)


def violations(src: Path):
    for layer in LAYERS:
        banned_crates, banned_layers = RULES[layer]
        for path in sorted((src / layer).rglob("*.rs")):
            text = strip_test_modules(strip_strings(strip_comments(path.read_text())))
            own_adapter = None
            if layer == "adapters":
                own_adapter = path.relative_to(src / "adapters").parts[0].removesuffix(".rs")
            for number, line in enumerate(text.split("\n"), 1):
                for crate in CRATE_PATH.findall(line):
                    if crate in banned_crates:
                        yield path, number, f"{layer} names the crate `{crate}`"
                named = set(OUR_PATH.findall(line))
                for group in GROUPED.findall(line):
                    named |= set(re.findall(r"(?:^|,)\s*([a-z_]+)", group))
                for ours in named:
                    if ours in banned_layers:
                        yield path, number, f"{layer} names `crate::{ours}`"
                if own_adapter:
                    for other in re.findall(r"\bcrate::adapters::([a-z_]+)", line):
                        if other != own_adapter:
                            yield path, number, f"adapter `{own_adapter}` names adapter `{other}`"


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    missing = [layer for layer in LAYERS if not (src / layer).is_dir()]
    if missing:
        print(f"check-layers: {src} has no {', '.join(missing)}", file=sys.stderr)
        return 1
    found = list(violations(src))
    for path, number, what in found:
        print(f"{path}:{number}: {what}", file=sys.stderr)
    if found:
        print(f"check-layers: {len(found)} layering violation(s)", file=sys.stderr)
        return 1
    print("check-layers: domain, ports, adapters, service, http and bootstrap keep their rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
