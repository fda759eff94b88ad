"""Convert MediaPipe's short-range BlazeFace model (TFLite) into ferlab's PyTorch weights (safetensors).

Run once by a maintainer; ferlab ships the result as ``src/ferlab/weights/blazeface_short_range.safetensors``
and needs neither mediapipe nor TFLite at run time. Needs the ``tflite`` package (the flatbuffer schema,
``pip install tflite``) and the model file, which is inside the mediapipe wheel:

    pip download --no-deps mediapipe==0.10.21 -d /tmp/mp
    unzip -j /tmp/mp/mediapipe-0.10.21-*.whl 'mediapipe/modules/face_detection/face_detection_short_range.tflite' -d /tmp/mp
    python tools/convert_blazeface.py /tmp/mp/face_detection_short_range.tflite src/ferlab/weights/blazeface_short_range.safetensors

The model is Apache-2.0 (Copyright Google LLC, https://github.com/google-ai-edge/mediapipe). Its weights are
stored as float16 and dequantized in the graph; they are converted to float32. The script walks the graph's
convolutions in order and assigns them to :class:`ferlab.faces.blazeface.BlazeFace`'s convolutions in module
order, checking every shape; if a TFLite interpreter is importable (``ai_edge_litert`` or ``tflite_runtime``)
it also compares the outputs of both on random input.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch


def tflite_convolutions(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, kernel, bias) of every CONV_2D / DEPTHWISE_CONV_2D in graph order, float32, TFLite layouts."""
    import tflite

    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16}

    def producer_inputs() -> dict[int, int]:  # DEQUANTIZE output tensor -> its float16 input tensor
        out = {}
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.DEQUANTIZE:
                out[int(op.Outputs(0))] = int(op.Inputs(0))
        return out

    deq = producer_inputs()

    def constant(index: int) -> np.ndarray:
        index = deq.get(index, index)
        t = graph.Tensors(index)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if not isinstance(data, np.ndarray) or t.Sparsity() is not None:
            raise SystemExit(f"{path}: tensor {t.Name().decode()} has no dense constant data")
        return data.view(dtypes[t.Type()]).reshape(t.ShapeAsNumpy()).astype(np.float32)

    kinds = {tflite.BuiltinOperator.CONV_2D: "conv", tflite.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise"}
    convs = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = kinds.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if kind:
            convs.append((kind, constant(int(op.Inputs(1))), constant(int(op.Inputs(2)))))
    return convs


def convert(path: Path) -> dict[str, torch.Tensor]:
    from ferlab.faces.blazeface import BlazeFace

    net = BlazeFace()
    targets = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    names = {id(m): n for n, m in net.named_modules()}
    convs = tflite_convolutions(path)
    if len(convs) != len(targets):
        raise SystemExit(f"{path}: {len(convs)} convolutions in the graph, BlazeFace has {len(targets)}")
    sd = {}
    for (kind, kernel, bias), conv in zip(convs, targets):
        # TFLite: conv OHWI, depthwise 1HWC; torch: OIHW, depthwise C1HW
        w = kernel.transpose(3, 0, 1, 2) if kind == "depthwise" else kernel.transpose(0, 3, 1, 2)
        if tuple(w.shape) != tuple(conv.weight.shape) or (kind == "depthwise") != (conv.groups > 1):
            raise SystemExit(
                f"{names[id(conv)]}: graph has {kind} {w.shape}, module wants {tuple(conv.weight.shape)}"
            )
        sd[f"{names[id(conv)]}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"{names[id(conv)]}.bias"] = torch.from_numpy(bias)
    net.load_state_dict(sd)  # strict: every parameter assigned
    return sd


def compare_with_tflite(path: Path, sd: dict[str, torch.Tensor]) -> float | None:
    """Largest absolute difference of the two models' outputs on random input; None without an interpreter."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    from ferlab.faces.blazeface import BlazeFace

    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    outs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    net = BlazeFace().eval()
    net.load_state_dict(sd)
    with torch.no_grad():
        scores, regs = net(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    return max(
        float(np.abs(outs["classificators"][0, :, 0] - scores[0].numpy()).max()),
        float(np.abs(outs["regressors"][0] - regs[0].numpy()).max()),
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tflite", type=Path, help="face_detection_short_range.tflite from the mediapipe wheel")
    p.add_argument("out", type=Path, help="output .safetensors")
    a = p.parse_args(argv)
    from safetensors.torch import save_file

    sd = convert(a.tflite)
    digest = hashlib.sha256(a.tflite.read_bytes()).hexdigest()
    meta = {
        "format": "ferlab-detector",
        "model": "blazeface_short_range",
        "source": "mediapipe==0.10.21 mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "source_sha256": digest,
        "license": "Apache-2.0 (Copyright Google LLC)",
    }
    save_file(sd, str(a.out), metadata=meta)
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {a.out}: {len(sd)} tensors, {n:,} parameters, from {a.tflite.name} (sha256 {digest[:12]})")
    diff = compare_with_tflite(a.tflite, sd)
    if diff is None:
        print("no TFLite interpreter installed: outputs not compared (pip install ai-edge-litert to check)")
    else:
        print(f"max |torch - tflite| on random input: {diff:.2e}")
        if diff > 1e-3:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
