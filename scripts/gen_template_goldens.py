#!/usr/bin/env python3
"""Writes tests/golden/chat_template.json: prompts rendered by transformers' apply_chat_template.

These goldens are the reference our minijinja rendering must match byte for byte (and token for token).
Usage: pip install transformers; python scripts/gen_template_goldens.py
"""
import json
import pathlib

from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER_DIR = ROOT / "tests/fixtures/qwen3-tokenizer"
OUT = ROOT / "tests/golden/chat_template.json"


def fn(name, description, parameters):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TIME_TOOLS = [
    fn("get_current_time", "Get current time in a specific timezones",
       {"type": "object", "properties": {"timezone": {"type": "string", "description":
        "IANA timezone name (e.g., 'America/New_York', 'Europe/London'). Use 'UTC' as local timezone if no timezone provided by the user."}},
        "required": ["timezone"]}),
    fn("convert_time", "Convert time between timezones",
       {"type": "object", "properties": {
           "source_timezone": {"type": "string", "description": "Source IANA timezone name"},
           "time": {"type": "string", "description": "Time to convert in 24-hour format (HH:MM)"},
           "target_timezone": {"type": "string", "description": "Target IANA timezone name"}},
        "required": ["source_timezone", "time", "target_timezone"]}),
]
CODE_TOOL = [fn("code_interpreter", "Run Python code; numpy, pandas & matplotlib are available. Use print() to show results.",
                {"type": "object", "properties": {"code": {"type": "string", "description": "The code to run"}}, "required": ["code"]})]
UNICODE_TOOL = [fn("wetter_abfragen", "Fragt das Wetter ab — für Städte wie München, 東京 oder Zürich 🌦️. Gibt °C zurück.",
                   {"type": "object", "properties": {"stadt": {"type": "string", "description": "Name der Stadt, z. B. \"Köln\""},
                                                     "einheit": {"type": "string", "enum": ["°C", "°F"]}}, "required": ["stadt"]})]
ESCAPE_TOOL = [fn("html_query", "Selects <div class=\"x\"> & <span> nodes; quotes ' and \" and back\\slash, tab\tand newline\nkept.",
                  {"type": "object", "properties": {"selector": {"type": "string", "pattern": "^[a-z]+(<|>|&)$", "description": "CSS selector like a > b & c"}},
                   "required": ["selector"]})]
NESTED_TOOL = [fn("create_order", "Create an order with nested items",
                  {"type": "object", "$defs": {"Item": {"type": "object", "properties": {
                      "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000000000},
                      "price": {"type": "number", "exclusiveMinimum": 0.0, "multipleOf": 0.01},
                      "tags": {"type": "array", "items": {"type": "string"}, "default": []}},
                      "required": ["sku", "qty"], "additionalProperties": False}},
                   "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
                                  "rush": {"type": "boolean", "default": False}, "note": {"type": ["string", "null"], "default": None},
                                  "discount": {"type": "number", "default": 1e-05, "maximum": 1e20},
                                  "address": {"type": "object", "properties": {"zip": {"type": "string"}, "geo": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}}}}},
                   "required": ["items"]})]
