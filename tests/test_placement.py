"""What of an export a GPU can run, read from its graph and TensorFlow's kernel registry."""

import json

import pytest
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2, node_def_pb2, types_pb2

from twostage.serving.placement import gpu_placement, has_gpu_kernel

with_gpu_kernels = pytest.mark.skipif(not tf.test.is_built_with_cuda(),
                                      reason="this TensorFlow registers no GPU kernels to read")


def _node(op: str, **types) -> node_def_pb2.NodeDef:
    return node_def_pb2.NodeDef(name="n", op=op, attr={name: attr_value_pb2.AttrValue(type=value)
                                                       for name, value in types.items()})


@with_gpu_kernels
def test_kernels_are_matched_by_the_node_types():
    assert has_gpu_kernel(_node("MatMul", T=types_pb2.DT_FLOAT))
    assert has_gpu_kernel(_node("TopKV2", T=types_pb2.DT_FLOAT))
    assert not has_gpu_kernel(_node("GatherV2", Tparams=types_pb2.DT_STRING, Tindices=types_pb2.DT_INT32,
                                    Taxis=types_pb2.DT_INT32))
    assert has_gpu_kernel(_node("GatherV2", Tparams=types_pb2.DT_FLOAT, Tindices=types_pb2.DT_INT32,
                                Taxis=types_pb2.DT_INT32))
    assert not has_gpu_kernel(_node("LookupTableFindV2", Tin=types_pb2.DT_STRING, Tout=types_pb2.DT_INT64))
    assert not has_gpu_kernel(_node("NoSuchOp"))


@pytest.fixture(scope="module")
def brute_force_path(exported_model, tmp_path_factory):
    from twostage.retrieval.config import IndexConfig
    from twostage.serving.reexport import export_again

    return export_again(exported_model.export_path, IndexConfig(kind="brute-force"),
                        str(tmp_path_factory.mktemp("placement")))


@pytest.mark.parametrize("flavour", ["scann", "brute-force"])
def test_no_serving_op_is_pinned_to_a_device(flavour, exported_model, brute_force_path):
    """Soft placement is then free to put the number work on a GPU and keep the rest on the
    CPU. (TensorFlow pins its own checkpoint functions to the CPU; no signature calls them.)"""
    path = exported_model.export_path if flavour == "scann" else brute_force_path
    placement = gpu_placement(path)
    assert sum(placement.gpu.values()) + sum(placement.cpu_only.values()) > 500 and not placement.pinned


@with_gpu_kernels
def test_a_gpu_can_run_all_the_brute_force_number_work(brute_force_path):
    """Every float op of every signature (catalog product, top-k, the rating layers) has a
    GPU kernel; what stays on the CPU is strings, hash tables, and int32 index gathers."""
    placement = gpu_placement(brute_force_path)
    on_gpu = {op for op, _ in placement.gpu}
    assert {"MatMul", "TopKV2", "Relu", "ResourceGather", "SelectV2"} <= on_gpu
    left = {(op, dtype) for op, dtype in placement.cpu_only if dtype != "string"}
    assert left <= {("LookupTableFindV2", "int64"), ("LookupTableFindV2", "int32"), ("RaggedGather", "int32"),
                    ("ResourceGather", "int32")}, left
    assert not any(dtype.startswith("float") for _, dtype in placement.cpu_only)


@with_gpu_kernels
def test_the_scann_export_keeps_only_its_index_and_strings_off_the_gpu(exported_model):
    placement = gpu_placement(exported_model.export_path)
    assert any(op.startswith("Scann>") for op, _ in placement.cpu_only)  # ScaNN has CPU kernels only
    assert ("MatMul", "float32") in placement.gpu  # the towers and the rating model
    left = {op for op, dtype in placement.cpu_only if dtype != "string" and not op.startswith("Scann>")}
    # Its neighbours are compacted (the exclusions dropped) next to the search, on the CPU.
    assert left <= {"LookupTableFindV2", "RaggedGather", "ResourceGather", "RaggedTensorToTensor"}, left


def test_gpu_check_command(brute_force_path, capsys):
    from twostage.cli import main

    assert main(["-q", "gpu-check", "--model", brute_force_path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["index"] == "brute-force" and report["gpu_nodes"] > 100 and report["pinned"] == []


def test_gpu_check_names_a_file_that_is_not_a_saved_model(tmp_path, capsys):
    from twostage.cli import main

    version = tmp_path / "twostage" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not a protocol buffer")
    assert main(["-q", "gpu-check", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "saved_model.pb: cannot read the SavedModel" in err and "Traceback" not in err
