"""A fake OpenAI-compatible chat server for memtune's LLM stages: deterministic answers, real token counts, injected
latency. For tests, the concurrency benchmark and dry runs without a key; it knows nothing of any model.

    uv run python benchmarks/fake_openai.py --port 8011 --latency 0.3      # then:
    OPENAI_BASE_URL=http://127.0.0.1:8011/v1 OPENAI_API_KEY=fake MEMTUNE_LM_MODEL=gpt-4o-mini \
        uv run memtune-eval policy=mem0_llm lm=openai dataset=fixture

`POST /v1/chat/completions` reads the prompt DSPy's ChatAdapter wrote (the output fields named in the system
message, the input fields `[[ ## name ## ]]` of the last user message) and answers every signature memtune has:

  facts       one fact per substantive sentence of each new message (at most 2 a message), citing its number;
              greetings, questions and short sentences give none
  summary     the previous summary plus the first words of each new message, kept under ~250 words
  operations  per new fact, against the shown memories by word overlap: the same text NOOP, overlap >= 0.6 UPDATE,
              a negated fact overlapping >= 0.3 DELETE, else ADD (one operation per memory id)
  answer      the words of the best-overlapping memory that the question lacks (its date for "when" questions)
  label       CORRECT when the generated answer shares a word with the gold answer
  (anything else: an empty list, the first allowed literal, or "n/a", so an unknown stage still parses)

The answer is a function of the prompt alone, so a run is reproducible whatever order the requests arrive in.
`usage` reports cl100k_base tokens of the prompt (plus 4 per message and 3 per reply, OpenAI's chat overhead) and of
the completion. Every request sleeps `latency` seconds (asyncio: any number at once); `GET /stats` gives the
requests served and the peak number in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request  # the serve extra

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n")
_OUTPUT = re.compile(r"^\d+\. `(\w+)` \((.*?)\)(?::|$)", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9']+")
_STOP = set(
    "a an the and or but of to in on at for with by from as is are was were be been i you he she it we they me my "
    "your his her its our their this that what which who when where why how do does did have has had so not no".split()
)


def output_fields(system: str) -> list[tuple[str, str]]:
    """(name, type) of the output fields DSPy's ChatAdapter lists in the system message."""
    part = system.split("Your output fields are:", 1)[-1].split("All interactions will be structured", 1)[0]
    return _OUTPUT.findall(part)


