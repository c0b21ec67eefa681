"""Which conf yaml line set a key of a composed config, and the comment on that line (tests/test_conf_defaults.py).

Hydra drops comments, so the files are read again: `yaml_keys` maps every key of a file (dotted, e.g.
`nodes.merge_threshold`) to the trailing comment of its line (and of the lines its value spans), and `composition`
lists the files that make up one config-group option in merge order, following its defaults list (same-group
includes such as store/eval -> store/lancedb, subgroups such as policy/mem0_offline -> policy/retriever/cosine,
`_self_`), with the chosen options taken from Hydra's runtime choices. The last file that sets a key wins.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from memtune.optimize.sweep.app import CONF_DIR

_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:(?:\s|$)(.*)$")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


def trailing_comment(text: str) -> str:
    """The comment at the end of a yaml line ('' if none): a '#' after whitespace, outside a quoted scalar."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"" and (i == 0 or text[i - 1] in " \t[,:{"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[i + 1 :].strip()
    return ""


def yaml_keys(path: Path) -> dict[str, str]:
    """{dotted key: trailing comment} of every mapping key in a block-style yaml file."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY.match(line)
        if match:
            indent = len(match[1])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match[2]))
            last = ".".join(key for _, key in stack)
            out[last] = trailing_comment(match[3])
        elif last is not None:  # a value spread over several lines (a flow list) or a defaults list entry
            out[last] = " ".join(c for c in (out[last], trailing_comment(line)) if c)
    return out


def package_of(path: Path, default: str) -> str:
    """The file's package: its `# @package` header (`_global_` -> the root, '') or the group's default."""
    for line in path.read_text().splitlines():
        match = _PACKAGE.match(line)
        if match:
            return "" if match[1] == "_global_" else match[1]
        if line.strip() and not line.startswith("#"):
            break
    return default


def composition(group: str, option: str, choices: dict, package: str | None = None) -> list[tuple[Path, str]]:
    """(file, package) of every yaml that makes up `group/option`, in merge order."""
    path = CONF_DIR / group / f"{option}.yaml"
    package = package_of(path, group.replace("/", ".") if package is None else package)
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults")
    if not defaults:
        return [(path, package)]
    if "_self_" not in defaults:
        raise ValueError(f"{path}: a defaults list without `_self_` (say where the file's own keys merge)")
    out: list[tuple[Path, str]] = []
    for entry in defaults:
        if entry == "_self_":
            out.append((path, package))
        elif isinstance(entry, str):  # another option of the same group, merged into the same package
            out += composition(group, entry, choices, package)
        else:
            ((key, value),) = entry.items()
            if key.startswith("override "):
                continue  # a choice: Hydra's runtime choices already hold it
            sub = key.removeprefix("optional ").strip()
            chosen = choices.get(f"{group}/{sub}", value)
            if chosen is not None:
                out += composition(f"{group}/{sub}", str(chosen), choices, f"{package}.{sub}".lstrip("."))
    return out


def source_of(files: list[tuple[Path, str]], key: str) -> tuple[Path, str] | None:
    """(file, trailing comment) of the last file in `files` that sets the absolute dotted `key`."""
    for path, package in reversed(files):
        if package and not key.startswith(package + "."):
            continue
        relative = key[len(package) + 1 :] if package else key
        keys = yaml_keys(path)
        if relative in keys:
            return path, keys[relative]
    return None
