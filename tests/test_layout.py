"""The source tree's rules, read from the syntax tree (nothing is imported): the runtime policy (policies/) never
imports the tuning stack (optimize/) or the servers (serve/); no source file is over 300 lines; the packages use
relative imports; and every stage variant in conf/policy/ has the members its interface (stages/protocols.py) names."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import dspy
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from memtune.policies.stages import protocols

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("policies", "optimize", "serve")
MAX_LINES = 300
# MLflow copies this file into a model and runs it as a script, outside the package: it must import absolutely
ABSOLUTE_OK = {"memtune/optimize/export/pyfunc_model.py"}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / "memtune" / package).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(text: str, module: str) -> set[str]:
    """Absolute names of every module an import statement in `text` names (relative ones resolved from `module`)."""
    package = module.split(".")[:-1]  # a module's own package (an __init__ is its package's module: the same)
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                found.add(".".join(base + ([node.module] if node.module else [])))
                found |= {".".join(base + [node.module or "", a.name]).replace("..", ".") for a in node.names}
            else:
                found.add(node.module or "")
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_resolver_sees_relative_and_absolute_imports():
    text = "from ...optimize.sweep import app\nfrom ..types import Scope\nimport memtune.serve.cli\nfrom . import x\n"
    found = imported_modules(text, "memtune.policies.store.writes")
    assert {"memtune.optimize.sweep", "memtune.optimize.sweep.app", "memtune.policies.types"} <= found
    assert {"memtune.serve.cli", "memtune.policies.store.x"} <= found


def test_policies_import_nothing_from_optimize_or_serve():
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("policies")
        for name in sorted(imported_modules(path.read_text(), module_name(path)))
        if name.startswith(("memtune.optimize", "memtune.serve", "optimize.", "serve."))
    ]
    assert len(sources("policies")) > 40
    assert bad == [], "the runtime policy must not depend on the tuning stack or the servers:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_source_file_is_over_300_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in sources(package) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these by job (at most {MAX_LINES} lines a file): {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_each_other_relatively(package):
    """`from ...policies.store.store import MemoryStore`, not `from memtune.policies...`: one spelling inside the
    package, which static tools resolve from the folder tree alone."""
    absolute = []
    for path in sources(package):
        if str(path.relative_to(ROOT)) in ABSOLUTE_OK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            absolute += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "memtune" or n.startswith("memtune.")]
    assert absolute == []


def test_the_installed_package_is_the_tree_on_disk():
    """memtune/<package> is a plain folder (what Python, mypy and import maps read); <package>/ at the top is a
    symlink into it, so short paths (policies/stages/extract.py) name the same files."""
    import memtune.policies

    assert Path(memtune.policies.__file__).resolve() == ROOT / "memtune" / "policies" / "__init__.py"
    for package in (*PACKAGES, "conf"):
        folder, link = ROOT / "memtune" / package, ROOT / package
        assert folder.is_dir() and not folder.is_symlink(), package
        assert link.is_symlink() and link.resolve() == folder, package


STAGES = {
    "extractor": protocols.Extractor,
    "summarizer": protocols.Summarizer,
    "decider": protocols.Decider,
    "retriever": protocols.Retriever,
    "answerer": protocols.Answerer,
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_variant_has_the_members_its_interface_names(stage):
    variants = sorted((ROOT / "memtune" / "conf" / "policy" / stage).glob("*.yaml"))
    assert variants, stage
    for path in variants:
        built = instantiate(OmegaConf.load(path))
        assert isinstance(built, STAGES[stage]), f"{path.relative_to(ROOT)}: {type(built).__name__}"


def parameters(function) -> list[str]:
    names = list(inspect.signature(function).parameters)
    return names[1:] if names and names[0] == "self" else names


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_variant_takes_the_arguments_its_interface_names(stage):
    """Not only the member names: the policy calls each method with the Protocol's parameters (and no meter)."""
    protocol = STAGES[stage]
    methods = [n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert methods and all("meter" not in parameters(getattr(protocol, m)) for m in methods)
    for path in sorted((ROOT / "memtune" / "conf" / "policy" / stage).glob("*.yaml")):
        built = instantiate(OmegaConf.load(path))
        for method in methods:
            assert parameters(getattr(built, method)) == parameters(getattr(protocol, method)), (
                f"{path.relative_to(ROOT)}: {type(built).__name__}.{method}"
            )


def test_every_llm_stage_variant_is_a_program_with_a_phase():
    """Every conf'd stage that is a dspy.Module (the graph's too) is an `LLMStage`: a phase name for the cost meter
    and a forward() on plain data, with no meter among its parameters."""
    llm = []
    for path in sorted((ROOT / "memtune" / "conf" / "policy").rglob("*.yaml")):
        node = OmegaConf.load(path)
        if "_target_" not in node or not str(node._target_).startswith("memtune.policies.") or "mode" in node:
            continue
        built = instantiate(node)
        if isinstance(built, dspy.Module):
            llm.append(type(built).__name__)
            assert isinstance(built, protocols.LLMStage) and isinstance(built.phase, str), path
            assert "meter" not in parameters(built.forward), path
    assert sorted(llm) == sorted(
        {
            "LLMExtractor",
            "LLMSummarizer",
            "LLMDecider",
            "LLMAnswerer",
            "LLMEntityExtractor",
            "LLMRelationGenerator",
            "LLMConflictResolver",
        }
    )
