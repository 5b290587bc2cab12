"""The house rules of the layout: one namespace, and imports that follow the data flow."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "data": r"retrieval|ranking|serving|cli|pipeline|evaluation",
    "retrieval": r"ranking|serving|cli|pipeline|evaluation",
    "ranking": r"retrieval|serving|cli|pipeline|evaluation",
    "serving": r"cli|pipeline|evaluation",
}


def test_imports_follow_the_data_flow():
    broken = []
    for folder, names in FORBIDDEN.items():
        pattern = re.compile(rf"^\s*(from|import)\s+(twostage\.)?({names})\b", re.M)
        for path in (ROOT / folder).rglob("*.py"):
            broken += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in pattern.finditer(path.read_text())]
    assert not broken, broken


def test_stages_are_installed_under_one_namespace():
    import twostage.data
    import twostage.ranking
    import twostage.retrieval
    import twostage.serving

    for module, folder in ((twostage.data, "data"), (twostage.retrieval, "retrieval"),
                           (twostage.ranking, "ranking"), (twostage.serving, "serving")):
        assert pathlib.Path(module.__file__).parent.name == folder


def test_the_package_selects_legacy_keras():
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras")
