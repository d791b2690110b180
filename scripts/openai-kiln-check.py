"""Checks that the official `openai` Python client, unchanged, talks to a running `kiln serve` with real
models: SmolLM2-135M-Instruct for chat and completions and a CLIP model for embeddings, behind API keys,
roles and a rate limit (the server and its config are set up by scripts/serve-kiln-check.sh).

Usage: python3 scripts/openai-kiln-check.py BASE_URL
Keys: sk-kiln-full (everything), sk-kiln-noembed (no embeddings), sk-kiln-limited (one request a minute).
Exits non-zero on the first failed check.
"""

import math
import sys

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base, api_key="sk-kiln-full", max_retries=0)


def check(name, ok):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        sys.exit(1)


models = sorted(m.id for m in client.models.list())
check("models.list", models == ["clip", "llava", "smol"])

r = client.chat.completions.create(
    model="smol",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
    logprobs=True,
    top_logprobs=2,
)
msg = r.choices[0].message.content
check("chat", isinstance(msg, str) and len(msg.strip()) > 0 and "Paris" in msg)
check("chat logprobs", len(r.choices[0].logprobs.content) > 0
      and len(r.choices[0].logprobs.content[0].top_logprobs) == 2)
check("chat usage", r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
      and r.choices[0].finish_reason in ("stop", "length"))

parts, usage = [], None
for chunk in client.chat.completions.create(
    model="smol",
    messages=[{"role": "user", "content": "Name three colours."}],
    max_tokens=24,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
check("streamed chat", len(parts) > 1 and len("".join(parts).strip()) > 0)
check("streamed usage", usage is not None and usage.completion_tokens > 0)

r = client.completions.create(model="smol", prompt="Once upon a time", max_tokens=12, temperature=0)
check("completions", len(r.choices[0].text) > 0)
text = "".join(c.choices[0].text for c in client.completions.create(
    model="smol", prompt="The sky is", max_tokens=8, temperature=0, stream=True))
check("streamed completions", len(text) > 0)

e = client.embeddings.create(model="clip", input=["a red shoe", "a leather bag"])  # base64 on the wire
v = [d.embedding for d in e.data]
check("embeddings", len(v) == 2 and len(v[0]) == 64 and abs(math.sqrt(sum(x * x for x in v[0])) - 1) < 1e-3)
e = client.embeddings.create(model="clip", input="a red shoe", encoding_format="float")
check("embeddings float", all(abs(a - b) < 1e-5 for a, b in zip(e.data[0].embedding, v[0])))

# An image part (a data URL) to the LLaVA model (a tiny random fixture: the answer is gibberish,
# but it is an answer).
import base64

png = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
r = client.chat.completions.create(
    model="llava",
    messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "text", "text": "what is this"},
    ]}],
    max_tokens=8,
    temperature=0,
)
check("chat with an image part", r.usage.completion_tokens > 0
      and r.usage.prompt_tokens > 16 and isinstance(r.choices[0].message.content, str))
try:
    client.chat.completions.create(model="llava", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "what is this"}]}])
    check("remote image URL refused", False)
except openai.BadRequestError as err:
    check("remote image URL refused", err.status_code == 400)

try:
    openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).models.list()
    check("401 AuthenticationError", False)
except openai.AuthenticationError as err:
    check("401 AuthenticationError", err.status_code == 401)

try:
    openai.OpenAI(base_url=base, api_key="sk-kiln-noembed", max_retries=0).embeddings.create(
        model="clip", input="x")
    check("403 PermissionDeniedError", False)
except openai.PermissionDeniedError as err:
    check("403 PermissionDeniedError", err.status_code == 403)

limited = openai.OpenAI(base_url=base, api_key="sk-kiln-limited", max_retries=0)
limited.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
try:
    limited.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    check("429 RateLimitError", False)
except openai.RateLimitError as err:
    check("429 RateLimitError", err.status_code == 429 and int(err.response.headers["retry-after"]) >= 1)

print("the openai client works with kiln serve")
