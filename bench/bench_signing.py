"""What verifying an artifact's signature adds to loading the model (target: at most 50 ms
for the default model).

    python bench/bench_signing.py [--model bench/out/api_model] [--rounds 15]

Copies the artifact to a temporary directory, signs the copy with a random key, and times,
round by round in alternation (the machine is shared: drifting load hits every variant):

- ``before``: the load path before signing existed (sha256 of the file, then joblib.load
  of the path), reproduced here;
- ``unsigned``: ``load_model(dir)`` (no key: read once, checksum, unpickle those bytes);
- ``signed``: ``load_model(dir, keys=...)`` (the same plus the HMAC over manifest and model);
- ``verify_only``: ``read_manifest(dir, keys=...)``: read, HMAC and checksum, no unpickling.

Prints a JSON summary (medians in ms) and writes it to bench/out/bench_signing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.artifact import (  # noqa: E402
    MODEL_FILE,
    file_sha256,
    load_model,
    read_manifest,
    sign_artifact,
)
from model.signing import SigningKeys  # noqa: E402

OUT = ROOT / "bench" / "out"


def load_as_before(directory: Path) -> Any:
    """The previous load path: stream the file for its sha256, then unpickle the path."""
    import joblib

    read_manifest(directory)
    file_sha256(directory / MODEL_FILE)
    return joblib.load(directory / MODEL_FILE)


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=OUT / "api_model")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if not (args.model / MODEL_FILE).is_file():
        raise SystemExit(f"no model in {args.model}: run bench/bench_api.py or train first")
    keys = SigningKeys(secrets.token_urlsafe(32).encode())
    with tempfile.TemporaryDirectory(prefix="bench_signing_") as tmp:
        directory = Path(shutil.copytree(args.model, Path(tmp) / "model"))
        sign_artifact(directory, keys)
        variants: dict[str, Callable[[], Any]] = {
            "before": lambda: load_as_before(directory),
            "unsigned": lambda: load_model(directory),
            "signed": lambda: load_model(directory, keys=keys),
            "verify_only": lambda: read_manifest(directory, keys=keys),
        }
        for action in variants.values():  # warm the page cache and the imports
            action()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, action in variants.items():
                times[name].append(timed(action))
        size = (directory / MODEL_FILE).stat().st_size
    median = {name: round(statistics.median(values), 1) for name, values in times.items()}
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "model": str(args.model),
        "model_bytes": size,
        "rounds": args.rounds,
        "median_ms": median,
        "signed_minus_unsigned_ms": round(median["signed"] - median["unsigned"], 1),
        "signed_minus_before_ms": round(median["signed"] - median["before"], 1),
        "all_ms": {name: [round(v, 1) for v in values] for name, values in times.items()},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_signing.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
