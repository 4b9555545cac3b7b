//! Vectors for the chat interface (spec §13.11): request bodies with their
//! decoded fields, prompt bound and ceiling under the fixture per-token
//! pricing (spec §6.2), refused bodies, and answers with what they charge.

use agentwire_protocol::chat::{ChatAnswer, ChatRequest, MESSAGE_OVERHEAD, PROMPT_OVERHEAD};
use agentwire_protocol::pricing::Pricing;
use agentwire_protocol::testing;
use serde_json::{json, Value};

use crate::{fields, hx};

/// A request's fields, every one present (absent optional fields `null`,
/// `stop` `[]`, `stream` its value), with each message's content length in
/// UTF-8 bytes (what the prompt bound counts).
pub fn request_fields(r: &ChatRequest) -> Value {
    json!({
        "messages": r.messages.iter().map(|m| json!({
            "role": m.role.as_str(), "content": m.content, "content_bytes": m.content.len(),
        })).collect::<Vec<_>>(),
        "model": r.model,
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
        "top_p": r.top_p,
        "stop": r.stop,
        "presence_penalty": r.presence_penalty,
        "frequency_penalty": r.frequency_penalty,
        "seed": r.seed,
        "stream": r.stream,
    })
}

fn body_json(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(t) => json!({ "body": hx(body), "body_text": t }),
        Err(_) => json!({ "body": hx(body), "body_text": null }),
    }
}

fn valid_request(description: &str, body: &[u8], pricing: &Pricing, price: u128) -> Value {
    let mut v = body_json(body);
    v["description"] = json!(description);
    match ChatRequest::decode(body) {
        Ok(r) => {
            v["fields"] = request_fields(&r);
            v["prompt_bound"] = json!(r.prompt_bound().to_string());
            v["reference_encoding"] = json!(String::from_utf8_lossy(&r.encode()));
            match pricing.admission(price, body) {
                Ok(c) => v["ceiling"] = json!(c.to_string()),
                Err(e) => {
                    let (error, detail) = crate::outcome::<(), _>(&Err(e));
                    v["ceiling_error"] = json!(error);
                    v["ceiling_detail"] = json!(detail);
                }
            }
        }
        Err(e) => panic!("chat vector {description:?} should decode: {e}"),
    }
    v
}

fn invalid_request(description: &str, body: &[u8]) -> Value {
    let (error, detail) = crate::outcome(&ChatRequest::decode(body));
    let mut v = body_json(body);
    v["description"] = json!(description);
    v["error"] = json!(error);
    v["detail"] = json!(detail);
    v
}

fn answer_case(description: &str, body: &[u8], admitted: u128, pricing: &Pricing) -> Value {
    let mut v = body_json(body);
    v["description"] = json!(description);
    match ChatAnswer::decode(body) {
        Ok(a) => {
            v["error"] = json!("Ok");
            v["text"] = json!(a.text);
            v["finish_reason"] = json!(a.finish_reason);
            v["usage"] =
                json!({ "prompt_tokens": a.usage.prompt_tokens, "completion_tokens": a.usage.completion_tokens });
            v["admitted"] = json!(admitted.to_string());
            v["charge"] = json!(pricing.charge(&a.usage, admitted).map(|c| c.to_string()));
        }
        Err(e) => {
            let (error, detail) = crate::outcome::<(), _>(&Err(e));
            v["error"] = json!(error);
            v["detail"] = json!(detail);
        }
    }
    v
}

