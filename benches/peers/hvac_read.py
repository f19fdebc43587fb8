"""KV v2 reads with hvac (the Python client the guide's users run), for the `report` bench.

Reads the bench secret `N` times after a warm-up, from `THREADS` threads (each with its own
`hvac.Client`, so each keeps its own connection, as a threaded Python service would), decodes
it into the same five fields as the Rust arms and prints one JSON line:
{"n": ..., "wall_ns": ..., "cpu_ns": ...}. CPU is this process's user + system time (all
threads) over the measured reads only.

Usage: python hvac_read.py ADDR TOKEN MOUNT PATH N THREADS
"""

import dataclasses
import json
import sys
import threading
import time

import hvac

@dataclasses.dataclass
class Secret:
    username: str
    password: str
    host: str
    port: str
    database: str


def read_one(client: hvac.Client, mount: str, path: str) -> Secret:
    reply = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=mount, raise_on_deleted_version=True
    )
    return Secret(**reply["data"]["data"])


def run(clients, mount: str, path: str, n: int) -> float:
    """Reads `n` times over all clients' threads; returns the wall time in seconds."""
    lock = threading.Lock()
    remaining = [n]
    failures = []

    def worker(client):
        while True:
            with lock:
                if remaining[0] <= 0 or failures:
                    return
                remaining[0] -= 1
            try:
                secret = read_one(client, mount, path)
                if not secret.password:
                    raise ValueError("empty password")
            except Exception as e:  # noqa: BLE001 - reported below, then the run fails
                failures.append(repr(e))
                return

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        sys.exit(f"hvac read failed: {failures[0]}")
    return wall


def main() -> None:
    addr, token, mount, path = sys.argv[1:5]
    n, threads = int(sys.argv[5]), int(sys.argv[6])
    clients = [hvac.Client(url=addr, token=token) for _ in range(threads)]
    # Warm-up: connections open, code paths hot.
    run(clients, mount, path, max(n // 10, threads * 2))
    cpu0 = time.process_time_ns()
    wall = run(clients, mount, path, n)
    cpu1 = time.process_time_ns()
    print(json.dumps({"n": n, "wall_ns": int(wall * 1e9), "cpu_ns": cpu1 - cpu0}))


if __name__ == "__main__":
    main()
