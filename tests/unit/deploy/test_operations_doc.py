"""docs/operations.md's configuration reference: every option the loaders read, with the
defaults the code has.

The reference is section 2: one ``### ... `FILE` `` heading per component, one ``####``
heading per TOML table ("Top level", or the table in backticks), and rows
``| `key` | default | meaning |``.  A default cell starts with a TOML value in backticks,
with "required", or with anything else (such as "none") for an option without a default.
The options are collected from the code itself (the settings dataclasses, the keys the
loaders look up, the sets of keys they accept), so an option added to the code and not
to the reference fails here, and so does a documented default the code does not have.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import enum
import inspect
import json
import re
import textwrap
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import gateway.config
import registry.server
import trust.service.ocsp_responder
import trust.service.tsa
from gateway.config import GatewayConfig
from gateway.serverconf.model import ServiceEntry
from registry.server import RegistrySettings
from trust.service.ocsp_responder import OcspResponderSettings
from trust.service.runner import EVENT_LOOP_ENV
from trust.service.tsa import TsaSettings

DOC = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
REFERENCE_HEADING = "## 2. Configuration reference"
COMPONENTS = ("server.toml", "registry.toml", "ocsp.toml", "tsa.toml")
TOP = ""  # the table name of a file's top level

#: The security server's tables whose keys are exactly a settings dataclass's fields.
GATEWAY_TABLES: dict[str, type[Any]] = {
    "[client_listener]": gateway.config.Listener,
    "[peer_listener]": gateway.config.Listener,
    "[client_tls_listener]": gateway.config.Listener,
    "[management_listener]": gateway.config.Listener,
    "[globalconf]": gateway.config.GlobalConfClientSettings,
    "[timestamping]": gateway.config.TimestampingSettings,
    "[ocsp]": gateway.config.OcspSettings,
    "[messagelog]": gateway.config.MessageLogSettings,
    "[limits]": gateway.config.Limits,
    "[archive]": gateway.config.ArchiveSettings,
    "[opmon]": gateway.config.OpmonSettings,
    "[serverconf]": gateway.config.ServerConfSettings,
    "[[services]]": ServiceEntry,
}

# -- the document -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    default: str  # the cell as written

    @property
    def required(self) -> bool:
        return self.default.startswith("required")

    @property
    def has_value(self) -> bool:
        return self.default.startswith("`")

    def value(self) -> Any:
        """The documented default, read as a TOML value."""
        literal = re.match(r"`([^`]*)`", self.default)
        assert literal, f"{self.key}: the default {self.default!r} does not start with a value"
        try:
            return tomllib.loads(f"v = {literal.group(1)}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"{self.key}: {literal.group(1)!r} is not a TOML value: {exc}") from exc


Reference = dict[str, dict[str, dict[str, Row]]]  # component -> table -> key -> row


def parse_reference(text: str) -> Reference:
    assert REFERENCE_HEADING in text.splitlines(), f"{DOC.name} has no line {REFERENCE_HEADING!r}"
    section = text.split(REFERENCE_HEADING + "\n", 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]
    reference: Reference = {}
    component: str | None = None
    table: str | None = None
    for line in section.splitlines():
        if line.startswith("### "):
            named = [c for c in COMPONENTS if f"`{c}`" in line]
            component = named[0] if named else None
            table = None
            if component is not None:
                assert component not in reference, f"{component} has two sections"
                reference[component] = {}
        elif line.startswith("#### "):
            table = None
            if component is None:
                continue
            if line.strip() == "#### Top level":
                table = TOP
            else:
                found = re.fullmatch(r"#### `(\[\[?[a-z_.]+\]\]?)`", line.strip())
                assert found, f"unexpected heading in {component}: {line!r}"
                table = found.group(1)
            assert table not in reference[component], f"{component}: {table or 'top level'} twice"
            reference[component][table] = {}
        elif line.startswith("| `") and component is not None and table is not None:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert len(cells) == 3, f"{component} {table}: a row has three cells: {line!r}"
            key = cells[0].strip("`")
            rows = reference[component][table]
            assert key not in rows, f"{component} {table}: {key} twice"
            rows[key] = Row(key, cells[1])
    return reference


@pytest.fixture(scope="module")
def reference() -> Reference:
    return parse_reference(DOC.read_text(encoding="utf-8"))


def children(tables: Mapping[str, object], parent: str) -> set[str]:
    """The last part of every table documented under ``parent`` (``[keys]`` has ``sign``)."""
    prefix = parent.strip("[]")
    found = set()
    for name in tables:
        inner = name.strip("[]")
        head, _, last = inner.rpartition(".")
        if name and head == prefix:
            found.add(last)
    return found


def documented(reference: Reference, component: str, table: str) -> set[str]:
    """Keys of ``table`` the reference names: its rows and its sub-tables."""
    tables = reference[component]
    assert table in tables, f"{DOC.name}: {component} does not document {table or 'its top level'}"
    return set(tables[table]) | children(tables, table)


# -- what the code reads ----------------------------------------------------------------


def _function(module: ModuleType, name: str, cls: str | None = None) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(module)))
    scope: list[ast.stmt] = tree.body
    if cls is not None:
        (klass,) = [n for n in scope if isinstance(n, ast.ClassDef) and n.name == cls]
        scope = klass.body
    (function,) = [n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name]
    return function


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keys_read(node: ast.AST, variable: str) -> set[str]:
    """Constant keys looked up on ``variable`` in ``node``: ``v["k"]``, ``v.get("k")``, ``"k" in v``."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == variable:
            key = _string(sub.slice)
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "get"
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == variable
            and sub.args
        ):
            key = _string(sub.args[0])
        elif (
            isinstance(sub, ast.Compare)
            and len(sub.ops) == 1
            and isinstance(sub.ops[0], ast.In | ast.NotIn)
            and isinstance(sub.comparators[0], ast.Name)
            and sub.comparators[0].id == variable
        ):
            key = _string(sub.left)
        else:
            continue
        if key is not None:
            found.add(key)
    return found


