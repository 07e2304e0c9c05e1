#!/usr/bin/env python3
"""An example `exec` metric for flow: rewards short answers.

flow writes the records to score as JSON lines on stdin and reads one JSON
score per line from stdout, in the same order: a number, or an object with
`score` (0..1), optionally `pass` and `reason`, or `{"error": "..."}` for a
record this metric cannot score. Use it in a spec as

    - {type: exec, name: brevity, command: [python3, metrics/brevity.py]}
"""
import json
import sys

MAX_WORDS = 12  # answers longer than this start losing points

for line in sys.stdin:
    record = json.loads(line)
    output = record.get("output")
    if not isinstance(output, str):
        print(json.dumps({"error": "no output to measure"}))
        continue
    words = len(output.split())
    score = 1.0 if words <= MAX_WORDS else round(MAX_WORDS / words, 3)
    print(json.dumps({"score": score, "pass": words <= MAX_WORDS, "reason": f"{words} words"}))
