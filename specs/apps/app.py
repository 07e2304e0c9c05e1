"""A toy retrieval-augmented support bot: the system under test of
specs/app.yaml. Standard library only.

It retrieves the passages of docs.jsonl that share the most words with the
question and answers with the sentence of the best one that matches best.
Three ways to run it, one per way flow can drive your own app:

  python3 app.py                  JSONL on stdin/stdout (`provider: exec`):
                                  reads {"record", "prompt", "messages"} a line,
                                  prints {"output", "usage", "cost_usd"} a line
  python3 app.py --serve PORT     an HTTP server (`provider: http`): POST /answer
                                  with {"question", "top_k"}, answers
                                  {"data": {"answer", "sources"}, "usage", "cost"}
  python3 app.py --retrieve       a filter (`kind: exec`): reads records, prints
                                  each with its `context` passages added

APP_TOKEN, when set, is the bearer token the server requires.
"""

import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
PRICE_PER_TOKEN = 0.000002  # what the toy "costs", in USD


def words(text):
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2]


def load_docs():
    with open(os.path.join(HERE, "docs.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


DOCS = load_docs()


def retrieve(question, top_k=2):
    q = set(words(question))
    ranked = sorted(DOCS, key=lambda d: (-len(q & set(words(d["text"]))), d["id"]))
    return ranked[:top_k]


def answer(question, context=None, top_k=2):
    passages = context or [d["text"] for d in retrieve(question, top_k)]
    q = set(words(question))
    sentences = [s.strip() for p in passages for s in re.split(r"(?<=\.)\s+", p) if s.strip()]
    best = max(sentences, key=lambda s: len(q & set(words(s))), default="I do not know.")
    tokens_in = len(question.split()) + sum(len(p.split()) for p in passages)
    tokens_out = len(best.split())
    usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
    return best, usage, round((tokens_in + tokens_out) * PRICE_PER_TOKEN, 8)


def serve_jsonl():
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        record = request.get("record", {})
        question = record.get("question") or request.get("prompt", "")
        text, usage, cost = answer(question, record.get("context"))
        print(json.dumps({"output": text, "usage": usage, "cost_usd": cost}), flush=True)


def retrieve_filter():
    for line in sys.stdin:
        if line.strip():
            record = json.loads(line)
            record["context"] = [d["text"] for d in retrieve(record["question"])]
            print(json.dumps(record), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: flow reuses its connections

    def do_POST(self):
        token = os.environ.get("APP_TOKEN")
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            return self.reply(401, {"error": "bad token"})
        if self.path != "/answer":
            return self.reply(404, {"error": f"no route {self.path}"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        text, usage, cost = answer(body.get("question", ""), top_k=int(body.get("top_k", 2)))
        sources = [d["id"] for d in retrieve(body.get("question", ""), int(body.get("top_k", 2)))]
        self.reply(200, {"data": {"answer": text, "sources": sources}, "usage": usage, "cost": cost})

    def reply(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        # The default backlog (5) drops connections past it: a client's
        # concurrent calls would wait a second for a SYN retry.
        ThreadingHTTPServer.request_queue_size = 128
        server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
        print(f"listening on http://127.0.0.1:{server.server_port}/answer", file=sys.stderr, flush=True)
        server.serve_forever()
    elif sys.argv[1:2] == ["--retrieve"]:
        retrieve_filter()
    else:
        serve_jsonl()