def _iterated_tables(function: ast.FunctionDef, owners: Mapping[str, str]) -> Iterator[tuple[str, set[str]]]:
    """Arrays of tables a loader loops over (``for s in keys.get("sign", [])``): the table, and
    the keys read on the loop variable inside that loop only."""
    for node in ast.walk(function):
        loops: list[tuple[ast.AST, ast.expr, ast.expr]] = []
        if isinstance(node, ast.For):
            loops.append((node, node.target, node.iter))
        elif isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
            loops.extend((node, generator.target, generator.iter) for generator in node.generators)
        for scope, target, source in loops:
            if not isinstance(target, ast.Name):
                continue
            if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute):
                holder, key = source.func.value, _string(source.args[0]) if source.args else None
            elif isinstance(source, ast.Subscript):
                holder, key = source.value, _string(source.slice)
            else:
                continue
            if isinstance(holder, ast.Name) and holder.id in owners and key is not None:
                parent = owners[holder.id].strip("[]")
                table = f"[[{parent + '.' if parent else ''}{key}]]"
                yield table, _keys_read(scope, target.id)


def gateway_keys() -> dict[str, set[str]]:
    """Every table of ``server.toml`` and the keys ``GatewayConfig.load`` reads in it."""
    build = _function(gateway.config, "_build")
    owners = {"raw": TOP, "keys": "[keys]"}
    keys = {table: _keys_read(build, variable) for variable, table in owners.items()}
    for table, read in _iterated_tables(build, owners):
        keys.setdefault(table, set()).update(read)
    for table, cls in GATEWAY_TABLES.items():
        keys.setdefault(table, set()).update(f.name for f in dataclasses.fields(cls))
    # Keys a table's own loader reads besides its dataclass's fields (shard_env).
    keys["[messagelog]"] |= _keys_read(_function(gateway.config, "_messagelog_settings"), "raw")
    return keys


def _set_literal(node: ast.AST) -> set[str]:
    assert isinstance(node, ast.Set), ast.dump(node)
    values = {_string(element) for element in node.elts}
    assert None not in values
    return {v for v in values if v is not None}


