"""The house rules of the layout: one namespace, and an allow-list of what each layer may import.

Data flows one way: data -> modeling -> retrieval / ranking -> serving -> the application
(twostage/: pipeline, evaluation, report, explore, ui, cli) and the benchmarks. Every Python
file of the package and of benchmarks/ falls under one rule below; a new folder needs one.
"""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVERYTHING = ("",)
# Folder or file (relative to the repository) -> the twostage modules its files may import
# (a dotted prefix under twostage; "" allows every one). The longest matching rule applies.
ALLOWED = {
    "data": ("data",),
    "modeling": ("data", "modeling"),
    "retrieval": ("data", "modeling", "retrieval"),
    "ranking": ("data", "modeling", "ranking"),
    "serving": ("data", "serving.config", "serving.requests", "serving.responses", "serving.clients"),
    "serving/graph": ("data", "retrieval", "ranking", "serving.config", "serving.requests", "serving.graph"),
    "serving/artifact": ("data", "retrieval", "ranking", "serving.config", "serving.requests", "serving.responses",
                         "serving.graph", "serving.artifact"),
    "serving/clients": ("data", "serving.config", "serving.requests", "serving.responses", "serving.graph.inputs",
                        "serving.artifact", "serving.clients"),
    "serving/diagnostics": ("data", "serving.graph.inputs", "serving.artifact.loading", "serving.diagnostics"),
    "twostage/__init__.py": ("serving.clients",),
    "twostage/__main__.py": ("cli",),
    "twostage/blend.py": ("data", "retrieval.train", "serving.graph.candidate_ranking"),
    "twostage/pipeline.py": ("data", "modeling.distribute", "modeling.distribute_config", "modeling.training",
                             "retrieval", "ranking", "serving",
                             "blend"),
    "twostage/benchmark.py": ("data", "modeling.training", "ranking"),
    "twostage/evaluation.py": ("data", "serving.clients", "pipeline"),
    "twostage/report.py": ("data", "ranking", "serving.artifact.layout", "serving.clients", "evaluation",
                           "benchmark"),
    "twostage/describe.py": ("data", "serving.artifact.layout", "serving.clients", "blend"),
    "twostage/explore.py": ("data", "serving.artifact", "serving.clients", "pipeline"),
    "twostage/ui.py": ("data", "serving.clients"),
    "twostage/cli.py": EVERYTHING,
    "twostage/arguments.py": ("modeling.distribute_config",),  # no TensorFlow: --help stays quick
    "benchmarks": ("data", "modeling", "retrieval", "ranking", "serving", "pipeline", "evaluation", "blend", "ui"),
}
FOLDERS = ("data", "modeling", "retrieval", "ranking", "serving", "twostage", "benchmarks")


def _rule(path: pathlib.Path):
    relative = path.relative_to(ROOT).as_posix()
    matches = [key for key in ALLOWED if relative == key or relative.startswith(key + "/")]
    return max(matches, key=len) if matches else None


def _twostage_imports(path: pathlib.Path):
    """(line, module under twostage) for each import of a twostage module ("" for the package itself)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "twostage" else [f"twostage.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "twostage" or name.startswith("twostage."):
                yield node.lineno, name[len("twostage."):] if name != "twostage" else ""


def _allowed(module: str, prefixes) -> bool:
    return module == "" or any(p == "" or module == p or module.startswith(p + ".") for p in prefixes)


def test_every_import_is_on_its_layers_allow_list():
    broken, uncovered = [], []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rule = _rule(path)
            if rule is None:
                uncovered.append(str(path.relative_to(ROOT)))
                continue
            broken += [f"{path.relative_to(ROOT)}:{line}: twostage.{module} (allowed: {ALLOWED[rule]})"
                       for line, module in _twostage_imports(path) if not _allowed(module, ALLOWED[rule])]
    assert not uncovered, f"no layout rule covers {uncovered}"
    assert not broken, "\n".join(broken)


def test_the_checker_catches_an_import_against_the_flow(tmp_path):
    """The allow-list check is not vacuous: a data module importing a stage fails it."""
    rogue = tmp_path / "rogue.py"
    rogue.write_text("import numpy\nfrom twostage.retrieval.model import QueryTower\nfrom twostage import blend\n")
    assert list(_twostage_imports(rogue)) == [(2, "retrieval.model"), (3, "blend")]
    data_rule = ALLOWED[_rule(ROOT / "data" / "rogue.py")]
    assert not _allowed("retrieval.model", data_rule) and _allowed("data.schema", data_rule)


def test_layers_are_installed_under_one_namespace():
    import twostage.data
    import twostage.modeling
    import twostage.ranking
    import twostage.retrieval
    import twostage.serving

    for module, folder in ((twostage.data, "data"), (twostage.modeling, "modeling"), (twostage.retrieval, "retrieval"),
                           (twostage.ranking, "ranking"), (twostage.serving, "serving")):
        assert pathlib.Path(module.__file__).parent.name == folder


def test_the_rest_client_imports_no_tensorflow():
    """The REST client is documented as standard library (and numpy) only."""
    code = ("import sys; from twostage.serving.clients.rest import RestClient; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'scann')); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_source_file_is_long():
    long = [f"{p.relative_to(ROOT)}: {n}" for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 370]
    assert not long, long


def test_the_package_selects_legacy_keras():
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras")
