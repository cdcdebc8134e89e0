#!/usr/bin/env bash
# Runs every Plinth test, as CI does:
#   1. starts PostgreSQL and Redis if they are not running (the storage conformance suite runs on PostgreSQL
#      and SQLite, the online-store conformance suite on Redis and redb);
#   2. builds the workspace and runs every Rust test (unit, conformance, black-box tests of the binary;
#      the serving runtime's tests on models made by scikit-learn/skl2onnx in a virtualenv of their
#      own, whose pinned onnxruntime wheel also provides the ONNX Runtime library Plinth loads);
#   3. creates/updates the Python virtualenvs with the pinned real clients and runs the compatibility
#      suites against the real binary: tests/compat (mlflow-skinny), tests/serving (tritonclient,
#      onnxruntime) and tests/feast (feast, pyarrow, pandas, mlflow-skinny; a virtualenv of its own
#      because Feast pins pandas < 3);
#   4. runs every shell and Python example of README.md and docs/ against the real binary (tests/docs,
#      in the Feast suite's virtualenv, which has what the examples import).
# Builds go to $CARGO_TARGET_DIR (default: $HOME/.cache/plinth/target) so they survive between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/plinth/target}"
export PLINTH_TEST_POSTGRES_URL="${PLINTH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PLINTH_TEST_REDIS_URL="${PLINTH_TEST_REDIS_URL:-redis://127.0.0.1:6379/}"
# The fault tests mount a small tmpfs and start their own Redis and PostgreSQL; as root (CI) a
# missing right or binary is a failure, not a skip.
if [ "$(id -u)" = "0" ]; then export PLINTH_TEST_FAULTS_REQUIRED=1; fi
VENV="${PLINTH_COMPAT_VENV:-$HOME/.cache/plinth/venv-compat}"
FEAST_VENV="${PLINTH_FEAST_VENV:-$HOME/.cache/plinth/venv-feast}"
SERVING_VENV="${PLINTH_SERVING_VENV:-$HOME/.cache/plinth/venv-serving}"

step() { printf '\n==> %s\n' "$*"; }

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
    step "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        for version in $(ls /etc/postgresql 2>/dev/null); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
    fi
    for _ in $(seq 1 120); do
        if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "PostgreSQL is not reachable at 127.0.0.1:5432; the conformance suite needs it" >&2
    exit 1
}

redis_up() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
    else
        (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null
    fi
}

ensure_redis() {
    if redis_up; then return 0; fi
    step "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 60); do
        if redis_up; then return 0; fi
        sleep 0.5
    done
    echo "Redis is not reachable at 127.0.0.1:6379; the online-store conformance suite needs it" >&2
    exit 1
}

# ensure_venv DIR REQUIREMENTS: creates DIR and installs the pinned REQUIREMENTS when they changed.
ensure_venv() {
    local venv="$1" requirements="$2"
    local stamp="$venv/.requirements.sha256"
    local want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ]; then
        step "creating the virtualenv $venv"
        python3 -m venv "$venv"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        step "installing the pinned packages of $requirements"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        echo "$want" > "$stamp"
    fi
}

ensure_postgres
ensure_redis

step "building (target dir: $CARGO_TARGET_DIR)"
cargo build --workspace --all-targets --locked

step "formatting and lints (warnings are errors)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

ensure_venv "$SERVING_VENV" tests/serving/requirements.txt
step "making the serving tests' models (scikit-learn + skl2onnx) and their reference answers (onnxruntime)"
export PLINTH_TEST_ONNX_MODELS="$CARGO_TARGET_DIR/serving-models"
"$SERVING_VENV/bin/python" tests/serving/make_models.py "$PLINTH_TEST_ONNX_MODELS"
ORT_DYLIB_PATH=$(ls "$SERVING_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
export ORT_DYLIB_PATH PLINTH_TEST_SERVING_REQUIRED=1

step "Rust tests (SQLite and PostgreSQL conformance, black-box tests of the binary, the ONNX runtime)"
cargo test --workspace --locked

ensure_venv "$VENV" tests/compat/requirements.txt
step "MLflow compatibility suite (real mlflow-skinny client against the real binary)"
export PLINTH_BIN="$CARGO_TARGET_DIR/debug/plinth"
"$VENV/bin/python" -m pytest -c tests/compat/pytest.ini --rootdir tests/compat -q tests/compat

step "Serving compatibility suite (real tritonclient over HTTP and gRPC, and MLflow's scoring payloads, against the real binary; answers checked against onnxruntime and MLflow)"
"$SERVING_VENV/bin/python" -m pytest -c tests/serving/pytest.ini --rootdir tests/serving -q tests/serving

ensure_venv "$FEAST_VENV" tests/feast/requirements.txt
step "Feast compatibility suite (real feast SDK, pyarrow and mlflow-skinny against the real binary)"
"$FEAST_VENV/bin/python" -m pytest -c tests/feast/pytest.ini --rootdir tests/feast -q tests/feast

step "Docs examples (every shell and Python block of README.md and docs/, against the real binary)"
"$FEAST_VENV/bin/python" -m pytest -c tests/docs/pytest.ini --rootdir tests/docs -q tests/docs