def _accepted_sets(function: ast.FunctionDef) -> dict[str, set[str]]:
    """``known = {...}`` and ``v.keys() - {...}`` in a loader: the keys it accepts, by variable."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and [_name(t) for t in node.targets] == ["known"]:
            found["known"] = _set_literal(node.value)
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Sub)
            and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Attribute)
            and node.left.func.attr == "keys"
            and isinstance(node.right, ast.Set)
        ):
            owner = _name(node.left.func.value)
            assert owner is not None
            found[owner] = _set_literal(node.right)
    return found


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


def registry_keys() -> dict[str, set[str]]:
    accepted = _accepted_sets(_function(registry.server, "load", "RegistrySettings"))
    tables = {
        "known": TOP,
        "signing": "[signing]",
        "entry": "[[signing.keys]]",
        "registration": "[registration]",
    }
    assert set(accepted) == set(tables), f"RegistrySettings.load checks keys of {sorted(accepted)}"
    return {tables[variable]: keys for variable, keys in accepted.items()}


def ocsp_keys() -> dict[str, set[str]]:
    accepted = _accepted_sets(_function(trust.service.ocsp_responder, "load", "OcspResponderSettings"))
    return {TOP: accepted["known"]}


def tsa_keys() -> dict[str, set[str]]:
    return {TOP: set(trust.service.tsa._KNOWN_KEYS)}


CODE_KEYS: dict[str, Callable[[], dict[str, set[str]]]] = {
    "server.toml": gateway_keys,
    "registry.toml": registry_keys,
    "ocsp.toml": ocsp_keys,
    "tsa.toml": tsa_keys,
}


# -- every option, in its section -------------------------------------------------------


def test_the_reference_covers_the_four_components(reference: Reference) -> None:
    assert set(reference) == set(COMPONENTS)


def test_every_gateway_settings_class_is_in_the_reference() -> None:
    settings = {
        name for name in gateway.config.__all__ if name.endswith("Settings") or name in ("Limits", "Listener")
    }
    assert settings == {cls.__name__ for cls in GATEWAY_TABLES.values()} - {"ServiceEntry"}


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_option_the_code_reads_is_documented_in_its_table(reference: Reference, component: str) -> None:
    code = CODE_KEYS[component]()
    for table, keys in code.items():
        assert documented(reference, component, table) == keys, (
            f"{DOC.name}, {component}, {table or 'top level'}: "
            f"missing {sorted(keys - documented(reference, component, table))}, "
            f"not in the code {sorted(documented(reference, component, table) - keys)}"
        )
    extra = set(reference[component]) - set(code)
    assert not extra, f"{DOC.name}, {component}: tables the code does not read: {sorted(extra)}"


def test_the_environment_variables_are_documented() -> None:
    assert f"`{EVENT_LOOP_ENV}`" in DOC.read_text(encoding="utf-8")


# -- defaults ---------------------------------------------------------------------------


def _plain(value: object) -> object:
    """A default as TOML would write it: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | frozenset):
        return [_plain(v) for v in value]
    return value


def _dataclass_defaults(cls: type[Any]) -> dict[str, object]:
    defaults: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


SETTINGS_CLASSES: list[tuple[str, str, type[Any]]] = [
    *(("server.toml", table, cls) for table, cls in GATEWAY_TABLES.items()),
    ("registry.toml", TOP, RegistrySettings),
    ("registry.toml", "[signing]", RegistrySettings),
    ("registry.toml", "[registration]", RegistrySettings),
    ("ocsp.toml", TOP, OcspResponderSettings),
    ("tsa.toml", TOP, TsaSettings),
]


@pytest.mark.parametrize(
    ("component", "table", "cls"),
    SETTINGS_CLASSES,
    ids=lambda x: (x or "top") if isinstance(x, str) else x.__name__,
)
def test_documented_defaults_are_the_dataclass_defaults(
    reference: Reference, component: str, table: str, cls: type[Any]
) -> None:
    defaults = _dataclass_defaults(cls)
    for key, row in reference[component][table].items():
        if key not in defaults:
            continue  # a key of another name in the dataclass: checked through the loader below
        default = defaults[key]
        where = f"{component} {table or 'top level'} {key}"
        if default is None:
            assert not row.has_value and not row.required, f"{where}: has no default, not {row.default!r}"
        elif row.has_value:
            assert row.value() == _plain(default), f"{where}: documented {row.value()!r}, code {default!r}"
        else:
            assert row.required, f"{where}: the code's default is {default!r}; document it"


