#!/usr/bin/env python3
"""Query brands through `agentwire gateway` with only the standard library.

Start a gateway first, e.g. the demo's: `cargo run -p agentwire-agent -- demo --serve`.
Then: python3 examples/gateway.py [http://127.0.0.1:8402]
"""
import json
import sys
import urllib.error
import urllib.request

GATEWAY = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8402"


def ask(account, service, text):
    """One query; the answer as JSON (paid, receipt, answer)."""
    req = urllib.request.Request(f"{GATEWAY}/v1/query/{account}/{service}", data=text.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # the gateway explains: code, message, action
        return json.load(e)


def stream(account, service, text):
    """A streamed answer as server-sent events: yields ("chunk", text) then ("end", details)."""
    req = urllib.request.Request(
        f"{GATEWAY}/v1/query/{account}/{service}",
        data=text.encode(),
        method="POST",
        headers={"Accept": "text/event-stream"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        event = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                yield event, (data["data"] if event == "chunk" else data)


answer = ask("brand.devnet", "chat", "Do you ship to Lisbon?")
print("chat:", answer.get("answer"), "| paid", answer.get("paid"), "yoctoNEAR")
print("receipt cumulative:", (answer.get("receipt") or {}).get("cumulative"))

print("story: ", end="", flush=True)
for event, data in stream("brand.devnet", "story", "a tale told one word at a time by a brand agent"):
    if event == "chunk":
        print(data, end="", flush=True)
    elif event == "end":
        print("\npaid", data["paid"], "yoctoNEAR; receipt", data["receipt"]["cumulative"])
    elif event == "error":
        print("\nerror:", data)

with urllib.request.urlopen(f"{GATEWAY}/v1/channels") as r:
    for c in json.load(r)["channels"]:
        print(f"channel {c['channel_id']} with {c['payee']}: deposit {c['deposit']}, signed {c['signed']}")
