"""Drives `agentwire gateway` with the official `openai` package, as an agent would.

Usage: python openai_gateway.py BASE_URL MODEL CAP
Prints one JSON object: a completion, a streamed completion (delta by delta),
and what each bad request got (status and OpenAI-shaped error).
"""
import json
import sys
import urllib.error
import urllib.request

import openai
from openai import OpenAI

base_url, model, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120)
out = {"openai_version": openai.__version__}

r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello, brand!"}])
out["completion"] = {
    "text": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
    "usage": r.usage.model_dump(),
    "agentwire": (r.model_extra or {}).get("agentwire"),
}

deltas, usage, finish, extension = [], None, None, None
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Stream it, please."}],
    max_tokens=cap,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for choice in chunk.choices:
        if choice.delta.content:
            deltas.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
            extension = (chunk.model_extra or {}).get("agentwire")
out["stream"] = {"deltas": deltas, "usage": usage, "finish_reason": finish, "agentwire": extension}


def failure(**kwargs):
    """What a bad request gets: the HTTP status and the error object."""
    try:
        if kwargs.get("stream"):
            for _ in client.chat.completions.create(**kwargs):
                pass
        else:
            client.chat.completions.create(**kwargs)
        return {"status": 200, "error": None}
    except openai.APIStatusError as e:
        return {"status": e.status_code, "error": (e.body or {}), "type": type(e).__name__}
    except openai.APIError as e:  # an error event in the middle of a stream
        return {"status": None, "error": e.body, "message": str(e), "type": type(e).__name__}


user = [{"role": "user", "content": "hi"}]
account, service = model.split("/")
out["bad"] = {
    "no_messages": failure(model=model, messages=[]),
    "unknown_model": failure(model=f"{account}/nosuchmodel", messages=user),
    "unknown_brand": failure(model="nobody.devnet/chat", messages=user),
    "max_tokens_above_cap": failure(model=model, messages=user, max_tokens=cap + 1),
    "slash_too_many": failure(model=f"{model}/extra", messages=user),
    "upstream_garbage": failure(model=model, messages=[{"role": "user", "content": "send garbage"}]),
    "upstream_cut": failure(model=model, messages=[{"role": "user", "content": "cut me off"}]),
    "upstream_cut_streamed": failure(model=model, messages=[{"role": "user", "content": "cut me off"}], stream=True),
}
req = urllib.request.Request(
    base_url + "/chat/completions", data=b"this is not json", method="POST", headers={"Content-Type": "application/json"}
)
try:
    urllib.request.urlopen(req, timeout=30)
    out["bad"]["not_json"] = {"status": 200}
except urllib.error.HTTPError as e:
    out["bad"]["not_json"] = {"status": e.code, "error": json.load(e)}

models = client.models.list()
out["models"] = [{"id": m.id, "owned_by": m.owned_by, "agentwire": (m.model_extra or {}).get("agentwire")} for m in models.data]
print(json.dumps(out))
