//! What `demo` and `walkthrough` print: a few lines of text per step for
//! people, or under `--json` one JSON object per line and step, with raw
//! values (amounts as decimal strings in the smallest unit, times in Unix
//! seconds or milliseconds), so that a script can follow them.

use serde_json::{json, Map, Value};

/// Where the steps of a run go.
#[derive(Clone, Copy)]
pub(crate) struct Steps {
    json: bool,
}

impl Steps {
    pub(crate) fn new(json: bool) -> Steps {
        Steps { json }
    }

    /// Whether steps are JSON lines.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// One step: `text` for people, or `{"step": step, …fields}` under `--json`.
    pub(crate) fn say(&self, step: &str, text: impl AsRef<str>, fields: Value) {
        if self.json {
            let mut line = Map::new();
            line.insert("step".into(), json!(step));
            if let Value::Object(fields) = fields {
                line.extend(fields);
            }
            println!("{}", Value::Object(line));
        } else {
            println!("{}", text.as_ref());
        }
    }
}

/// An amount in the smallest unit, as JSON (a decimal string: u128 does not fit a JSON number).
pub(crate) fn raw(amount: u128) -> Value {
    json!(amount.to_string())
}
