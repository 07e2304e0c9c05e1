#!/usr/bin/env python3
"""An example `exec` metric for flow: the support team's house style.

An answer passes when it opens without filler ("In short", "Simply put",
"Briefly", "Great question"), has no emoji and no exclamation mark. flow
writes records as JSON lines on stdin and reads one JSON score per line.
"""
import json
import re
import sys

FILLER = ("in short", "simply put", "briefly", "great question", "the answer:")
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF]")

for line in sys.stdin:
    record = json.loads(line)
    output = record.get("output")
    if not isinstance(output, str):
        print(json.dumps({"error": "no output to check"}))
        continue
    problems = []
    if output.strip().lower().startswith(FILLER):
        problems.append("filler opener")
    if EMOJI.search(output):
        problems.append("emoji")
    if "!" in output:
        problems.append("exclamation mark")
    print(json.dumps({"score": 0.0 if problems else 1.0, "reason": ", ".join(problems) or "clean"}))