def input_fields(user: str) -> dict[str, str]:
    """The `[[ ## name ## ]]` fields of the (last) user message, by name."""
    user = user.split("\n\nRespond with the corresponding output fields", 1)[0]
    parts = _FIELD.split(user)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _json(text: str, default):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return default


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _overlap(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


_MESSAGE = re.compile(r"^(?:(\d+)\. )?(?:\[([^\]]*)\] )?([^:]{1,40}): (.*)$", re.DOTALL)


def extract(fields: dict[str, str]) -> list[dict]:
    facts = []
    for line in _json(fields.get("new_messages", "[]"), []):
        m = _MESSAGE.match(str(line))
        if not m:
            continue
        number, stamp, speaker, text = m.groups()
        kept = [s for s in re.split(r"(?<=[.!])\s+", text) if len(s.split()) >= 5 and not s.rstrip().endswith("?")]
        for sentence in kept[:2]:
            date = f" (on {stamp.split(' on ')[-1]})" if stamp else ""
            facts.append({"fact": f"{speaker} said {sentence.rstrip('.!')}{date}", "sources": [int(number or 1)]})
    return facts


def summarize(fields: dict[str, str]) -> str:
    lines = [str(x) for x in _json(fields.get("new_messages", "[]"), [])]
    new = " ".join(" ".join(line.split()[:10]) + "." for line in lines)
    words = (fields.get("previous_summary", "") + " " + new).split()
    return " ".join(words[-250:])


def decide(fields: dict[str, str]) -> list[dict]:
    memories = [m for m in _json(fields.get("existing_memories", "[]"), []) if isinstance(m, dict)]
    used: set[int] = set()
    ops = []
    for fact in _json(fields.get("new_facts", "[]"), []):
        fact = str(fact)
        scored = [(_overlap(fact, str(m.get("text", ""))), m) for m in memories if m.get("id") not in used]
        best, memory = max(scored, key=lambda x: x[0], default=(0.0, None))
        negated = bool(re.search(r"\b(not|no longer|never)\b", fact.lower()))
        if memory is not None and str(memory.get("text", "")).strip() == fact.strip():
            ops.append({"event": "NOOP", "id": memory["id"], "text": fact})
        elif memory is not None and best >= 0.6:
            ops.append({"event": "UPDATE", "id": memory["id"], "text": fact})
        elif memory is not None and negated and best >= 0.3:
            ops.append({"event": "DELETE", "id": memory["id"], "text": ""})
        else:
            ops.append({"event": "ADD", "id": None, "text": fact})
            continue
        used.add(memory["id"])
    return ops


def answer(fields: dict[str, str]) -> str:
    question = fields.get("question", "")
    memories = [m for m in _json(fields.get("memories", "[]"), []) if isinstance(m, dict)]
    scored = [(len(_words(question) & _words(str(m.get("memory", "")))), -i, m) for i, m in enumerate(memories)]
    best = max(scored, key=lambda x: (x[0], x[1]), default=None)
    if best is None or best[0] == 0:
        return "Not mentioned"
    memory = best[2]
    if question.lower().startswith("when"):
        return str(memory.get("said_at", "")).split(" on ")[-1] or "Not mentioned"
    asked = _words(question)
    rest = [w for w in str(memory.get("memory", "")).split() if w.lower().strip(".,!?'\"") not in asked]
    return " ".join(rest[-5:]) or "Not mentioned"


def judge(fields: dict[str, str]) -> tuple[str, str]:
    shared = _words(fields.get("gold_answer", "")) & _words(fields.get("generated_answer", ""))
    return (
        ("The answers share " + ", ".join(sorted(shared)[:3]) + ".", "CORRECT") if shared else ("No overlap.", "WRONG")
    )


def _default(kind: str) -> str:
    if kind.startswith("list") or kind.startswith("dict"):
        return "[]" if kind.startswith("list") else "{}"
    literal = re.search(r"Literal\[['\"]([^'\"]+)", kind)
    if literal:
        return literal.group(1)
    return {"bool": "False", "int": "0", "float": "0.0"}.get(kind, "n/a")


def respond(messages: list[dict]) -> str:
    """The completion for a ChatAdapter prompt: every output field filled, then the completed marker."""
    system = next((str(m["content"]) for m in messages if m.get("role") == "system"), "")
    user = next((str(m["content"]) for m in reversed(messages) if m.get("role") == "user"), "")
    outputs, fields = output_fields(system), input_fields(user)
    names = [name for name, _ in outputs]
    values: dict[str, str] = {}
    if names == ["facts"]:
        values["facts"] = json.dumps(extract(fields))
    elif names == ["summary"]:
        values["summary"] = summarize(fields)
    elif names == ["operations"]:
        values["operations"] = json.dumps(decide(fields))
    elif names == ["answer"]:
        values["answer"] = answer(fields)
    elif set(names) == {"reasoning", "label"}:
        values["reasoning"], values["label"] = judge(fields)
    for name, kind in outputs:
        values.setdefault(name, _default(kind))
    return "".join(f"[[ ## {n} ## ]]\n{values[n]}\n\n" for n in names) + "[[ ## completed ## ]]"


def usage(messages: list[dict], completion: str) -> dict:
    from memtune.optimize.evaluation.metrics import count_tokens

    prompt = sum(count_tokens(str(m.get("content") or "")) + 4 for m in messages) + 3
    done = count_tokens(completion)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": done,
        "total_tokens": prompt + done,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def make_app(latency: float = 0.0, record: list | None = None):
    """The FastAPI app: /v1/chat/completions, /v1/models, /stats. `record`: every request's messages are appended."""
    app = FastAPI()
    stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "memtune"}]}

    @app.get("/stats")
    async def get_stats() -> dict:
        return dict(stats)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            await asyncio.sleep(latency)
            messages = body.get("messages") or []
            if record is not None:
                record.append(messages)
            text = respond(messages)
            return {
                "id": f"fake-{stats['requests']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage(messages, text),
            }
        finally:
            stats["in_flight"] -= 1

    return app


@contextmanager
def uvicorn_thread(app) -> Iterator[str]:
    """Serve `app` with a real uvicorn on 127.0.0.1:<free port> in a thread; yields its base URL."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_in_thread(latency: float = 0.0, record: list | None = None) -> Iterator[str]:
    """The fake server in a thread (tests); yields its base URL (…/v1)."""
    with uvicorn_thread(make_app(latency, record)) as url:
        yield f"{url}/v1"


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds each request sleeps before answering")
    args = parser.parse_args()
    uvicorn.run(make_app(args.latency), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
