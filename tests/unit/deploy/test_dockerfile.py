"""The Dockerfile: a builder stage and a slim runtime stage that runs ``xweg`` as a user of its
own, without the test tools or compilers, as deploy/kubernetes expects."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: The only path the manifests give the process to write to, besides /tmp.
DATA_DIR = "/var/lib/xweg"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc")


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case: FROM, RUN, ...
    value: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        name, _, value = (pending + stripped).partition(" ")
        found.append(Instruction(name.upper(), value.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages() -> list[list[Instruction]]:
    """Instructions per stage, each starting with its FROM (global ARGs before the first are left out)."""
    found: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction.name == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def global_args() -> dict[str, str]:
    args = {}
    for instruction in instructions():
        if instruction.name == "FROM":
            break
        if instruction.name == "ARG":
            name, _, default = instruction.value.partition("=")
            args[name] = default
    return args


def base_image(stage: list[Instruction]) -> str:
    image = stage[0].value.split()[0]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args()[m.group(1) or m.group(2)], image)


def stage_name(stage: list[Instruction]) -> str | None:
    words = stage[0].value.split()
    return words[2] if len(words) == 3 and words[1].upper() == "AS" else None


def env(stage: list[Instruction]) -> dict[str, str]:
    found = {}
    for instruction in stage:
        if instruction.name == "ENV":
            for pair in shlex.split(instruction.value):
                name, _, value = pair.partition("=")
                found[name] = value
    return found


def runtime() -> list[Instruction]:
    return stages()[-1]


def test_a_builder_stage_and_a_slim_runtime_stage_on_the_same_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    builder, final = all_stages[0], all_stages[-1]
    assert stage_name(builder) == "builder"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base_image(final)), base_image(final)
    # The virtual environment copied over links to the builder's interpreter.
    assert base_image(builder) == base_image(final)
    copies = [i.value for i in final if i.name == "COPY"]
    assert any(c.startswith("--from=builder ") for c in copies)


def test_the_image_holds_every_package_the_project_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        i.value.split()[0]
        for i in stages()[0]
        if i.name == "COPY" and not i.value.startswith("--from") and i.value.split()[0] in packages
    }
    assert copied == packages


def test_the_runtime_stage_has_no_test_tools_and_no_compilers() -> None:
    for instruction in runtime():
        if instruction.name != "RUN":
            continue
        assert not re.search(r"pip\S* install", instruction.value), "install in the builder, copy the result"
        assert not re.search(r"\[(test|dev)[^\]]*\]", instruction.value)
        if re.search(r"apt-get install|apk add", instruction.value):
            words = set(instruction.value.split())
            assert not words & set(COMPILERS), instruction.value
    # Wheels only: nothing is built from source, so the builder needs no compiler either.
    (install,) = [i.value for i in stages()[0] if i.name == "RUN" and "pip install" in i.value]
    assert "--only-binary=:all:" in install
    assert not re.search(r"\[(test|dev)[^\]]*\]", install)


def test_the_runtime_runs_xweg_as_a_user_of_its_own() -> None:
    final = runtime()
    (user,) = [i.value for i in final if i.name == "USER"][-1:]
    uid, _, gid = user.partition(":")
    assert uid not in ("0", "root") and gid not in ("0", "root")
    assert uid.isdigit(), "numeric, so that runAsNonRoot can be checked without /etc/passwd"
    # The manifests run the pods as the image's user.
    for manifest in ("gateway-statefulset.yaml", "registry-deployment.yaml"):
        workload = yaml.safe_load((ROOT / "deploy" / "kubernetes" / manifest).read_text())
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert str(pod["runAsUser"]) == uid and str(pod["runAsGroup"]) == (gid or uid)
    (entrypoint,) = [i.value for i in final if i.name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["xweg"]


def test_the_runtime_suits_a_read_only_root_filesystem() -> None:
    final = runtime()
    variables = env(final)
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"
    assert variables["PYTHONUNBUFFERED"] == "1"
    volumes = [v for i in final if i.name == "VOLUME" for v in json.loads(i.value)]
    assert volumes == [DATA_DIR]


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "demo-data"} <= ignored
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"} <= ignored
