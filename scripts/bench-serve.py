#!/usr/bin/env python3
"""Aggregate decode throughput of a running `kiln serve` with 1 and with N concurrent streaming clients
(continuous batching), through the OpenAI-compatible API (SSE). Prints one JSON line; fails if any
stream fails.

    python3 scripts/bench-serve.py BASE_URL MODEL [CLIENTS=8] [MAX_TOKENS=96]
"""
import json
import sys
import threading
import time
import urllib.request

PROMPTS = [
    "Write a long story about a lighthouse keeper.",
    "Explain in detail how bread is made, step by step.",
    "Describe the history of the bicycle at length.",
    "Write a long letter to a friend about a trip to the mountains.",
    "Explain how a steam engine works, in detail.",
    "Tell a long fairy tale about a fox and a crow.",
    "Describe a busy market day in a small town, at length.",
    "Write a detailed guide to growing tomatoes.",
]


def one(base, model, prompt, max_tokens, out):
    """One streaming chat completion (SSE); records the completion tokens of its final usage chunk."""
    body = json.dumps({"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(base + "/chat/completions", body, {"Content-Type": "application/json"})
    usage, chunks = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            chunks += 1
            if event.get("usage"):
                usage = event["usage"]
    if usage is None or chunks < 2:
        raise RuntimeError("the stream ended without content and usage")
    out.append(usage["completion_tokens"])


def run(base, model, clients, max_tokens):
    out = []
    threads = [threading.Thread(target=one, args=(base, model, PROMPTS[i % len(PROMPTS)], max_tokens, out))
               for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.perf_counter() - t
    assert len(out) == clients, f"{clients - len(out)} requests failed"
    return sum(out), secs


def main():
    base, model = sys.argv[1], sys.argv[2]
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 96
    run(base, model, 1, 8)  # warm-up
    t1, s1 = run(base, model, 1, max_tokens)
    tn, sn = run(base, model, clients, max_tokens)
    print(json.dumps({"clients": clients, "max_tokens": max_tokens,
                      "one_client_tokens_per_s": round(t1 / s1, 1),
                      "n_clients_tokens_per_s": round(tn / sn, 1),
                      "n_clients_tokens": tn, "n_clients_seconds": round(sn, 2),
                      "ratio": round((tn / sn) / (t1 / s1), 2)}))


if __name__ == "__main__":
    main()
