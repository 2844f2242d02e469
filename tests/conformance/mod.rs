//! The shared conformance cases (`tests/data/conformance.json`), read by the
//! conformance suite and the cross-parser check.
#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

/// One case: an input and what a spec-exact parser dispatches for it.
#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub rule: String,
    pub input: Option<String>,
    pub input_hex: Option<String>,
    pub events: Vec<Value>,
    pub last_event_id: Option<String>,
    pub final_retry: Option<u64>,
}

impl Case {
    /// The input bytes, from text or (for invalid UTF-8) hex.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.input, &self.input_hex) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(hex)) => (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect(),
            _ => panic!("case {}: exactly one of input, input_hex", self.name),
        }
    }
}

pub fn cases() -> Vec<Case> {
    let cases: Cases = serde_json::from_str(include_str!("../data/conformance.json")).unwrap();
    cases.cases
}

/// An event as the cases (and `examples/decode.rs`) write it.
pub fn event_json(event: &str, data: &str, id: &str, retry: Option<Duration>) -> Value {
    let mut value = json!({ "type": event, "data": data, "id": id });
    if let Some(retry) = retry {
        value["retry"] = json!(u64::try_from(retry.as_millis()).unwrap());
    }
    value
}
