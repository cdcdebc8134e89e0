#!/usr/bin/env python3
"""Training-jobs benchmark: Plinth's local executor, and Ray Jobs side by side when asked.

Measures, on one machine:

  submit -> RUNNING   a trivial job (`sleep`), from the POST to the job's processes running:
                      the server's own timestamps (created_at -> started_at) and the client's
                      (request sent -> first GET that says running, polled every 5 ms)
  cancel              from the cancel request to the job's process gone (a running job), and to the
                      job ended (a queued job, an admitted job waiting for a device)
  admission at scale  10,000 jobs queued over 4 cluster queues whose quota admits one job each:
                      the submission rate, the admission cycle's decision time with 10,000 pending
                      (plinth_jobs_admission_cycle_duration_seconds), and, as running jobs are
                      cancelled one by one, the time until the next job of the queue is admitted
  Ray Jobs            (--with-ray) the same trivial job through Ray's Jobs REST API on a local head
                      node (ray[default], pinned in bench/requirements-ray.txt): submission to
                      RUNNING, and stopping a RUNNING job and a PENDING one

Usage (see bench/README.md, "Jobs benchmark"):

    python3 bench/jobs.py [--with-ray] [--plinth-bin PATH] [--jobs N] [--queued N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking as common  # noqa: E402  (bench/tracking.py: venv bootstrap, server processes, builds)
from tracking import BenchFailure, SetupError, log, percentile  # noqa: E402

HERE = Path(__file__).resolve().parent
RAY_REQUIREMENTS = HERE / "requirements-ray.txt"
VENV = common.CACHE_DIR / "venv-bench-jobs"
requests: Any = None

QUEUES = """
[[flavors]]
name = "default"
{queues}
"""

CLUSTER_QUEUE = """
[[cluster_queues]]
name = "{name}"
[[cluster_queues.resource_groups]]
resources = ["cpu", "memory"]
flavors = [{{ name = "default", cpu = {{ nominal = {cpus} }}, memory = {{ nominal = "64Gi" }} }}]
[[local_queues]]
name = "{name}"
cluster_queue = "{name}"
"""


def queues_text(specs: list[tuple[str, int]]) -> str:
    return QUEUES.format(queues="".join(CLUSTER_QUEUE.format(name=n, cpus=c) for n, c in specs))


class Plinth:
    def __init__(self, url: str):
        self.url = url
        self.s = requests.Session()

    def call(self, method: str, path: str, body: Any = None) -> dict:
        r = self.s.request(method, self.url + path, json=body, timeout=60)
        if r.status_code != 200:
            raise BenchFailure(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def submit(self, queue: str, command: list[str], cpus: float = 1) -> dict:
        return self.call("POST", "/api/plinth/v1/jobs", {"command": command, "queue": queue, "resources": {"cpus": cpus}})["job"]

    def job(self, job_id: int) -> dict:
        return self.call("GET", f"/api/plinth/v1/jobs/{job_id}")["job"]

    def wait(self, job_id: int, states: tuple[str, ...], timeout: float = 60, poll: float = 0.005) -> tuple[dict, float]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job, time.monotonic()
            if time.monotonic() > deadline:
                raise BenchFailure(f"job {job_id} never reached {states}: {job['state']}")
            time.sleep(poll)

    def metric(self, name: str) -> float:
        text = self.s.get(self.url + "/metrics", timeout=30).text
        m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise BenchFailure(f"process {pid} still alive {timeout} s after the cancel")
        time.sleep(0.001)
    return time.monotonic()


def first_line(api: Plinth, job_id: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = api.s.get(f"{api.url}/api/plinth/v1/jobs/{job_id}/logs", timeout=30).text
        if "\n" in text:
            return text.split("\n", 1)[0].split(" ", 2)[2]
        time.sleep(0.005)
    raise BenchFailure(f"job {job_id} printed nothing")


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}


def plinth_phase(binary: Path, root: Path, jobs: int, queued: int) -> dict:
    workdir = root / "plinth"
    workdir.mkdir()
    config = workdir / "plinth.toml"
    config.write_text("[jobs]\nstop_grace_ms = 5000\n")
    srv = common.plinth_server(binary, workdir)
    srv.argv += ["--config", str(config)]
    srv.start(120)
    out: dict = {}
    try:
        api = Plinth(srv.url)
        api.call("PUT", "/api/plinth/v1/queues", {"text": queues_text([("bench", 64), ("full", 1)])})
        # Submission to RUNNING, one job at a time.
        server_ms, client_ms = [], []
        for _ in range(jobs):
            t0 = time.monotonic()
            job = api.submit("bench", ["sleep", "0.2"], cpus=1)
            running, t1 = api.wait(job["id"], ("running", "succeeded", "failed"))
            if running["state"] == "failed":
                raise BenchFailure(f"a trivial job failed: {running['last_end']}")
            client_ms.append((t1 - t0) * 1000)
            server_ms.append(running["started_at"] - running["created_at"])
        out["submit_to_running_server_ms"] = summary(server_ms)
        out["submit_to_running_client_ms"] = summary(client_ms)
        # Cancel: running (to the process gone), queued (to the job ended).
        running_ms, queued_ms = [], []
        for _ in range(max(5, jobs // 4)):
            job = api.submit("bench", ["sh", "-c", "echo $$; exec sleep 600"], cpus=1)
            api.wait(job["id"], ("running",))
            pid = int(first_line(api, job["id"]))
            t0 = time.monotonic()
            api.call("POST", f"/api/plinth/v1/jobs/{job['id']}/cancel")
            running_ms.append((wait_gone(pid) - t0) * 1000)
            api.wait(job["id"], ("cancelled",))
        blocker = api.submit("full", ["sleep", "600"], cpus=1)
        api.wait(blocker["id"], ("running",))
        for _ in range(max(5, jobs // 4)):
            job = api.submit("full", ["true"], cpus=1)
            t0 = time.monotonic()
            answer = api.call("POST", f"/api/plinth/v1/jobs/{job['id']}/cancel")["job"]
            if answer["state"] != "cancelled":
                raise BenchFailure(f"a queued job was not cancelled at once: {answer['state']}")
            queued_ms.append((time.monotonic() - t0) * 1000)
        api.call("POST", f"/api/plinth/v1/jobs/{blocker['id']}/cancel")
        out["cancel_running_to_gone_ms"] = summary(running_ms)
        out["cancel_queued_ms"] = summary(queued_ms)
        out["admission"] = admission_at_scale(api, queued)
        out["peak_rss_mib"] = srv.peak_rss / (1 << 20) if srv.peak_rss else None
    finally:
        srv.stop()
    return out


def admission_at_scale(api: Plinth, queued: int) -> dict:
    names = [f"q{i}" for i in range(4)]
    api.call("PUT", "/api/plinth/v1/queues", {"text": queues_text([("bench", 64), ("full", 1)] + [(n, 1) for n in names])})
    heads = []
    for n in names:
        job = api.submit(n, ["sleep", "600"], cpus=1)
        api.wait(job["id"], ("running",))
        heads.append(job["id"])
    t0 = time.monotonic()
    ids: dict[str, list[int]] = {n: [] for n in names}
    for i in range(queued):
        n = names[i % len(names)]
        ids[n].append(api.submit(n, ["sleep", "600"], cpus=1)["id"])
    submit_s = time.monotonic() - t0
    # Let a few ticks run with every job pending, then read the cycle's figures.
    before_sum = api.metric("plinth_jobs_admission_cycle_duration_seconds_sum")
    before_count = api.metric("plinth_jobs_admission_cycle_duration_seconds_count")
    time.sleep(3)
    cycles = api.metric("plinth_jobs_admission_cycle_duration_seconds_count") - before_count
    cycle_s = (api.metric("plinth_jobs_admission_cycle_duration_seconds_sum") - before_sum) / max(cycles, 1)
    pending = api.metric("plinth_jobs_admission_cycle_pending")
    # Each cancel frees one queue's quota: the next job of that queue is admitted.
    handoff_ms = []
    for n, head in zip(names, heads):
        following = ids[n][0]
        t1 = time.monotonic()
        api.call("POST", f"/api/plinth/v1/jobs/{head}/cancel")
        api.wait(following, ("admitted", "starting", "running"), poll=0.002)
        handoff_ms.append((time.monotonic() - t1) * 1000)
    for n in names:
        api.call("POST", f"/api/plinth/v1/jobs/{ids[n][0]}/cancel")
    return {
        "queued": queued,
        "submit_per_s": queued / submit_s,
        "pending_seen_by_cycle": pending,
        "cycles_measured": cycles,
        "cycle_ms": cycle_s * 1000,
        "cancel_to_next_admitted_ms": summary(handoff_ms),
    }


def ray_phase(root: Path, jobs: int) -> dict:
    """Ray Jobs on a local head node: the same trivial job through its REST API."""
    ray = Path(sys.prefix) / "bin" / "ray"
    if not ray.exists():
        raise SetupError("ray is not installed in the benchmark's virtualenv")
    tmp = root / "ray"
    tmp.mkdir()
    port = common.free_port()
    dash = common.free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    start = subprocess.run(
        [str(ray), "start", "--head", "--port", str(port), "--dashboard-port", str(dash), "--dashboard-host", "127.0.0.1",
         "--num-cpus", "2", "--temp-dir", str(tmp), "--disable-usage-stats"],
        capture_output=True, text=True, env=env)
    if start.returncode != 0:
        raise SetupError(f"ray start failed: {start.stdout}{start.stderr}")
    base = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/api/version", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise BenchFailure("Ray's dashboard did not answer")
            time.sleep(0.5)

        def status(job_id: str) -> str:
            return requests.get(f"{base}/api/jobs/{job_id}", timeout=30).json()["status"]

        def submit(entrypoint: str, **extra) -> str:
            r = requests.post(base + "/api/jobs/", json={"entrypoint": entrypoint, **extra}, timeout=60)
            if r.status_code != 200:
                raise BenchFailure(f"Ray submit answered {r.status_code}: {r.text[:300]}")
            return r.json()["submission_id"]

        def wait(job_id: str, states: tuple[str, ...], timeout: float = 120) -> float:
            deadline = time.monotonic() + timeout
            while True:
                s = status(job_id)
                if s in states:
                    return time.monotonic()
                if time.monotonic() > deadline:
                    raise BenchFailure(f"Ray job {job_id} never reached {states}: {s}")
                time.sleep(0.005)

        submit_ms = []
        for _ in range(jobs):
            t0 = time.monotonic()
            job = submit("sleep 0.2")
            submit_ms.append((wait(job, ("RUNNING", "SUCCEEDED", "FAILED")) - t0) * 1000)
            wait(job, ("SUCCEEDED", "FAILED"))
        stop_ms = []
        for _ in range(max(3, jobs // 4)):
            job = submit("sleep 600")
            wait(job, ("RUNNING",))
            t0 = time.monotonic()
            requests.post(f"{base}/api/jobs/{job}/stop", timeout=60)
            stop_ms.append((wait(job, ("STOPPED", "FAILED", "SUCCEEDED")) - t0) * 1000)
        # A job that cannot be scheduled stays PENDING; Ray's stop is then asked for.
        pending = submit("sleep 1", entrypoint_num_cpus=64)
        time.sleep(2)
        requests.post(f"{base}/api/jobs/{pending}/stop", timeout=60)
        time.sleep(5)
        pending_after = status(pending)
        return {
            "submit_to_running_ms": summary(submit_ms),
            "stop_running_ms": summary(stop_ms),
            "pending_job_after_stop_5s": pending_after,
            "ray_version": requests.get(base + "/api/version", timeout=5).json().get("ray_version"),
        }
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env)


def render(p: dict, r: Optional[dict]) -> str:
    def row(label: str, s: dict, unit: str = "ms") -> str:
        return f"  {label:<44} p50 {s['p50']:8.1f} {unit}   p95 {s['p95']:8.1f} {unit}   max {s['max']:8.1f} {unit}   (n={s['n']})"

    lines = ["Plinth (local executor)"]
    lines.append(row("submit -> running (server timestamps)", p["submit_to_running_server_ms"]))
    lines.append(row("submit -> running (client, polled)", p["submit_to_running_client_ms"]))
    lines.append(row("cancel running -> process gone", p["cancel_running_to_gone_ms"]))
    lines.append(row("cancel queued -> cancelled", p["cancel_queued_ms"]))
    a = p["admission"]
    lines.append(f"  {a['queued']} queued over 4 queues: submitted at {a['submit_per_s']:.0f} jobs/s; "
                 f"an admission cycle over {a['pending_seen_by_cycle']:.0f} pending takes {a['cycle_ms']:.3f} ms "
                 f"(mean of {a['cycles_measured']:.0f} cycles)")
    lines.append(row(f"cancel head -> next job admitted ({a['queued']} queued)", a["cancel_to_next_admitted_ms"]))
    if r:
        lines.append(f"Ray Jobs {r['ray_version']} (local head node, REST API)")
        lines.append(row("submit -> RUNNING", r["submit_to_running_ms"]))
        lines.append(row("stop RUNNING -> STOPPED", r["stop_running_ms"]))
        lines.append(f"  a PENDING job 5 s after Ray's stop: {r['pending_job_after_stop_5s']}")
        ratio = r["submit_to_running_ms"]["p50"] / max(p["submit_to_running_client_ms"]["p50"], 1e-9)
        lines.append(f"submit -> running, p50, Ray / Plinth (both client-side): {ratio:.1f}x")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-ray", action="store_true", help="also run Ray Jobs on a local head node (ray[default] in the benchmark's virtualenv)")
    ap.add_argument("--plinth-bin", help="the plinth binary (default: cargo build --release -p plinth)")
    ap.add_argument("--jobs", type=int, default=40, help="trivial jobs timed one after the other (default 40)")
    ap.add_argument("--queued", type=int, default=10_000, help="jobs queued for the admission measurement (default 10000)")
    ap.add_argument("--json", help="write the raw figures here")
    return ap.parse_args(argv)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        reqs = [common.DRIVER_REQUIREMENTS] + ([RAY_REQUIREMENTS] if args.with_ray else [])
        common.ensure_venv(False, Path(__file__), venv_dir=VENV, requirements=reqs)
        common.import_driver_deps()
        global requests
        import requests
        signal.signal(signal.SIGTERM, _raise_interrupt)
        binary = common.resolve_plinth_binary(args.plinth_bin)
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-jobs-"))
    failures = []
    plinth: Optional[dict] = None
    ray: Optional[dict] = None
    try:
        try:
            plinth = plinth_phase(binary, root, args.jobs, args.queued)
        except BenchFailure as e:
            failures.append(f"Plinth: {e}")
        if args.with_ray:
            try:
                ray = ray_phase(root, args.jobs)
            except (BenchFailure, SetupError, OSError, ValueError) as e:
                failures.append(f"Ray: {e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    machine = common.machine_info()
    print(f"\nPlinth jobs benchmark; machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM")
    if plinth:
        print(render(plinth, ray))
    if failures:
        print("\nFAILURES:")
        for f in failures:
            print(f"  - {f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "plinth": plinth, "ray": ray}, indent=2, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
