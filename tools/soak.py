"""Soak test of a running `kiln serve` (started by scripts/soak.sh): CLIENTS threads for SECONDS send a
mix of plain and streamed chat, streams cancelled after the first chunk, requests through a LoRA
adapter (`smol:soak`), and bad requests (malformed JSON, unknown model, wrong key, oversized
max_tokens), while the server's resident memory is sampled. Any unexpected status (every 5xx, any
code other than the one the request must get) is an error. Writes a JSON summary.

Usage: python3 tools/soak.py BASE_URL SERVER_PID SECONDS CLIENTS OUT.json
"""

import http.client
import json
import random
import statistics
import sys
import threading
import time

base, pid, seconds, clients, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
host, port = base.split("//")[1].split(":")
port = int(port)
KEY = "sk-soak"
lock = threading.Lock()
counts, errors, latencies = {}, [], []


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(body, key=KEY, stream=False, cancel=False, raw=None):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    data = raw if raw is not None else json.dumps(body).encode()
    conn.request("POST", "/v1/chat/completions", body=data,
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    if cancel and r.status == 200:
        r.read(64)  # the first bytes of the stream, then hang up
        conn.close()
        return r.status, ""
    text = r.read().decode()
    conn.close()
    if stream and r.status == 200 and "data: [DONE]" not in text:
        return -1, "stream ended without [DONE]"
    return r.status, text


def chat(model="smol", stream=False, max_tokens=8):
    return {"model": model, "stream": stream, "max_tokens": max_tokens, "temperature": 0.8,
            "messages": [{"role": "user", "content": random.choice(
                ["Name a colour.", "Say hello.", "What is 2+2?", "Suggest a name for a cat."])}]}


KINDS = [
    ("chat", 30, lambda: request(chat()), 200),
    ("stream", 20, lambda: request(chat(stream=True), stream=True), 200),
    ("cancel", 10, lambda: request(chat(stream=True, max_tokens=32), cancel=True), 200),
    ("adapter", 15, lambda: request(chat(model="smol:soak")), 200),
    ("malformed", 7, lambda: request(None, raw=b'{"model": "smol", "messages": ['), 400),
    ("unknown_model", 6, lambda: request(chat(model="nope")), 404),
    ("bad_key", 6, lambda: request(chat(), key="sk-wrong"), 401),
    ("too_many_tokens", 6, lambda: request(chat(max_tokens=10**7)), 400),
]


def client(deadline, seed):
    rnd = random.Random(seed)
    names = [k[0] for k in KINDS]
    weights = [k[1] for k in KINDS]
    while time.time() < deadline:
        i = names.index(rnd.choices(names, weights)[0])
        name, _, call, expected = KINDS[i]
        t = time.time()
        try:
            status, text = call()
        except Exception as e:  # a dropped connection is an error too
            status, text = -2, repr(e)
        dt = time.time() - t
        with lock:
            counts[name] = counts.get(name, 0) + 1
            if status != expected:
                errors.append({"kind": name, "status": status, "body": text[:200]})
            elif expected == 200 and name != "cancel":
                latencies.append(dt)


start_rss = rss_mb()
deadline = time.time() + seconds
threads = [threading.Thread(target=client, args=(deadline, s)) for s in range(clients)]
for t in threads:
    t.start()
samples = []
while any(t.is_alive() for t in threads):
    samples.append(round(rss_mb(), 1))
    time.sleep(2)
for t in threads:
    t.join()
end_rss = rss_mb()
lat = sorted(latencies)
warm = samples[len(samples) // 5] if samples else start_rss
summary = {
    "seconds": seconds, "clients": clients, "requests": sum(counts.values()), "by_kind": counts,
    "unexpected_errors": len(errors), "errors": errors[:10],
    "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
    "latency_p99_s": round(lat[int(0.99 * (len(lat) - 1))], 3) if lat else None,
    "rss_mb_start": round(start_rss, 1), "rss_mb_after_warmup": warm, "rss_mb_end": round(end_rss, 1),
    "rss_mb_max": max(samples) if samples else None,
}
# Memory stops growing: after the first fifth of the run, the end is within 10% (+16 MB) of it.
summary["memory_stable"] = end_rss <= warm * 1.10 + 16
json.dump(summary, open(out, "w"), indent=2)
print(json.dumps(summary, indent=2))
if errors or not summary["memory_stable"] or summary["requests"] < clients:
    sys.exit("soak FAILED")
