"""Seconds until an uncached download gives up when the Hub cannot be reached: rmp_zoo's ``download`` against
huggingface_hub's plain ``hf_hub_download`` (what rmp_zoo called before it checked reachability first).

Two endpoints on 127.0.0.1: a closed port (connections refused) and a socket that accepts and never answers.
Each contender runs in a fresh process with an empty cache. The plain client against a silent socket waits for its
timeouts and retries for minutes; ``--skip-plain-silent`` leaves that one out.

    python benchmarks/hub_unreachable.py --out benchmarks/results/hub_unreachable
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

CONTENDERS = {  # (import, call): only the call is timed
    "rmp_zoo download": ("from rmp_zoo.zoo.hub import download", "download('rmp-zoo/x', ('config.json',), '0' * 40)"),
    "hf_hub_download": ("from huggingface_hub import hf_hub_download",
                        "hf_hub_download('rmp-zoo/x', 'config.json', revision='0' * 40)"),
}
TIMED = """{imports}
import time
start = time.monotonic()
try:
    {call}
finally:
    print(time.monotonic() - start)
"""


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def silent_port() -> int:
    """A listening socket that accepts connections and never answers (kept open by a daemon thread)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
    return server.getsockname()[1]


def seconds_to_fail(imports: str, call: str, port: int) -> tuple[float, str]:
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": tempfile.mkdtemp(),
           "HF_HUB_DISABLE_XET": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_ETAG_TIMEOUT", None)
    proc = subprocess.run([sys.executable, "-c", TIMED.format(imports=imports, call=call)], env=env,
                          capture_output=True, text=True)
    return float(proc.stdout.split()[-1]), (proc.stderr.strip().splitlines() or ["(no error)"])[-1][:300]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--skip-plain-silent", action="store_true")
    args = p.parse_args()
    rows = []
    for endpoint, port in (("refused", closed_port()), ("silent", silent_port())):
        for name, (imports, call) in CONTENDERS.items():
            if endpoint == "silent" and name == "hf_hub_download" and args.skip_plain_silent:
                continue
            seconds, error = seconds_to_fail(imports, call, port)
            rows.append({"endpoint": endpoint, "contender": name, "seconds": round(seconds, 1), "error": error})
            print(f"{endpoint:8s} {name:18s} {seconds:7.1f} s  {error[:120]}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/hub_unreachable.py " + " ".join(sys.argv[1:])
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = [f"`{command}` (seconds of the download call; imports not timed)", "", "| endpoint | contender | seconds to fail |", "|---|---|---:|",
             *(f"| {r['endpoint']} | {r['contender']} | {r['seconds']} |" for r in rows)]
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