# Loading: the smallest files each loader takes, with every required key; a component may
# have variants (the registry signs with one key, or with [[signing.keys]]).
PASSPHRASE_VARIABLE = "XWEG_TEST_PASSPHRASE"
ENVIRON = {PASSPHRASE_VARIABLE: "test passphrase"}
MINIMAL: dict[str, list[dict[str, Any]]] = {
    "server.toml": [
        {
            "server_id": "NRW/MUN/05774032/ss1",
            "anchor": "anchor.json",
            "client_listener": {"host": "127.0.0.1", "port": 5510},
            "peer_listener": {"host": "0.0.0.0", "port": 5511},
            "client_tls_listener": {"host": "127.0.0.1", "port": 5443},
            "management_listener": {"port": 5588},
            "keys": {
                "auth_key": "keys/auth.key",
                "auth_certificate": "keys/auth.pem",
                "sign": [
                    {"member": "NRW/MUN/05774032", "key": "keys/sign.key", "certificate": "keys/sign.pem"}
                ],
            },
            "clients": [{"id": "NRW/MUN/05774032/gewerbeamt"}],
            "services": [
                {"id": "NRW/MUN/05774032/gewerbeamt/anzeigen/v1", "base_url": "http://127.0.0.1:5601/"}
            ],
            "access": [
                {"service": "NRW/MUN/05774032/gewerbeamt/anzeigen", "clients": ["NRW/GOV/057/arbeitsschutz"]}
            ],
        }
    ],
    "registry.toml": [
        {"federation": "federation.toml", "signing": {"key": "keys/globalconf.key", "key_id": "2025-1"}},
        {
            "federation": "federation.toml",
            "signing": {"keys": [{"key": "keys/2025-1.key", "key_id": "2025-1"}]},
        },
    ],
    "ocsp.toml": [{"ca_dir": "ca", "passphrase_env": PASSPHRASE_VARIABLE}],
    "tsa.toml": [
        {
            "certificate": "tsa.pem",
            "key": "tsa.key",
            "serial_state": "serial.json",
            "passphrase_env": PASSPHRASE_VARIABLE,
        }
    ],
}
LOADERS: dict[str, Callable[[Path], object]] = {
    "server.toml": lambda path: GatewayConfig.load(path, ENVIRON),
    "registry.toml": lambda path: RegistrySettings.load(path, dict(ENVIRON)),
    "ocsp.toml": lambda path: OcspResponderSettings.load(path, ENVIRON),
    "tsa.toml": lambda path: TsaSettings.load(path, ENVIRON),
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r}")


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    lines = [
        f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list) or _scalars(v)
    ]
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", dump_toml(value, name + ".")]
        elif isinstance(value, list) and not _scalars(value):
            for entry in value:
                lines += ["", f"[[{name}]]", dump_toml(entry, name + ".")]
    return "\n".join(lines)


def _scalars(value: object) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict) for v in value)


def _entries(data: dict[str, Any], table: str, *, create: bool) -> list[dict[str, Any]]:
    """The dicts that hold ``table``'s keys in ``data`` (every entry of an array of tables)."""
    if table == TOP:
        return [data]
    array = table.startswith("[[")
    *parents, last = table.strip("[]").split(".")
    holder = data
    for parent in parents:
        holder = holder[parent]
    if array:
        entries = holder.get(last, [])
        assert isinstance(entries, list)
        return entries
    if last not in holder:
        if not create:
            return []
        holder[last] = {}
    entry = holder[last]
    assert isinstance(entry, dict)
    return [entry]


def _load(component: str, data: Mapping[str, Any], folder: Path) -> object:
    path = folder / component
    path.write_text(dump_toml(data) + "\n", encoding="utf-8")
    return LOADERS[component](path)


def _rows(kind: str) -> list[tuple[str, str, str]]:
    rows = parse_reference(DOC.read_text(encoding="utf-8"))
    picked = [
        (component, table, key)
        for component, tables in rows.items()
        for table, keys in tables.items()
        for key, row in keys.items()
        if (row.has_value if kind == "default" else row.required)
    ]
    assert picked
    return picked


def _row_id(value: str) -> str:
    return value or "top"


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_minimal_files_load(tmp_path: Path, component: str) -> None:
    for data in MINIMAL[component]:
        _load(component, data, tmp_path)


@pytest.mark.parametrize(("component", "table", "key"), _rows("default"), ids=_row_id)
def test_setting_an_option_to_its_documented_default_changes_nothing(
    reference: Reference, tmp_path: Path, component: str, table: str, key: str
) -> None:
    """Through the loader, so that defaults of ``.get(key, default)`` are checked too."""
    value = reference[component][table][key].value()
    for data in MINIMAL[component]:
        changed = copy.deepcopy(data)
        entries = _entries(changed, table, create=True)
        if not entries or any(key in entry for entry in entries):
            continue
        for entry in entries:
            entry[key] = value
        assert _load(component, changed, tmp_path) == _load(component, data, tmp_path), (
            f"{component} {table or 'top level'}: {key} = {value!r} is not the default"
        )
        return
    pytest.fail(f"no minimal {component} can hold {table} {key}: add one to MINIMAL")


@pytest.mark.parametrize(("component", "table", "key"), _rows("required"), ids=_row_id)
def test_a_required_option_is_required(tmp_path: Path, component: str, table: str, key: str) -> None:
    for data in MINIMAL[component]:
        if not any(key in entry for entry in _entries(data, table, create=False)):
            continue
        _load(component, data, tmp_path)
        without = copy.deepcopy(data)
        for entry in _entries(without, table, create=False):
            entry.pop(key, None)
        with pytest.raises((ValueError, TypeError, KeyError)):
            _load(component, without, tmp_path)
        return
    pytest.fail(f"no minimal {component} has {table or 'top level'} {key}: add it to MINIMAL")
