"""Load test of the HTTP service with wrk, against 127.0.0.1 only, every run bounded in time.

Starts `window-advisor serve` (one worker) on a free loopback port and measures, in one go:
GET /healthz requests/s, POST /v1/recommendations requests/s and p99 latency (one distinct
generated order per request, from a pool), their ratio, POST /v1/recommendations/batch
orders/s with 1000-order bodies, single requests carrying 6 carrier scans each (requests/s,
p99, ratio to /healthz), and a 30-second run on /v1/recommendations during which
the server reloads a different model and refuses a tampered one (failed requests counted).
The server runs as it should in production: artifacts signed (a signing key made for the
run; the served model is signed with it, or trained signed), reloads with an admin key and
confined to a model root, and a JSON access line per request (in the server log).

    python bench/bench_api.py [--duration 10] [--rounds 3] [--connections 32]
                              [--reload-duration 30]

Needs wrk (Debian: apt-get install wrk). Prints a JSON summary and writes it to
bench/out/bench_api.json. The per-lane survival curves are cached by the model; a warm-up
pass over the order pool comes first, as a server that has run a while would have.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.generate import (  # noqa: E402
    DEFAULT_AS_OF,
    generate_history,
    generate_open,
    generate_open_orders,
)

OUT = ROOT / "bench" / "out"
POOL = 5000  # distinct single orders cycled through by the load generator
SCANS_PER_ORDER = 6  # the scans each tracked single request carries (issue 9)
TRACKED_POOL = 1000  # distinct tracked single orders
BATCH = 1000
BATCH_BODIES = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def order_json(frame: Any) -> list[dict[str, Any]]:
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    out = []
    for record in records:
        clean = {}
        for key, value in record.items():
            if value is None:
                continue
            if isinstance(value, str) and value.endswith("T00:00:00.000"):
                value = value[:10]
            clean[key] = value
        out.append(clean)
    return out


def tracked_singles(as_of: date, count: int) -> list[str]:
    """Single-order bodies with their latest ``SCANS_PER_ORDER`` scans each (generated open
    orders that have at least that many scans by ``as_of``)."""
    made = generate_open(count * 15, seed=10, as_of=as_of)  # ~8% have 6 scans by as_of
    events = made.events.sort_values(["order_id", "event_at"], kind="stable")
    events["event_at"] = events["event_at"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    latest = events.groupby("order_id").tail(SCANS_PER_ORDER)
    counts = latest.groupby("order_id").size()
    chosen = counts[counts == SCANS_PER_ORDER].index[:count]
    scans = {
        order_id: group.drop(columns="order_id").to_dict("records")
        for order_id, group in latest[latest["order_id"].isin(chosen)].groupby("order_id")
    }
    orders = order_json(made.frame[made.frame["order_id"].isin(chosen)])
    if len(orders) < count:
        raise SystemExit(f"only {len(orders)} generated orders have {SCANS_PER_ORDER} scans")
    return [
        json.dumps({**o, "as_of": as_of.isoformat(), "events": scans[o["order_id"]]})
        for o in orders
    ]


def write_lua(directory: Path, name: str, path: str, bodies: list[str]) -> Path:
    data = directory / f"{name}_bodies.lua"
    with data.open("w") as handle:
        handle.write("bodies = {\n")
        for body in bodies:
            handle.write("[==[" + body + "]==],\n")
        handle.write("}\n")
    script = directory / f"{name}.lua"
    script.write_text(
        f'dofile("{data}")\n'
        "local counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        "  local body = bodies[(counter % #bodies) + 1]\n"
        f'  return wrk.format("POST", "{path}", '
        '{["Content-Type"]="application/json"}, body)\n'
        "end\n"
    )
    return script


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict[str, Any]:
    def latency(label: str) -> float | None:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(match.group(1)) * UNITS[match.group(2)] if match else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests_per_s": float(rps.group(1)) if rps else None,
        "requests": int(total.group(1)) if total else None,
        "p50_ms": latency("50"),
        "p90_ms": latency("90"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
    }


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    result = parse_wrk(done.stdout)
    result["command"] = " ".join([*command, url])
    return result


# Made per run: the bench signs its own artifacts and holds the admin key.
SIGNING_KEY = secrets.token_urlsafe(32)
ADMIN_KEY = secrets.token_urlsafe(24)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def signing_keys() -> Any:
    from model.signing import SigningKeys

    return SigningKeys(SIGNING_KEY.encode())


def train_second_model(directory: Path, workdir: Path) -> None:
    """A genuinely different model to reload: other history size and seed (signed)."""
    from model.artifact import save_model
    from model.schema import validate_history
    from model.train import train_model

    history = generate_history(30_000, seed=8, as_of=DEFAULT_AS_OF)
    valid = validate_history(history).valid
    fitted = train_model(valid, DEFAULT_AS_OF)
    save_model(
        fitted, directory, data_sha256="0" * 64, data_source="bench:seed8-30k", keys=signing_keys()
    )


class Server:
    def __init__(self, model_dir: Path, log: Path, model_root: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "ADVISOR_SIGNING_KEY": SIGNING_KEY,
            "ADVISOR_ADMIN_KEY": ADMIN_KEY,
            "ADVISOR_MODEL_ROOT": str(model_root),
        }
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir),
             "--port", str(self.port), "--host", "127.0.0.1"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 600  # may train the default model first
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited; see {log}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=OUT / "api_model")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="healthz/recommendations pairs")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-connections", type=int, default=2)
    parser.add_argument("--reload-duration", type=int, default=30)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    OUT.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "machine": machine(), "workers": 1,
                               "security": "signed artifacts, admin key, model root,"
                                           " JSON access log"}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        work = Path(tmp)
        as_of: date = DEFAULT_AS_OF
        orders = order_json(generate_open_orders(POOL + BATCH * BATCH_BODIES, seed=9, as_of=as_of))
        singles = [json.dumps({**o, "as_of": as_of.isoformat()}) for o in orders[:POOL]]
        batches = [
            json.dumps({"as_of": as_of.isoformat(), "orders": orders[POOL + k * BATCH:
                                                                     POOL + (k + 1) * BATCH]})
            for k in range(BATCH_BODIES)
        ]  # fmt: skip
        single_lua = write_lua(work, "single", "/v1/recommendations", singles)
        tracked_lua = write_lua(
            work, "tracked", "/v1/recommendations", tracked_singles(as_of, TRACKED_POOL)
        )
        batch_lua = write_lua(work, "batch", "/v1/recommendations/batch", batches)

        second = work / "second_model"
        print("training a second model for the reload run", file=sys.stderr)
        train_second_model(second, work)
        tampered = work / "tampered_model"
        shutil.copytree(second, tampered)
        blob = bytearray((tampered / "model.joblib").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (tampered / "model.joblib").write_bytes(bytes(blob))

        if (args.model / "manifest.json").is_file():  # the bench's own model, from a past run
            from model.artifact import sign_artifact

            sign_artifact(args.model, signing_keys())
        server = Server(args.model, OUT / "bench_api_server.log", model_root=work)
        try:
            base = server.base
            first_version = httpx.get(f"{base}/readyz").json()["model_version"]
            summary["model_version"] = first_version
            print(f"server up at {base}; warming up", file=sys.stderr)
            summary["cold_recommendations"] = wrk(base, 8, args.connections, single_lua)
            wrk(base, 8, args.connections, single_lua)
            wrk(base, 4, args.batch_connections, batch_lua)
            wrk(base, 8, args.connections, tracked_lua)

            print("measuring", file=sys.stderr)
            # The machine is shared: healthz and recommendations alternate, round by round,
            # so drifting background load hits both; medians over the rounds are reported.
            rounds = []
            for _ in range(args.rounds):
                health = wrk(f"{base}/healthz", args.duration, args.connections)
                single = wrk(base, args.duration, args.connections, single_lua)
                tracked = wrk(base, args.duration, args.connections, tracked_lua)
                rounds.append(
                    {
                        "healthz_rps": health["requests_per_s"],
                        "healthz_p99_ms": health["p99_ms"],
                        "recommendations_rps": single["requests_per_s"],
                        "recommendations_p50_ms": single["p50_ms"],
                        "recommendations_p99_ms": single["p99_ms"],
                        "recommendations_failed": single["non_2xx"] + single["socket_errors"],
                        "ratio": single["requests_per_s"] / health["requests_per_s"],
                        "with_6_scans_rps": tracked["requests_per_s"],
                        "with_6_scans_p50_ms": tracked["p50_ms"],
                        "with_6_scans_p99_ms": tracked["p99_ms"],
                        "with_6_scans_failed": tracked["non_2xx"] + tracked["socket_errors"],
                        "with_6_scans_ratio": tracked["requests_per_s"] / health["requests_per_s"],
                    }
                )
            summary["rounds"] = rounds
            summary["commands"] = {
                "healthz": health["command"],
                "recommendations": single["command"],
                "recommendations_with_6_scans": tracked["command"],
            }
            summary["median"] = {
                key: statistics.median(r[key] for r in rounds) for key in rounds[0]
            }
            batch = wrk(base, args.duration, args.batch_connections, batch_lua)
            batch["orders_per_s"] = batch["requests_per_s"] * BATCH
            summary["batch"] = batch
            metrics = httpx.get(f"{base}/metrics").text
            pattern = r"advisor_microbatch_size_(sum|count) ([\d.e+]+)"
            sizes = {m.group(1): float(m.group(2)) for m in re.finditer(pattern, metrics)}
            summary["mean_microbatch"] = sizes.get("sum", 0) / max(sizes.get("count", 1), 1)

            print("reload during load", file=sys.stderr)
            events: list[dict[str, Any]] = []

            def reloads() -> None:
                time.sleep(args.reload_duration / 3)
                answer = httpx.post(
                    f"{base}/v1/admin/reload",
                    json={"model_dir": str(second)},
                    headers=ADMIN,
                    timeout=60,
                )
                events.append({"reload": "new model", "status": answer.status_code,
                               "body": answer.json()})  # fmt: skip
                time.sleep(args.reload_duration / 3)
                answer = httpx.post(
                    f"{base}/v1/admin/reload",
                    json={"model_dir": str(tampered)},
                    headers=ADMIN,
                    timeout=60,
                )
                events.append({"reload": "tampered", "status": answer.status_code,
                               "body": answer.json()})  # fmt: skip

            thread = threading.Thread(target=reloads)
            thread.start()
            during = wrk(base, args.reload_duration, args.connections, single_lua)
            thread.join()
            during["reloads"] = events
            during["model_version_after"] = httpx.get(f"{base}/readyz").json()["model_version"]
            summary["reload_during_load"] = during
        finally:
            server.stop()

    (OUT / "bench_api.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
