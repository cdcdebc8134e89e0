"""Writes the serving tests' models and reference answers into a directory.

Usage: python make_models.py OUT_DIR

For each model NAME it writes NAME.onnx (what `skl2onnx` converts a fitted scikit-learn estimator
to), NAME.inputs.json (a few rows of input) and NAME.expected.json (ONNX Runtime's answers on them,
from Python: the reference the Rust runtime must match). It also writes an MLflow-style model
directory for the logistic regression (`logreg_mlflow/`: an `MLmodel` with the `onnx` flavour and a
signature, as `mlflow.onnx.log_model` writes it) and files a runtime must refuse.
"""

import json
import pathlib
import sys
import warnings

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def models():
    x, y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=7)
    x = x.astype(np.float32)
    xr, yr = make_regression(n_samples=400, n_features=6, noise=0.3, random_state=11)
    xr = xr.astype(np.float32)
    yield "logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x
    yield "forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=3).fit(x, y), x
    yield "gbr", GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=5).fit(xr, yr), xr
    yield "mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=1).fit(x, y), x


def main(out):
    # A small MLP that has not converged is still a fine model to serve.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    out.mkdir(parents=True, exist_ok=True)
    for name, estimator, x in models():
        # Probabilities as a plain tensor (no ZipMap), as a serving signature wants them.
        options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
        onx = to_onnx(estimator, x[:1], options=options, target_opset=17)
        path = out / f"{name}.onnx"
        path.write_bytes(onx.SerializeToString())
        rows = x[:5]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        answers = session.run(None, {input_name: rows})
        (out / f"{name}.inputs.json").write_text(json.dumps({input_name: {"shape": list(rows.shape), "data": rows.ravel().tolist()}}))
        expected = {}
        for meta, value in zip(session.get_outputs(), answers):
            value = np.asarray(value)
            expected[meta.name] = {"shape": list(value.shape), "dtype": str(value.dtype), "data": value.ravel().tolist()}
        (out / f"{name}.expected.json").write_text(json.dumps(expected))
    # An MLflow model directory with the onnx flavour, as mlflow.onnx.log_model writes it.
    mlflow_dir = out / "logreg_mlflow"
    mlflow_dir.mkdir(exist_ok=True)
    (mlflow_dir / "model.onnx").write_bytes((out / "logreg.onnx").read_bytes())
    signature_in = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 8]}}])
    signature_out = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}])
    (mlflow_dir / "MLmodel").write_text(
        "artifact_path: model\n"
        "flavors:\n"
        "  onnx:\n"
        "    code: null\n"
        "    data: model.onnx\n"
        "    onnx_version: 1.23.2\n"
        "    providers:\n"
        "    - CUDAExecutionProvider\n"
        "    - CPUExecutionProvider\n"
        "  python_function:\n"
        "    data: model.onnx\n"
        "    env:\n"
        "      conda: conda.yaml\n"
        "      virtualenv: python_env.yaml\n"
        "    loader_module: mlflow.onnx\n"
        "    python_version: 3.11.2\n"
        "mlflow_version: 3.17.2\n"
        "model_uuid: 0b5e7d4c1f2a4c3e9d8b7a6f5e4d3c2b\n"
        "signature:\n"
        f"  inputs: '{signature_in}'\n"
        f"  outputs: '{signature_out}'\n"
        "  params: null\n"
        "utc_time_created: '2026-12-07 12:00:00.000000'\n"
    )
    # Files a runtime must refuse, with a reason: not ONNX at all, and a truncated model.
    (out / "garbage.onnx").write_bytes(b"this is not an onnx model\n")
    (out / "truncated.onnx").write_bytes((out / "forest.onnx").read_bytes()[:200])


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
