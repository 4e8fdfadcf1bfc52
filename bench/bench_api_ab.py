"""A/B of the scoring route between two checkouts, measured in one run: both servers up at
once on loopback, short wrk runs alternating between them, so a shared machine's drifting
load hits both alike; each pair gives a ratio B/A of requests/s, and of the server's CPU
time per request (read from /proc: the steadier figure when other jobs share the cores).

    python bench/bench_api_ab.py --a ../base-checkout --b . [--pairs 8] [--duration 6]
                                 [--model bench/out/api_model] [--connections 32] [--cpu 0]

Each server is `python -m service.cli serve` started with the checkout as its working
directory (so it imports that checkout's code), one worker, the same model. The B server
runs with this project's security settings when its code has them (a signing key made for
the run with the model copy signed, an admin key, a model root; its JSON access log goes to
bench/out/ab_b_server.log). Needs wrk. Prints a JSON summary and writes it to
bench/out/bench_api_ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_api import POOL, free_port, machine, order_json, write_lua, wrk  # noqa: E402

from data.generate import DEFAULT_AS_OF, generate_open_orders  # noqa: E402

OUT = ROOT / "bench" / "out"


def start(
    checkout: Path, model: Path, env: dict[str, str], log: Path, cpu: int | None
) -> tuple[Any, str]:
    port = free_port()
    handle = log.open("w")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    process = subprocess.Popen(
        [*pin, sys.executable, "-m", "service.cli", "serve", "--model", str(model),
         "--port", str(port), "--host", "127.0.0.1"],
        cwd=checkout, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server of {checkout} exited; see {log}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server of {checkout} did not become ready")
        time.sleep(0.5)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time the process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def measured(process: Any, base: str, seconds: int, connections: int, script: Path) -> Any:
    """A wrk run, plus the server's CPU time per request answered during it (steadier than
    requests/s on a shared machine: other jobs take wall time, not this process's CPU)."""
    user, system = cpu_seconds(process.pid)
    result = wrk(base, seconds, connections, script)
    user_after, system_after = cpu_seconds(process.pid)
    per_request = 1000 / max(result["requests"] or 1, 1)
    result["server_user_ms_per_request"] = (user_after - user) * per_request
    result["server_system_ms_per_request"] = (system_after - system) * per_request
    result["server_cpu_ms_per_request"] = (user_after - user + system_after - system) * per_request
    return result


def stop(process: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the reference)")
    parser.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this one)")
    parser.add_argument("--model", type=Path, default=OUT / "api_model")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="pin both servers to this CPU (taskset), so neither gets a quieter core",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_api_ab_") as tmp:
        work = Path(tmp)
        orders = order_json(generate_open_orders(POOL, seed=9, as_of=DEFAULT_AS_OF))
        bodies = [json.dumps({**o, "as_of": DEFAULT_AS_OF.isoformat()}) for o in orders]
        script = write_lua(work, "single", "/v1/recommendations", bodies)
        model_a = Path(shutil.copytree(args.model, work / "models" / "a"))
        model_b = Path(shutil.copytree(args.model, work / "models" / "b"))
        for stale in (model_a / "signature.json", model_b / "signature.json"):
            stale.unlink(missing_ok=True)
        env_b: dict[str, str] = {}
        if (args.b / "model" / "signing.py").is_file():
            key = secrets.token_urlsafe(32)
            subprocess.run(
                [sys.executable, "-c",
                 "import sys; from pathlib import Path; from model.artifact import sign_artifact;"
                 " from model.signing import SigningKeys;"
                 " sign_artifact(Path(sys.argv[1]), SigningKeys(sys.argv[2].encode()))",
                 str(model_b), key],
                cwd=args.b, check=True,
            )  # fmt: skip
            env_b = {
                "ADVISOR_SIGNING_KEY": key,
                "ADVISOR_ADMIN_KEY": secrets.token_urlsafe(24),
                "ADVISOR_MODEL_ROOT": str(work / "models"),
            }
        server_a, base_a = start(args.a, model_a, {}, OUT / "ab_a_server.log", args.cpu)
        try:
            server_b, base_b = start(args.b, model_b, env_b, OUT / "ab_b_server.log", args.cpu)
            try:
                for base in (base_a, base_b):  # warm both curve caches
                    wrk(base, 8, args.connections, script)
                pairs = []
                for k in range(args.pairs):
                    order = (("a", server_a, base_a), ("b", server_b, base_b))
                    runs = {}
                    for name, server, base in order if k % 2 == 0 else order[::-1]:
                        runs[name] = measured(server, base, args.duration, args.connections, script)
                    pairs.append(
                        {
                            "a_rps": runs["a"]["requests_per_s"],
                            "b_rps": runs["b"]["requests_per_s"],
                            "ratio_b_over_a": runs["b"]["requests_per_s"]
                            / runs["a"]["requests_per_s"],
                            "a_p99_ms": runs["a"]["p99_ms"],
                            "b_p99_ms": runs["b"]["p99_ms"],
                            "a_cpu_ms_per_request": runs["a"]["server_cpu_ms_per_request"],
                            "b_cpu_ms_per_request": runs["b"]["server_cpu_ms_per_request"],
                            "a_system_ms_per_request": runs["a"]["server_system_ms_per_request"],
                            "b_system_ms_per_request": runs["b"]["server_system_ms_per_request"],
                            "failed": sum(r["non_2xx"] + r["socket_errors"] for r in runs.values()),
                        }
                    )
            finally:
                stop(server_b)
        finally:
            stop(server_a)
    ratios = [p["ratio_b_over_a"] for p in pairs]
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "a": str(args.a.resolve()),
        "b": str(args.b.resolve()),
        "b_security_settings": sorted(env_b),
        "servers_pinned_to_cpu": args.cpu,
        "command": runs["a"]["command"].replace(base_a, "http://127.0.0.1:PORT"),
        "pairs": pairs,
        "median": {
            "a_rps": statistics.median(p["a_rps"] for p in pairs),
            "b_rps": statistics.median(p["b_rps"] for p in pairs),
            "ratio_b_over_a": statistics.median(ratios),
            "a_p99_ms": statistics.median(p["a_p99_ms"] for p in pairs),
            "b_p99_ms": statistics.median(p["b_p99_ms"] for p in pairs),
            "a_cpu_ms_per_request": statistics.median(p["a_cpu_ms_per_request"] for p in pairs),
            "b_cpu_ms_per_request": statistics.median(p["b_cpu_ms_per_request"] for p in pairs),
            "cpu_ratio_b_over_a": statistics.median(
                p["b_cpu_ms_per_request"] / p["a_cpu_ms_per_request"] for p in pairs
            ),
        },
        "ratio_range": [min(ratios), max(ratios)],
    }
    (OUT / "bench_api_ab.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
