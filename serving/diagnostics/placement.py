"""Which ops of an export a GPU can run: read from the SavedModel and this TensorFlow's kernels.

TensorFlow's placer puts an op on a GPU when the op is not pinned elsewhere and a GPU kernel
is registered for it with the node's types; otherwise it stays on the CPU (soft placement).
This reads the serving signatures' graphs (every function they call, however deep) and
asks the kernel registry of the running TensorFlow, so it answers on a machine without a
GPU too: the pip TensorFlow registers its CUDA kernels whether or not a GPU is present.
It does not see what the placer does beyond that (colocating an op with the variable it
reads, keeping small int32 tensors in host memory), which only a run shows:
:func:`traced_placement` runs signatures the way TF Serving does (a Session over the
SavedModel) and reads where each executed op ran from the run's trace.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Dict, Iterable, Mapping, Optional, Tuple

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.framework import errors, kernels

from twostage.serving.artifact.loading import read_meta_graph, register_custom_ops
from twostage.serving.graph.inputs import SIGNATURE_FUNCTIONS

# The attr that names an op's main element type, first match wins: what the report groups
# ops by (a string gather and a float gather place differently).
_TYPE_ATTRS = ("T", "dtype", "Tparams", "Tvalues", "Tout", "SrcT")
# Kernels registered for any device (If, PartitionedCall, Identity, ...).
_ANY_DEVICE = "DEFAULT"


@dataclasses.dataclass
class GpuPlacement:
    """The serving graph's ops by whether this TensorFlow has a GPU kernel for them.

    Attributes:
      gpu: (op type, element type) -> node count, for nodes a GPU kernel matches.
      cpu_only: the same for nodes no GPU kernel matches (or whose op this process does not
        know, such as ScaNN's when ``scann`` is not imported).
      pinned: (function, node) of nodes the export pins to a device.
    """

    gpu: Dict[Tuple[str, str], int]
    cpu_only: Dict[Tuple[str, str], int]
    pinned: list

    @property
    def kernels_known(self) -> bool:
        """Whether this TensorFlow registers GPU kernels at all (else every node reads as
        CPU only, whatever a GPU build would do)."""
        return tf.test.is_built_with_cuda()

    def as_dict(self) -> dict:
        def table(counts):
            return {f"{op}[{dtype}]" if dtype else op: n for (op, dtype), n in sorted(counts.items())}
        return {"gpu_kernels_known": self.kernels_known, "gpu_nodes": sum(self.gpu.values()),
                "cpu_only_nodes": sum(self.cpu_only.values()), "cpu_only": table(self.cpu_only),
                "pinned": [f"{f}/{n}" for f, n in self.pinned]}


def _element_type(node) -> str:
    for name in _TYPE_ATTRS:
        attr = node.attr.get(name)
        if attr is not None and attr.WhichOneof("value") == "type" and attr.type != types_pb2.DT_INVALID:
            return tf.dtypes.as_dtype(attr.type).name
    return ""


_KERNELS: Dict[str, list] = {}


def _gpu_kernels(op: str) -> list:
    if op not in _KERNELS:
        try:
            registered = kernels.get_registered_kernels_for_op(op).kernel
        except errors.NotFoundError:  # an op this process never registered
            registered = []
        _KERNELS[op] = [k for k in registered if k.device_type in ("GPU", _ANY_DEVICE)]
    return _KERNELS[op]


def has_gpu_kernel(node) -> bool:
    """Whether a GPU kernel is registered for ``node`` (a NodeDef) with its attrs' types."""
    for kernel in _gpu_kernels(node.op):
        if all(_allowed(node.attr.get(c.name), set(c.allowed_values.list.type)) for c in kernel.constraint):
            return True
    return False


def _allowed(attr, allowed: set) -> bool:
    if attr is None or not allowed:
        return True
    kind = attr.WhichOneof("value")
    if kind == "type":
        return attr.type in allowed
    if kind == "list":
        return all(t in allowed for t in attr.list.type)
    return True  # a placeholder bound where the function is called


def _called(node) -> Iterable[str]:
    for attr in node.attr.values():
        if attr.HasField("func"):
            yield attr.func.name
        yield from (f.name for f in attr.list.func)


def _serving_functions(meta_graph, signatures: Iterable[str]) -> list:
    """The FunctionDefs the signatures run: the call nodes their outputs come from, and
    everything those call, however deep."""
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    pending = []
    for name in signatures:
        for output in meta_graph.signature_def[name].outputs.values():
            node = nodes.get(output.name.split(":")[0])
            if node is not None:
                pending.extend(_called(node))
    found = {}
    while pending:
        name = pending.pop()
        if name in found or name not in library:
            continue
        found[name] = library[name]
        for node in library[name].node_def:
            pending.extend(_called(node))
    return list(found.values())


def gpu_placement(export_dir: str, signatures: Optional[Iterable[str]] = None) -> GpuPlacement:
    """What of an export's serving graph a GPU can run, by this TensorFlow's kernels.

    Args:
      export_dir: a SavedModel folder (one version).
      signatures: the signatures to read (default: every one the export serves).

    Returns:
      GpuPlacement.
    """
    meta_graph = read_meta_graph(export_dir)
    names = [name for name in (signatures or SIGNATURE_FUNCTIONS) if name in meta_graph.signature_def]
    gpu, cpu_only, pinned = collections.Counter(), collections.Counter(), []
    for function in _serving_functions(meta_graph, names):
        for node in function.node_def:
            (gpu if has_gpu_kernel(node) else cpu_only)[(node.op, _element_type(node))] += 1
            if node.device:
                pinned.append((function.signature.name, node.name))
    return GpuPlacement(dict(gpu), dict(cpu_only), pinned)


# A device's name, as opposed to the GPU tracer's rows under it (".../GPU:0/stream:all").
_DEVICE = re.compile(r"/device:([A-Z_]+):\d+$")
# Nodes that move tensors between devices (one per tensor that crosses) ...
_COPY_OPS = ("_Recv", "_HostRecv")
# ... and the ones that only wire a graph together; neither is work a device does.
_PLUMBING_OPS = frozenset({"_Send", "_HostSend", "_Arg", "_Retval", "_DeviceArg", "_DeviceRetval", "NoOp",
                           "Identity", "IdentityN", "Const"})


@dataclasses.dataclass
class TracedPlacement:
    """Where the ops of one signature call ran, read from the call's trace.

    Attributes:
      ops: device type ("CPU", "GPU") -> op type -> executions in the call, plumbing
        (constants, identities, argument and send nodes) left out. The ops of functions the
        graph calls (conditional branches, nested calls) count where they ran.
      copies: device type -> tensor edges into that device from another one in the graph
        the Session ran (a copy each time a request takes one; untaken branches' included).
    """

    ops: Dict[str, Dict[str, int]]
    copies: Dict[str, int]

    def as_dict(self) -> dict:
        return {"ops": {device: dict(sorted(ops.items())) for device, ops in sorted(self.ops.items())},
                "copies_onto": dict(sorted(self.copies.items()))}


def _executed_ops(metadata) -> Dict[str, Dict[str, int]]:
    """device type -> op type -> executions, from a traced run's step stats."""
    ops = collections.defaultdict(collections.Counter)
    for device_stats in metadata.step_stats.dev_stats:
        device = _DEVICE.search(device_stats.device)
        if device is None:
            continue  # the GPU tracer's rows (".../GPU:0/stream:all", "/sync"): the same ops, seen from the GPU
        for node_stats in device_stats.node_stats:
            # The trace names each executed node "name = Op(inputs)".
            label = node_stats.timeline_label.split(" = ", 1)
            op = label[1].split("(", 1)[0] if len(label) == 2 else ""
            if op and op not in _PLUMBING_OPS and op not in _COPY_OPS:
                ops[device.group(1)][op] += 1
    return {device: dict(counts) for device, counts in ops.items()}


def _cross_device_edges(metadata) -> Dict[str, int]:
    """device type -> edges into it from another device, from a run's graph partitions. A
    Session inlines the functions a signature calls and lowers its conditionals, so the
    partitions hold every such edge: a receive node each."""
    edges = collections.Counter()
    for partition in metadata.partition_graphs:
        for node in partition.node:
            device = _DEVICE.search(node.device) if node.op in _COPY_OPS else None
            if device is not None:
                edges[device.group(1)] += 1
    return dict(edges)


def traced_placement(version_dir: str,
                     requests: Mapping[str, Tuple[str, Mapping[str, object]]]) -> Dict[str, TracedPlacement]:
    """Runs each request through its signature as TF Serving does, and reads which device
    ran each op from the run's trace.

    The SavedModel is loaded into a TF1 Session, TF Serving's way of running one: its
    placer and graph optimisations are the ones a server applies. Each request runs twice,
    the second time traced, so the trace holds the steady state, not the first run's
    set-up.

    Args:
      version_dir: one version of an export.
      requests: a label -> (signature name, {input name: value}); inputs left out take
        the SignatureDef's defaults.

    Returns:
      label -> TracedPlacement, in the order given.
    """
    register_custom_ops(version_dir)
    options = config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE, output_partition_graphs=True)
    traced = {}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], version_dir)
        for label, (name, inputs) in requests.items():
            signature = meta_graph.signature_def[name]
            feed = {signature.inputs[key].name: value for key, value in inputs.items()}
            fetch = {key: value.name for key, value in signature.outputs.items()}
            session.run(fetch, feed)
            metadata = config_pb2.RunMetadata()
            session.run(fetch, feed, options=options, run_metadata=metadata)
            traced[label] = TracedPlacement(_executed_ops(metadata), _cross_device_edges(metadata))
    return traced