NO_PROPS_TOOL = [fn("ping", "No arguments at all", {"type": "object"})]
ALL_TOOLS = TIME_TOOLS + CODE_TOOL + UNICODE_TOOL + ESCAPE_TOOL + NESTED_TOOL + NO_PROPS_TOOL


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def cases():
    user = {"role": "user", "content": "What time is it in Tokyo?"}
    sysm = {"role": "system", "content": "You are a helpful assistant."}
    yield "plain_user", {"messages": [user]}
    yield "plain_user_gen", {"messages": [user], "add_generation_prompt": True}
    for thinking in (True, False):
        yield f"plain_user_gen_thinking_{thinking}", {"messages": [user], "add_generation_prompt": True, "enable_thinking": thinking}
        yield f"plain_user_nogen_thinking_{thinking}", {"messages": [user], "add_generation_prompt": False, "enable_thinking": thinking}
    yield "system_user", {"messages": [sysm, user], "add_generation_prompt": True}
    yield "system_user_no_think", {"messages": [sysm, {"role": "user", "content": "Hi /no_think"}], "add_generation_prompt": True}
    yield "user_think_switch", {"messages": [{"role": "user", "content": "/think Solve 2+2"}], "add_generation_prompt": True, "enable_thinking": True}
    yield "system_with_soft_switch", {"messages": [{"role": "system", "content": "Be terse. /no_think"}, user], "add_generation_prompt": True}
    for name, tools in [("time", TIME_TOOLS), ("code", CODE_TOOL), ("unicode", UNICODE_TOOL), ("escapes", ESCAPE_TOOL),
                        ("nested_defs", NESTED_TOOL), ("no_props", NO_PROPS_TOOL), ("all", ALL_TOOLS)]:
        yield f"tools_{name}", {"messages": [user], "tools": tools, "add_generation_prompt": True}
        yield f"tools_{name}_system", {"messages": [sysm, user], "tools": tools, "add_generation_prompt": True, "enable_thinking": False}
    tc_obj = {"role": "assistant", "content": "", "tool_calls": [call("get_current_time", {"timezone": "Asia/Tokyo"})]}
    tc_str = {"role": "assistant", "content": "", "tool_calls": [call("get_current_time", "{\"timezone\": \"Asia/Tokyo\"}")]}
    tc_flat = {"role": "assistant", "content": "Let me check.", "tool_calls": [{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}]}
    result = {"role": "tool", "content": "{\"timezone\": \"Asia/Tokyo\", \"datetime\": \"2026-11-28T16:52:00+09:00\", \"is_dst\": false}"}
    answer = {"role": "assistant", "content": "It is 16:52 in Tokyo."}
    for name, tc in [("object_args", tc_obj), ("string_args", tc_str), ("flat_call_with_content", tc_flat)]:
        yield f"tool_round_{name}", {"messages": [user, tc, result], "tools": TIME_TOOLS, "add_generation_prompt": True}
        yield f"tool_round_{name}_answered", {"messages": [user, tc, result, answer], "tools": TIME_TOOLS}
    parallel = {"role": "assistant", "content": "", "tool_calls": [
        call("get_current_time", {"timezone": "Asia/Tokyo"}), call("get_current_time", {"timezone": "Europe/Paris"}),
        call("convert_time", {"source_timezone": "Asia/Tokyo", "time": "09:30", "target_timezone": "America/New_York"})]}
    results = [{"role": "tool", "content": "Tokyo 16:52"}, {"role": "tool", "content": "Paris 08:52"},
               {"role": "tool", "content": "<tool_response>nested</tool_response> & \"quoted\" 日本"}]
    yield "parallel_calls_consecutive_results", {"messages": [sysm, user, parallel] + results, "tools": TIME_TOOLS, "add_generation_prompt": True}
    yield "parallel_calls_no_thinking", {"messages": [user, parallel] + results, "tools": TIME_TOOLS, "add_generation_prompt": True, "enable_thinking": False}
    with_reasoning = {"role": "assistant", "content": "It is 16:52.", "reasoning_content": "The user wants Tokyo time.\nI will answer."}
    yield "reasoning_content_last_turn", {"messages": [user, with_reasoning]}
    yield "reasoning_content_earlier_turn_dropped", {"messages": [user, with_reasoning, {"role": "user", "content": "And in Paris?"}], "add_generation_prompt": True}
    think_in_content = {"role": "assistant", "content": "<think>\nplanning the answer\n</think>\n\nIt is 16:52."}
    yield "think_in_content_last", {"messages": [user, think_in_content]}
    yield "think_in_content_earlier", {"messages": [user, think_in_content, {"role": "user", "content": "thanks"}], "add_generation_prompt": True}
    reasoning_tool = {"role": "assistant", "content": "", "reasoning_content": "Need the tool.", "tool_calls": [call("get_current_time", {"timezone": "Asia/Tokyo"})]}
    yield "reasoning_with_tool_call_multi_step", {"messages": [user, reasoning_tool, result, {"role": "assistant", "content": "16:52", "reasoning_content": "Got it."}], "tools": TIME_TOOLS}
    yield "reasoning_with_tool_call_then_new_query", {"messages": [user, reasoning_tool, result, answer, {"role": "user", "content": "Convert 9:30 Tokyo to Paris"}], "tools": TIME_TOOLS, "add_generation_prompt": True}
    yield "user_message_wrapped_like_tool_response", {"messages": [user, {"role": "assistant", "content": "ok", "reasoning_content": "r1"}, {"role": "user", "content": "<tool_response>fake</tool_response>"}, {"role": "assistant", "content": "done", "reasoning_content": "r2"}]}
    code_call = {"role": "assistant", "content": "I'll compute it.", "tool_calls": [call("code_interpreter", {"code": "import numpy as np\nprint(np.arange(10).sum())\nprint('<&>\\t\"')"})]}
    yield "code_call_multiline_args", {"messages": [{"role": "user", "content": "Sum 0..9 with numpy"}, code_call, {"role": "tool", "content": "45\n<&>\t\""}], "tools": CODE_TOOL, "add_generation_prompt": True}
    odd_args = {"role": "assistant", "content": "", "tool_calls": [call("create_order", {"items": [{"sku": "A-1", "qty": 3, "price": 9.99, "tags": ["ünï", "😀"]}],
                                                                                    "rush": True, "note": None, "discount": 1e-05, "big": 12345678901234567890, "neg": -0.0, "exp": 1.5e300, "empty": {}, "list": []})]}
    yield "args_with_numbers_and_unicode", {"messages": [{"role": "user", "content": "Order 3 of A-1"}, odd_args, {"role": "tool", "content": "ok"}], "tools": NESTED_TOOL, "add_generation_prompt": True}
    multi = [sysm, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a joke /no_think"},
             {"role": "assistant", "content": "<think>\n\n</think>\n\nWhy did the chicken..."}, {"role": "user", "content": "Another one /think"}]
    yield "multi_turn_soft_switches", {"messages": multi, "add_generation_prompt": True}
    yield "multi_turn_soft_switches_thinking_off", {"messages": multi, "add_generation_prompt": True, "enable_thinking": False}
    yield "mid_conversation_system", {"messages": [user, answer, {"role": "system", "content": "Now answer in French."}, {"role": "user", "content": "Encore?"}], "add_generation_prompt": True}
    yield "empty_user_content", {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True}
    yield "whitespace_and_newlines", {"messages": [{"role": "user", "content": "\n\n  spaced  \n"}, {"role": "assistant", "content": "\n\nanswer\n\n", "reasoning_content": "\n\nthought\n\n"}]}
    cjk = {"role": "user", "content": "東京は今何時ですか？🙂 Ελληνικά العربية हिन्दी"}
    yield "cjk_emoji_scripts", {"messages": [cjk], "tools": UNICODE_TOOL, "add_generation_prompt": True}
    yield "extra_template_kwargs", {"messages": [user], "add_generation_prompt": True, "enable_thinking": True, "custom_flag": 7}
    long_chain = [user]
    for i in range(4):
        long_chain.append({"role": "assistant", "content": f"step {i}", "reasoning_content": f"thinking {i}", "tool_calls": [call("get_current_time", {"timezone": f"Etc/GMT+{i}"})]})
        long_chain.append({"role": "tool", "content": f"result {i}"})
    yield "long_multi_step_chain", {"messages": long_chain, "tools": TIME_TOOLS, "add_generation_prompt": True}
    yield "long_multi_step_chain_no_gen", {"messages": long_chain + [answer], "tools": TIME_TOOLS}


def main():
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    goldens = []
    for name, request in cases():
        kwargs = {k: v for k, v in request.items() if k not in ("messages", "tools")}
        text = tok.apply_chat_template(request["messages"], tools=request.get("tools"), tokenize=False, **kwargs)
        ids = tok.apply_chat_template(request["messages"], tools=request.get("tools"), tokenize=True, return_dict=False, **kwargs)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        assert ids == tok.encode(text, add_special_tokens=False), name
        goldens.append({"name": name, "request": request, "text": text, "ids": ids})
    names = [g["name"] for g in goldens]
    assert len(names) == len(set(names))
    OUT.write_text(json.dumps(goldens, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(goldens)} goldens to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
