"""Checks that the official `openai` Python client, unchanged, talks to a Kiln server.

Usage: python3 scripts/openai-client-check.py BASE_URL
(BASE_URL like http://127.0.0.1:8099/v1; the server is kiln-serve's `scripted_server` example, whose
keys are sk-test, sk-noembed and sk-limited). Exits non-zero on the first failed check.
"""

import sys

import openai

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8099/v1"
client = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0)


def check(name, ok):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        sys.exit(1)


models = [m.id for m in client.models.list()]
check("models.list", models == ["echo", "embed"])

r = client.chat.completions.create(
    model="echo",
    messages=[{"role": "user", "content": "hello world"}],
    logprobs=True,
    top_logprobs=1,
    max_tokens=16,
)
check("chat", r.choices[0].message.content == "You said: hello world")
check("chat logprobs", r.choices[0].logprobs.content[0].top_logprobs[0].token == "alt0")
check("chat usage", r.usage.completion_tokens == 4 and r.choices[0].finish_reason == "stop")

parts = []
for chunk in client.chat.completions.create(
    model="echo",
    messages=[{"role": "user", "content": "stream me"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
check("streamed chat", "".join(parts) == "You said: stream me")
check("streamed usage", usage.completion_tokens == 4)

r = client.completions.create(model="echo", prompt="Once upon", max_tokens=8)
check("completions", r.choices[0].text == "You said: Once upon")
text = "".join(c.choices[0].text for c in client.completions.create(model="echo", prompt="a b", stream=True))
check("streamed completions", text == "You said: a b")

e = client.embeddings.create(model="embed", input=["abc", "de"])  # the client asks for base64
check("embeddings", [d.embedding for d in e.data] == [[3.0, 0.5, -1.0], [2.0, 0.5, -1.0]])
e = client.embeddings.create(model="embed", input="x", encoding_format="float")
check("embeddings float", e.data[0].embedding == [1.0, 0.5, -1.0])

try:
    openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).models.list()
    check("401 AuthenticationError", False)
except openai.AuthenticationError as err:
    check("401 AuthenticationError", err.status_code == 401 and err.code == "invalid_api_key")

try:
    openai.OpenAI(base_url=base, api_key="sk-noembed", max_retries=0).embeddings.create(model="embed", input="x")
    check("403 PermissionDeniedError", False)
except openai.PermissionDeniedError as err:
    check("403 PermissionDeniedError", err.status_code == 403)

try:
    openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0).chat.completions.create(
        model="nope", messages=[{"role": "user", "content": "x"}])
    check("404 NotFoundError", False)
except openai.NotFoundError as err:
    check("404 NotFoundError", err.status_code == 404)

limited = openai.OpenAI(base_url=base, api_key="sk-limited", max_retries=0)
limited.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one"}])
try:
    limited.chat.completions.create(model="echo", messages=[{"role": "user", "content": "two"}])
    check("429 RateLimitError", False)
except openai.RateLimitError as err:
    check("429 RateLimitError", err.status_code == 429 and int(err.response.headers["retry-after"]) >= 1)

print("the openai client works with kiln-serve")