/// chat.json
pub fn chat() -> Value {
    let service = testing::per_token_service();
    let (pricing, price) = (&service.pricing, service.price);
    let m = r#"[{"role":"user","content":"What are your opening hours?"}]"#;
    let long = "x".repeat(440);
    let plain = format!(r#"{{"messages":{m}}}"#).into_bytes();
    let valid = vec![
        valid_request("one user message, every other field absent: max_tokens is the cap (512)", &plain, pricing, price),
        valid_request(
            "system, user and assistant turns, max_tokens 64, every sampling field",
            br#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Your hours?"}],"model":"llama3","max_tokens":64,"temperature":0.7,"top_p":0.9,"stop":["\n\n","END"],"presence_penalty":-0.5,"frequency_penalty":1.5,"seed":42,"stream":false}"#,
            pricing,
            price,
        ),
        valid_request(
            "non-ASCII content: the prompt bound counts UTF-8 bytes of the decoded text, escaped or not",
            r#"{"messages":[{"role":"user","content":"Olá, café \u2615 ☕"}],"max_tokens":1}"#.as_bytes(),
            pricing,
            price,
        ),
        valid_request(
            "whitespace, another field order, null for absent fields, integer temperature: read the same; written back in the reference form",
            br#" { "stream" : true , "max_tokens" : 100 , "model" : null , "temperature" : 1 , "messages" : [ { "content" : "hi" , "role" : "user" } ] } "#,
            pricing,
            price,
        ),
        valid_request(
            "empty content and empty stop list are allowed",
            br#"{"messages":[{"role":"user","content":""}],"stop":[]}"#,
            pricing,
            price,
        ),
        valid_request(
            "bounds met exactly: max_tokens 512 (the cap), temperature 2, top_p 1, penalties -2 and 2, 4 stops of 64 bytes",
            format!(
                r#"{{"messages":{m},"max_tokens":512,"temperature":2,"top_p":1,"presence_penalty":-2,"frequency_penalty":2,"stop":["{s}","{s}","{s}","{s}"]}}"#,
                s = "s".repeat(64)
            )
            .as_bytes(),
            pricing,
            price,
        ),
        valid_request(
            "max_tokens 513: a valid request, but above this service's cap",
            format!(r#"{{"messages":{m},"max_tokens":513}}"#).as_bytes(),
            pricing,
            price,
        ),
        valid_request(
            "a 440-byte message: the ceiling (472 x input + 512 x output) is above the service's price",
            format!(r#"{{"messages":[{{"role":"user","content":"{long}"}}]}}"#).as_bytes(),
            pricing,
            price,
        ),
        valid_request(
            "the same 440-byte message with max_tokens 500: under the price",
            format!(r#"{{"messages":[{{"role":"user","content":"{long}"}}],"max_tokens":500}}"#).as_bytes(),
            pricing,
            price,
        ),
    ];
    let many = format!(r#"{{"messages":[{}]}}"#, vec![r#"{"role":"user","content":"x"}"#; 257].join(","));
    let invalid = vec![
        invalid_request("not JSON", b"What are your opening hours?"),
        invalid_request("not UTF-8", b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}"),
        invalid_request("a JSON array, not an object", m.as_bytes()),
        invalid_request("no messages field", br#"{"max_tokens":5}"#),
        invalid_request("messages empty", br#"{"messages":[]}"#),
        invalid_request("257 messages", many.as_bytes()),
        invalid_request("unknown field n", format!(r#"{{"messages":{m},"n":2}}"#).as_bytes()),
        invalid_request("unknown role tool", br#"{"messages":[{"role":"tool","content":"x"}]}"#),
        invalid_request("role in upper case", br#"{"messages":[{"role":"User","content":"x"}]}"#),
        invalid_request("a message without content", br#"{"messages":[{"role":"user"}]}"#),
        invalid_request("content null", br#"{"messages":[{"role":"user","content":null}]}"#),
        invalid_request(
            "content as a list of parts",
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
        ),
        invalid_request("unknown message field name", br#"{"messages":[{"role":"user","content":"x","name":"bob"}]}"#),
        invalid_request("duplicate field messages", format!(r#"{{"messages":{m},"messages":{m}}}"#).as_bytes()),
        invalid_request("trailing characters after the object", format!(r#"{{"messages":{m}}} x"#).as_bytes()),
        invalid_request("a lone surrogate escape", br#"{"messages":[{"role":"user","content":"\ud800"}]}"#),
        invalid_request(
            "a raw control character in a string",
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"a\x01\"}]}",
        ),
        invalid_request("max_tokens 0", format!(r#"{{"messages":{m},"max_tokens":0}}"#).as_bytes()),
        invalid_request(
            "max_tokens 1048577 (2^20 + 1)",
            format!(r#"{{"messages":{m},"max_tokens":1048577}}"#).as_bytes(),
        ),
        invalid_request(
            "max_tokens 2^32, not a u32",
            format!(r#"{{"messages":{m},"max_tokens":4294967296}}"#).as_bytes(),
        ),
        invalid_request("max_tokens 1.0, not an integer", format!(r#"{{"messages":{m},"max_tokens":1.0}}"#).as_bytes()),
        invalid_request("max_tokens as a string", format!(r#"{{"messages":{m},"max_tokens":"5"}}"#).as_bytes()),
        invalid_request("temperature 2.5", format!(r#"{{"messages":{m},"temperature":2.5}}"#).as_bytes()),
        invalid_request("temperature -0.1", format!(r#"{{"messages":{m},"temperature":-0.1}}"#).as_bytes()),
        invalid_request("top_p 0", format!(r#"{{"messages":{m},"top_p":0}}"#).as_bytes()),
        invalid_request("top_p 1.5", format!(r#"{{"messages":{m},"top_p":1.5}}"#).as_bytes()),
        invalid_request("presence_penalty -2.5", format!(r#"{{"messages":{m},"presence_penalty":-2.5}}"#).as_bytes()),
        invalid_request("frequency_penalty 3", format!(r#"{{"messages":{m},"frequency_penalty":3}}"#).as_bytes()),
        invalid_request("5 stop sequences", format!(r#"{{"messages":{m},"stop":["a","b","c","d","e"]}}"#).as_bytes()),
        invalid_request("an empty stop sequence", format!(r#"{{"messages":{m},"stop":[""]}}"#).as_bytes()),
        invalid_request(
            "a stop sequence of 65 bytes",
            format!(r#"{{"messages":{m},"stop":["{}"]}}"#, "s".repeat(65)).as_bytes(),
        ),
        invalid_request("stop as a string, not a list", format!(r#"{{"messages":{m},"stop":"END"}}"#).as_bytes()),
        invalid_request("model empty", format!(r#"{{"messages":{m},"model":""}}"#).as_bytes()),
        invalid_request(
            "model of 129 bytes",
            format!(r#"{{"messages":{m},"model":"{}"}}"#, "m".repeat(129)).as_bytes(),
        ),
        invalid_request("seed -1", format!(r#"{{"messages":{m},"seed":-1}}"#).as_bytes()),
        invalid_request("stream null", format!(r#"{{"messages":{m},"stream":null}}"#).as_bytes()),
    ];
    // Answers, charged under the fixture pricing at the first valid request's ceiling.
    let admitted = match pricing.admission(price, &plain) {
        Ok(c) => c,
        Err(e) => panic!("fixture request: {e}"),
    };
    let answers = vec![
        answer_case(
            "three deltas and the end event, one line each (one StreamChunk each when streamed)",
            concat!(
                "{\"type\":\"delta\",\"text\":\"We are open \"}\n",
                "{\"type\":\"delta\",\"text\":\"9:00\u{2013}18:00, \"}\n",
                "{\"type\":\"delta\",\"text\":\"Mon\u{2013}Fri.\"}\n",
                "{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":12}}\n"
            )
            .as_bytes(),
            admitted,
            pricing,
        ),
        answer_case(
            "the reference writer's whole answer (a Response body): one delta, then the end; max_tokens reached",
            &ChatAnswer {
                text: "Mon\u{2013}Fri".into(),
                finish_reason: "length".into(),
                usage: agentwire_protocol::chat::Usage { prompt_tokens: 21, completion_tokens: 512 },
            }
            .encode(),
            admitted,
            pricing,
        ),
        answer_case(
            "no text at all, blank lines skipped: only the end event",
            b"\n{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":0}}\n\n",
            admitted,
            pricing,
        ),
        answer_case(
            "usage above the ceiling: the charge is the ceiling admitted",
            b"{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":100000,\"completion_tokens\":512}}\n",
            admitted,
            pricing,
        ),
        answer_case(
            "no end event",
            b"{\"type\":\"delta\",\"text\":\"We are open\"}\n",
            admitted,
            pricing,
        ),
        answer_case(
            "the end event without its newline",
            b"{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}",
            admitted,
            pricing,
        ),
        answer_case(
            "a delta after the end event",
            b"{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n{\"type\":\"delta\",\"text\":\"x\"}\n",
            admitted,
            pricing,
        ),
        answer_case("unknown event type", b"{\"type\":\"tool_call\",\"text\":\"x\"}\n", admitted, pricing),
        answer_case("an unknown field in a delta", b"{\"type\":\"delta\",\"text\":\"x\",\"index\":0}\n", admitted, pricing),
        answer_case(
            "usage without completion_tokens",
            b"{\"type\":\"end\",\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":5}}\n",
            admitted,
            pricing,
        ),
        answer_case("an upstream's raw server-sent event line", b"data: {\"choices\":[]}\n", admitted, pricing),
    ];
    json!({
        "description": "The chat interface (spec §13.11): request bodies (UTF-8 JSON) with their decoded fields, prompt bound and price ceiling under `service`'s per-token pricing (spec §6.2), or the error a reader reports; answers (event lines) with their text, finish reason, usage and the charge at `admitted`.",
        "service": fields::service(&service),
        "prompt_overhead": PROMPT_OVERHEAD as u64,
        "message_overhead": MESSAGE_OVERHEAD as u64,
        "requests": { "valid": valid, "invalid": invalid },
        "answers": answers,
    })
}
