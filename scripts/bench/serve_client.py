"""Load generator for OpenAI-compatible servers: time to first token and aggregate tok/s under N
concurrent streaming clients, the same way for `qwen3-agent serve` and llama.cpp's `llama-server`.

Usage: serve_client.py BASE_URL LABEL [--clients 1 4 8] [--requests-per-client 1] [--prompt-words 24]
                       [--max-tokens 16]
Each client sends its requests one after another to /v1/completions (a raw prompt: no chat template,
so both servers see the same text), streamed, greedy. Every prompt starts with its own number, so no
server can reuse another request's cached prefix. Prints one JSON object per concurrency level:
{"label", "clients", "requests", "wall_s", "completion_tokens", "aggregate_tok_s",
 "ttft_s": {"median", "mean", "max"}, "per_request_decode_tok_s": {"median"}}.
Only the standard library: it runs with any python3.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
from urllib.parse import urlparse

WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls watch from an old oak "
         "tree near the quiet river bank at dusk and count the stars").split()


def prompt(number, words):
    body = " ".join(WORDS[(number * 7 + i) % len(WORDS)] for i in range(words))
    return f"Request {number}: {body}"


def one_request(base, number, args):
    """Streams one completion; returns (ttft_s, total_s, completion_tokens)."""
    url = urlparse(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=3600)
    body = json.dumps({
        "model": args.model, "prompt": prompt(number, args.prompt_words),
        "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    })
    start = time.perf_counter()
    connection.request("POST", url.path.rstrip("/") + "/completions", body,
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:500]!r}")
    first, chunks, usage = None, 0, None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(f"error event: {chunk}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
    total = time.perf_counter() - start
    connection.close()
    tokens = usage["completion_tokens"] if usage else chunks
    return (first or time.perf_counter()) - start, total, tokens


def level(base, label, clients, args, counter):
    results, errors, lock = [], [], threading.Lock()

    def client():
        for _ in range(args.requests_per_client):
            with lock:
                counter[0] += 1
                number = counter[0]
            try:
                result = one_request(base, number, args)
            except Exception as error:  # reported after the level, then the run fails
                with lock:
                    errors.append(repr(error))
                return
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{label}, {clients} clients: {len(errors)} failed requests: {errors[:3]}")
    ttfts = [r[0] for r in results]
    tokens = sum(r[2] for r in results)
    decode = [(r[2] - 1) / (r[1] - r[0]) for r in results if r[2] > 1 and r[1] > r[0]]
    return {
        "label": label, "clients": clients, "requests": len(results), "wall_s": round(wall, 2),
        "completion_tokens": tokens, "aggregate_tok_s": round(tokens / wall, 3),
        "ttft_s": {"median": round(statistics.median(ttfts), 3),
                   "mean": round(statistics.mean(ttfts), 3), "max": round(max(ttfts), 3)},
        "per_request_decode_tok_s": {"median": round(statistics.median(decode), 3) if decode else None},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("label")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--prompt-words", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="bench")
    args = parser.parse_args()
    counter = [0]
    # One request first: the first pass pays one-time costs (page faults of the mapped weights).
    one_request(args.base_url, 0, args)
    for clients in args.clients:
        print(json.dumps(level(args.base_url, args.label, clients, args, counter)), flush=True)


if __name__ == "__main__":
    main()
