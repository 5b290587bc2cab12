"""What of an export a GPU can run, read from its graph and TensorFlow's kernel registry."""

import collections
import json

import pytest
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2, node_def_pb2, types_pb2

from twostage.serving.diagnostics.placement import gpu_placement, has_gpu_kernel

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
    from twostage.serving.artifact.reexport import export_again

    return export_again(exported_model.export_path, IndexConfig(kind="brute-force"),
                        str(tmp_path_factory.mktemp("placement")))


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["scann", "brute-force"])
def test_no_serving_op_is_pinned_to_a_device(flavour, exported_model, brute_force_path):
    """Soft placement is then free to put the number work on a GPU and keep the rest on the
    CPU. (TensorFlow pins its own checkpoint functions to the CPU; no signature calls them.)"""
    path = exported_model.export_path if flavour == "scann" else brute_force_path
    placement = gpu_placement(path)
    assert sum(placement.gpu.values()) + sum(placement.cpu_only.values()) > 500 and not placement.pinned


@with_gpu_kernels
@pytest.mark.slow
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
@pytest.mark.slow
def test_the_scann_export_keeps_only_its_index_and_strings_off_the_gpu(exported_model):
    placement = gpu_placement(exported_model.export_path)
    assert any(op.startswith("Scann>") for op, _ in placement.cpu_only)  # ScaNN has CPU kernels only
    assert ("MatMul", "float32") in placement.gpu  # the towers and the rating model
    left = {op for op, dtype in placement.cpu_only if dtype != "string" and not op.startswith("Scann>")}
    # Its neighbours are compacted (the exclusions dropped) next to the search, on the CPU.
    assert left <= {"LookupTableFindV2", "RaggedGather", "ResourceGather", "RaggedTensorToTensor"}, left


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["scann", "brute-force"])
def test_no_conditional_is_kept_as_an_if_op(flavour, exported_model, brute_force_path):
    """An If op kept as a function (not lowered into the graph) is placed with every resource
    its branches read; on a GPU machine variables live on the GPU and hash tables on the CPU,
    and the call cannot be placed (seen on an H100). Lowered, each branch op is placed alone."""
    from twostage.serving.artifact.loading import read_meta_graph

    path = exported_model.export_path if flavour == "scann" else brute_force_path
    ifs = [node for function in read_meta_graph(path).graph_def.library.function
           for node in function.node_def if node.op in ("If", "StatelessIf")]
    assert ifs  # the serving graph has conditionals: this test looks at them
    kept = [node.name for node in ifs
            if "_lower_using_switch_merge" in node.attr and not node.attr["_lower_using_switch_merge"].b]
    assert not kept, kept


@pytest.mark.slow
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


@pytest.mark.slow
def test_traced_placement_reads_where_each_executed_op_ran(brute_force_path):
    """A traced Session run (TF Serving's way of running a signature) counts each executed
    op on its device, the ops of the conditional branches a request takes included."""
    from twostage.serving.diagnostics.placement import traced_placement
    from twostage.serving.clients.recommender import Recommender

    recommender = Recommender.load(brute_force_path)
    users = recommender.known_users()
    movies, _ = recommender.catalog()
    limits = recommender.limits
    traced = traced_placement(recommender.path, {
        "one_user": ("serving_default", limits.recommend(users[0], 10, None, None, False)),
        "new_user": ("serving_default", limits.recommend("no-such-user", 10, None, None, False)),
        "ratings": ("predict_rating", limits.ratings(users[:3].tolist(), movies[:3].tolist())),
    })
    assert list(traced) == ["one_user", "new_user", "ratings"]

    def executed(placement):  # op type -> executions, on whichever device
        return sum(map(collections.Counter, placement.ops.values()), collections.Counter())

    devices = {"GPU", "CPU"} if tf.config.list_physical_devices("GPU") else {"CPU"}
    for placement in traced.values():
        assert set(placement.ops) <= devices
        ran = executed(placement)
        # The rating layers: the first one's relu, then a matmul (+ bias + relu, fused or not).
        assert ran["Relu"] >= 1 and any("MatMul" in op for op in ran), ran
        assert not ({"Const", "Identity", "_Send", "_Recv"} & set(ran))  # plumbing is left out
        if devices == {"CPU"}:
            assert placement.copies == {}
    one_user, new_user = executed(traced["one_user"]), executed(traced["new_user"])
    assert one_user["TopKV2"] >= 1

    def matmuls(counts):
        return sum(n for op, n in counts.items() if "MatMul" in op)

    # Only a new user's request takes the conditional branch that runs the query tower.
    assert matmuls(new_user) > matmuls(one_user)
    assert traced["ratings"].as_dict()["copies_onto"] == traced["ratings"].copies
