"""Latency of the browse page's API under concurrent clients (prints JSON).

Starts ``twostage serve-ui``'s server on a free loopback port in this process, then for each
client count sends that many clients at once, each asking for a few users' recommendations,
and reports p50 / p99 / max of the request latency and any failed request.

    python benchmarks/browse.py --model models/demo --clients 8 64 --requests 20
"""

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import twostage  # noqa: F401  selects the legacy Keras before TensorFlow loads
from twostage.ui import serve_in_background


def _burst(url: str, users: list, clients: int, requests: int) -> dict:
    def client(i):
        times, failures = [], 0
        for j in range(requests):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{url}/api/recommend?user={users[(i + j) % len(users)]}&k=10",
                                            timeout=60) as response:
                    response.read()
            except OSError:
                failures += 1
            times.append(time.perf_counter() - start)
        return times, failures

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    latencies = np.concatenate([r[0] for r in results]) * 1000
    return {"clients": clients, "requests": int(latencies.size), "failed": int(sum(r[1] for r in results)),
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "max_ms": float(latencies.max())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    args = parser.parse_args()
    server, url = serve_in_background(args.model, port=0)
    try:
        users = json.loads(urllib.request.urlopen(f"{url}/api/users", timeout=60).read())["users"][:100]
        _burst(url, users, 2, 5)  # warm up
        print(json.dumps({"model": args.model, "bursts": [_burst(url, users, c, args.requests) for c in args.clients]},
                         indent=2))
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
