#!/usr/bin/python3
"""
producer.py: what one send_event call of the Python client
(client/python/telemetry_client.py) costs the application that makes it.
The Python twin of bench-producer: sends the payloads' event_properties and
derived_properties with send_event at a steady rate for some seconds, times
each call alone with time.perf_counter_ns, and prints one JSON line
{"calls", "ok", "dropped", "p50_ns", "p99_ns", "p999_ns", "max_ns", "mean_ns"}.

    producer.py --socket PATH --payloads FILE [--rate R] [--seconds S] [--flush-s S]
        [--encoder-dir DIR]

With --encoder-dir, the client's C encoder is taken from DIR (a build's
python/ directory); the JSON line says which encoder ran ("encoder": "c"
or "python").
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_payloads(path):
    """The payload file as (name, event_properties, derived_properties), checked."""
    payloads = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as e:
                sys.exit(f"producer.py: {path}:{number}: not JSON: {e}")
            if not (isinstance(item, dict) and isinstance(item.get("event"), str)
                    and isinstance(item.get("properties"), dict)):
                sys.exit(f"producer.py: {path}:{number}: not an "
                         "{\"event\": str, \"properties\": {...}} object")
            props = item["properties"]
            payloads.append((item["event"], props.get("event_properties"),
                             props.get("derived_properties")))
    if not payloads:
        sys.exit(f"producer.py: {path}: no payload in the file")
    return payloads


def quantile(ordered, q):
    """The ceil(q*n)-th smallest of the sorted values."""
    rank = max(1, min(len(ordered), -int(-q * len(ordered) // 1)))
    return ordered[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--rate", type=int, default=5000, help="calls a second (default 5000)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flush-s", type=float, default=0.0,
                        help="wait this long at the end for queued events to be written")
    parser.add_argument("--encoder-dir", help="where the C encoder was built (<build>/python)")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    payloads = load_payloads(args.payloads)

    # send_event's module-level client reads the socket path from here.
    os.environ["TELEMETRY_SOCKET"] = args.socket
    sys.path.insert(0, os.path.join(ROOT, "client", "python"))
    if args.encoder_dir:
        sys.path.insert(0, args.encoder_dir)
    import telemetry_client

    calls = int(args.rate * args.seconds)
    took = [0] * calls
    ok = 0
    clock = time.perf_counter_ns
    start = clock()
    period = 1e9 / args.rate
    for i in range(calls):
        name, event_properties, derived_properties = payloads[i % len(payloads)]
        wait = start + i * period - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        t0 = clock()
        sent = telemetry_client.send_event(name, event_properties, derived_properties)
        took[i] = clock() - t0
        ok += bool(sent)
    elapsed = clock() - start
    client = telemetry_client.default_client()
    flushed = client.flush(args.flush_s) if args.flush_s > 0 else True
    stats = client.stats()
    took.sort()
    print(json.dumps({
        "calls": calls, "ok": ok, "dropped": calls - ok,
        "p50_ns": quantile(took, 0.50), "p99_ns": quantile(took, 0.99),
        "p999_ns": quantile(took, 0.999), "max_ns": took[-1], "mean_ns": sum(took) / calls,
        "seconds": elapsed / 1e9, "flushed": bool(flushed), "encoder": telemetry_client.ENCODER,
        "client": {"sent": stats["sent"], "pending": stats["pending"],
                   "dropped": sum(stats["dropped"].values())}}))
    sys.stdout.flush()
    # Leave at once: the client's exit flush would wait for an absent agent.
    os._exit(0)


if __name__ == "__main__":
    main()
