//! Arbitrary bytes as the parts of an API request weft-apiserver decodes before anything is stored: the path
//! (routing), the query (percent-decoding, label and field selectors), and a body checked against a custom
//! resource's schema and for unknown fields. Every one must answer with a value or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use weft_apiserver::{crd, request, selector, strict};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let snap = weft_model::Snapshot::default();
    let _ = request::route(&text, &snap);
    let query = request::query(Some(&text));
    for value in query.values() {
        let _ = selector::Labels::parse(value);
        let _ = selector::Fields::parse(value, "Pod");
    }
    if let Ok(mut body) = serde_json::from_slice::<Value>(data) {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
            "properties": {"size": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"type": "string"}},
                "any": {"x-kubernetes-preserve-unknown-fields": true}, "port": {"x-kubernetes-int-or-string": true}}}}});
        let _ = strict::unknown_fields(&body, &schema);
        let _ = crd::check(&schema, &mut body);
        let _ = weft_model::manifest::decode(body);
    }
});
