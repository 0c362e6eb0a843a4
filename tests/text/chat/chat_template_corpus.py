"""Conversations for the chat-template parity test (chat_template_parity_test.py).

Each entry is (name, messages, tools). They cover what real chat templates branch on: system
prompts (first and later), multi-turn chats, tools with JSON-schema parameters, assistant tool
calls with arguments as a dict and as a JSON string, several calls per message, consecutive tool
results, reasoning from earlier turns and from the current agent loop (reasoning_content,
reasoning, thinking, and inline <think> blocks), list-of-parts content, unicode, text that looks
like template syntax, None values (which transformers drops), and a conversation that makes the
MiniMax template raise.
"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web. Returns the top results — titles and snippets.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {
                        "site": {"type": "string"},
                        "recent": {"type": "boolean", "default": False},
                        "score": {"type": "number", "default": 0.5},
                    },
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}

UNICODE_TOOL = {
    "type": "function",
    "function": {
        "name": "traduire_texte",
        "description": "Traduit un texte. 中文说明。 Émojis 🌍 allowed; quotes 'single' \"double\" \\ backslash\n2nd line",
        "parameters": {
            "type": "object",
            "properties": {"texte": {"type": "string", "description": "à traduire"}},
            "required": [],
        },
    },
}


def call(name, arguments, call_id=None):
    c = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id:
        c["id"] = call_id
    return c


CONVERSATIONS = [
    ("user_only", [{"role": "user", "content": "Hello!"}], None),
    (
        "system_user",
        [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        None,
    ),
    (
        "multi_turn",
        [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the chicken cross the road?"},
            {"role": "user", "content": "Why?"},
        ],
        None,
    ),
    (
        "ends_with_assistant",
        [
            {"role": "user", "content": "Count to three."},
            {"role": "assistant", "content": "1, 2, 3."},
        ],
        None,
    ),
    (
        "reasoning_earlier_turn",
        [
            {"role": "user", "content": "What is the capital of France?"},
            {
                "role": "assistant",
                "content": "Paris.",
                "reasoning_content": "The user asks about France; the capital is Paris.",
            },
            {"role": "user", "content": "And Germany?"},
        ],
        None,
    ),
    (
        "reasoning_current_turn",
        [
            {"role": "user", "content": "Think, then answer: 17*3?"},
            {
                "role": "assistant",
                "content": "51",
                "reasoning_content": "\n17*3 = 51.\nDouble-check: 17*3 = 34+17 = 51.\n",
            },
        ],
        None,
    ),
    (
        "inline_think_blocks",
        [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "<think>\nreasoning one\n</think>\n\nAnswer one"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "<think>reasoning two</think>Answer two"},
        ],
        None,
    ),
    (
        "reasoning_alias_fields",
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "reasoning": "via the reasoning field"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d", "thinking": "via the thinking field"},
        ],
        None,
    ),
    (
        "tool_call_dict_arguments",
        [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "Weather in Paris for 3 days, in celsius?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "I should call get_weather.",
                "tool_calls": [
                    call("get_weather", {"city": "Paris", "unit": "celsius", "days": 3}, "call_1")
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
            {
                "role": "assistant",
                "content": "It is 21.5 °C and clear in Paris.",
                "reasoning_content": "The tool says 21.5 and clear.",
            },
        ],
        [WEATHER_TOOL],
    ),
    (
        "tool_call_string_arguments",
        [
            {"role": "user", "content": "Search for jinja whitespace control."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    call("search_web", "{\"query\": \"jinja whitespace control\", \"tags\": [\"docs\"]}")
                ],
            },
            {"role": "tool", "content": "1. Template Designer Documentation"},
        ],
        [SEARCH_TOOL, WEATHER_TOOL],
    ),
    (
        "parallel_tool_calls",
        [
            {"role": "user", "content": "Weather in Tokyo and Lima, and search news."},
            {
                "role": "assistant",
                "content": "Let me check.",
                "reasoning_content": "Three calls in parallel.",
                "tool_calls": [
                    call("get_weather", {"city": "Tokyo"}),
                    call("get_weather", {"city": "Lima", "unit": "fahrenheit", "days": 1}),
                    call(
                        "search_web",
                        {
                            "query": "news",
                            "filters": {"site": "example.org", "recent": True, "score": 0.75},
                            "tags": ["a", "b"],
                        },
                    ),
                ],
            },
            {"role": "tool", "content": "Tokyo: 18C"},
            {"role": "tool", "content": "Lima: 70F"},
            {"role": "tool", "content": "No news."},
        ],
        [WEATHER_TOOL, SEARCH_TOOL],
    ),
    (
        "agent_loop_two_steps",
        [
            {"role": "system", "content": "Agent mode."},
            {"role": "user", "content": "Find the weather in Oslo, then search for umbrellas."},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "Step 1: weather.",
                "tool_calls": [call("get_weather", {"city": "Oslo"})],
            },
            {"role": "tool", "content": "Rain, 9C"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "Step 2: it rains, search umbrellas.",
                "tool_calls": [call("search_web", {"query": "umbrella", "filters": {}, "tags": []})],
            },
            {"role": "tool", "content": "Umbrella shop on Main St."},
            {
                "role": "assistant",
                "content": "It rains in Oslo (9 °C); there is an umbrella shop on Main St.",
                "reasoning_content": "Summarize.",
            },
            {"role": "user", "content": "Thanks! And tomorrow?"},
        ],
        [WEATHER_TOOL, SEARCH_TOOL],
    ),
    (
        "tool_arguments_varied_values",
        [
            {"role": "user", "content": "Edge values"},
            {
                "role": "assistant",
                "content": "ok",
                "tool_calls": [
                    call(
                        "search_web",
                        {
                            "query": "naïve café 東京 😀 \"quoted\" back\\slash\nnewline\ttab",
                            "filters": {"score": 1.0, "site": None, "recent": False},
                            "tags": [1, 2.5, 1e-08, 12345678901234, True, None, {"k": []}],
                        },
                    )
                ],
            },
            {"role": "tool", "content": "done"},
        ],
        [SEARCH_TOOL],
    ),
    (
        "unicode_everywhere",
        [
            {"role": "system", "content": "Réponds en français. 日本語も可。"},
            {"role": "user", "content": "¿Qué tal? 👋🏽 — “quotes” ‘single’ «guillemets» עִבְרִית العربية"},
            {"role": "assistant", "content": "Très bien ! 😀\n\n– fin –"},
            {"role": "user", "content": "Zero-width\u200bjoiner\u200d and nbsp\u00a0here\u2028line sep"},
        ],
        [UNICODE_TOOL],
    ),
    (
        "content_parts",
        [
            {
                "role": "system",
                "content": [{"type": "text", "text": "System as parts. "}, {"type": "text", "text": "Second part."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look at this: "},
                    {"type": "image", "url": "http://example.com/x.png"},
                    {"type": "text", "text": "what is it?"},
                ],
            },
        ],
        None,
    ),
    (
        "template_like_text",
        [
            {"role": "user", "content": "Render {{ this }} and {% that %} and {# this #} literally, plus ]~b] and <think>"},
            {"role": "assistant", "content": "Sure: {{ this }} {% endfor %}"},
            {"role": "user", "content": "   leading and trailing spaces   \n\n"},
        ],
        None,
    ),
    (
        "later_system_message",
        [
            {"role": "system", "content": "First system."},
            {"role": "user", "content": "u1"},
            {"role": "system", "content": "A later system message."},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
        ],
        None,
    ),
    (
        "system_with_date_location",
        [
            {
                "role": "system",
                "content": "Use the context.",
                "current_date": "2025-11-25",
                "current_location": "Zürich, Switzerland",
            },
            {"role": "user", "content": "Where am I?"},
        ],
        None,
    ),
    (
        "empty_and_none_content",
        [
            {"role": "user", "content": ""},
            {"role": "assistant", "content": None, "name": None},
            {"role": "user", "content": "again", "name": "bob"},
        ],
        None,
    ),
    (
        "empty_tools_list",
        [{"role": "user", "content": "No tools here."}],
        [],
    ),
    (
        "tool_without_call",
        [
            {"role": "user", "content": "hi"},
            {"role": "tool", "content": "orphan tool result"},
        ],
        None,
    ),
    (
        "tool_content_parts",
        [
            {"role": "user", "content": "Run it."},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Rome"})]},
            {
                "role": "tool",
                "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}],
            },
        ],
        [WEATHER_TOOL],
    ),
    (
        "tool_call_without_function_wrapper",
        [
            {"role": "user", "content": "flat"},
            {
                "role": "assistant",
                "content": "calling",
                "tool_calls": [{"name": "get_weather", "arguments": {"city": "Nice"}}],
            },
        ],
        [WEATHER_TOOL],
    ),
    (
        "long_multiline",
        [
            {"role": "system", "content": "Line 1\nLine 2\n\n  indented line\n\ttabbed\n"},
            {"role": "user", "content": "```python\ndef f(x):\n    return {\"a\": x}\n```\nExplain."},
            {
                "role": "assistant",
                "content": "The function returns a dict.\n\n- key: a\n- value: x",
                "reasoning_content": "Simple code.\n\nNothing tricky.",
            },
        ],
        None,
    ),
]

# Extra keyword arguments passed to apply_chat_template (and to m2fp4 --context) per run.
EXTRA_CONTEXTS = [
    {},
    {"enable_thinking": False},
    {"enable_thinking": True},
    {"model_identity": "You are MiniMax-M2, made by MiniMax."},
]
