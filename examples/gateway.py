#!/usr/bin/env python3
"""Query brands through `agentwire gateway` with only the standard library.

Start a gateway first, then name the brand's account (and the gateway, if not
on 127.0.0.1:8402):

    cargo run -p agentwire-agent -- demo --serve       # the demo's brand is brand.devnet
    python3 examples/gateway.py brand.devnet

    # or, with the README's four terminals and a gateway (examples/brand.toml is bob.devnet):
    python3 examples/gateway.py bob.devnet http://127.0.0.1:8402

The gateway's JSON keeps amounts raw (yoctoNEAR); this prints them in NEAR too.
"""
import json
import sys
import urllib.error
import urllib.request
from decimal import Decimal

ACCOUNT = sys.argv[1] if len(sys.argv) > 1 else "brand.devnet"
GATEWAY = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8402"
YOCTO_PER_NEAR = Decimal(10) ** 24


def near(yocto):
    """A raw amount (a decimal string of yoctoNEAR) in NEAR, exactly."""
    return f"{(Decimal(yocto) / YOCTO_PER_NEAR).normalize():f} NEAR"


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


answer = ask(ACCOUNT, "chat", "Do you ship to Lisbon?")
if "error" in answer:
    sys.exit(f"chat: {answer['error']['message']} ({answer['error']['action']})")
print("chat:", answer["answer"], "| paid", near(answer["paid"]), f"({answer['paid']} yoctoNEAR)")
print("receipt: charged", near((answer.get("receipt") or {}).get("cumulative", "0")), "in all on the channel")

print("story: ", end="", flush=True)
for event, data in stream(ACCOUNT, "story", "a tale told one word at a time by a brand agent"):
    if event == "chunk":
        print(data, end="", flush=True)
    elif event == "end":
        print("\npaid", near(data["paid"]), "| receipt: charged", near(data["receipt"]["cumulative"]), "in all")
    elif event == "error":
        print("\nerror:", data)

with urllib.request.urlopen(f"{GATEWAY}/v1/channels") as r:
    for c in json.load(r)["channels"]:
        print(f"channel {c['channel_id']} with {c['payee']}: deposit {near(c['deposit'])}, signed {near(c['signed'])}")
