//! A small JSON Schema checker for the subset our schemas use: `type` (one or a list),
//! `properties`, `required`, `dependentRequired`, `items`, `additionalProperties` (a
//! schema or `false`), `enum`, `const`, `minimum`, `maximum`, `minLength`/`maxLength`,
//! `minItems`/`maxItems`, `minProperties`, `format: date`, `allOf`/`anyOf`/`oneOf`, and
//! `$ref` into `$defs`. Enough to hold every `--json` output to its checked-in
//! (generated) schema, and the fake Brevo's requests and answers to Brevo's definition
//! (`tests/fixtures/brevo/`). Other keywords (`format: email`, `default`, ...) are
//! notes for the reader and not checked; so is `patternProperties` (no regex here),
//! which turns off `additionalProperties: false`.

use serde_json::Value;

/// Every violation of `schema` by `value`, as "path: what".
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, schema, value, "$", &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
        {
            Some(target) => check(root, target, value, path, out),
            None => out.push(format!("{path}: unresolvable $ref {r}")),
        }
    }
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for o in all {
            check(root, o, value, path, out);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let fitting = options
                .iter()
                .filter(|o| {
                    let mut v = Vec::new();
                    check(root, o, value, path, &mut v);
                    v.is_empty()
                })
                .count();
            if fitting == 0 || (key == "oneOf" && fitting > 1) {
                out.push(format!(
                    "{path}: {value} fits {fitting} of the {key} options"
                ));
            }
        }
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        out.push(format!("{path}: {value} is not {c}"));
    }
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = type_name(value);
        let ok = allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
        if !ok {
            out.push(format!("{path}: {actual} where {allowed:?} is expected"));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        out.push(format!("{path}: {n} < {min}"));
    }
    bounds(schema, value, path, out);
    if let Value::Object(obj) = value {
        if let Some(Value::Object(deps)) = schema.get("dependentRequired") {
            for (k, needs) in deps.iter().filter(|(k, _)| obj.contains_key(*k)) {
                for n in needs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !obj.contains_key(n) {
                        out.push(format!("{path}: {k:?} without {n:?}"));
                    }
                }
            }
        }
        if let Some(Value::Array(req)) = schema.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push(format!("{path}: missing required {r:?}"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(root, s, v, &format!("{path}.{k}"), out),
                None => match schema.get("additionalProperties") {
                    Some(extra @ Value::Object(_)) => {
                        check(root, extra, v, &format!("{path}.{k}"), out);
                    }
                    // `patternProperties` (not checked: no regex here) may allow it.
                    Some(Value::Bool(false)) if schema.get("patternProperties").is_none() => {
                        out.push(format!("{path}: unknown field {k:?}"));
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check(root, s, v, &format!("{path}[{i}]"), out);
        }
    }
}

/// The size and range keywords: `maximum`, `minLength`/`maxLength` (in characters),
/// `minItems`/`maxItems`, `minProperties`, and `format: date` (`YYYY-MM-DD`).
fn bounds(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let limit = |k: &str| schema.get(k).and_then(Value::as_u64);
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        out.push(format!("{path}: {n} > {max}"));
    }
    let size = match value {
        Value::String(s) => Some((s.chars().count(), "minLength", "maxLength")),
        Value::Array(a) => Some((a.len(), "minItems", "maxItems")),
        Value::Object(o) => Some((o.len(), "minProperties", "maxProperties")),
        _ => None,
    };
    if let Some((n, min_key, max_key)) = size {
        let n = n as u64;
        if limit(min_key).is_some_and(|m| n < m) || limit(max_key).is_some_and(|m| n > m) {
            out.push(format!("{path}: size {n} outside {min_key}/{max_key}"));
        }
    }
    if let (Some("date"), Some(s)) = (schema.get("format").and_then(Value::as_str), value.as_str())
        && (s.len() != 10 || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err())
    {
        out.push(format!("{path}: {s:?} is not a YYYY-MM-DD date"));
    }
}

/// Panics unless `value` fits the checked-in schema `schemas/<name>.schema.json`.
pub fn assert_fits(name: &str, value: &Value) {
    let path = format!("{}/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
        .expect("schema JSON");
    let v = violations(&schema, value);
    assert!(
        v.is_empty(),
        "output does not fit {path}: {v:#?}\n{value:#}"
    );
}

#[test]
fn the_checker_catches_what_it_must() {
    let schema = serde_json::json!({"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer", "minimum": 0}, "b": {"type": ["string", "null"]},
        "c": {"type": "array", "items": {"type": "string", "enum": ["x"]}}},
        "additionalProperties": {"type": "integer"}});
    assert!(
        violations(
            &schema,
            &serde_json::json!({"a": 1, "b": null, "c": ["x"], "z": 3})
        )
        .is_empty()
    );
    assert_eq!(violations(&schema, &serde_json::json!({"b": 1})).len(), 2);
    assert_eq!(
        violations(&schema, &serde_json::json!({"a": -1, "c": ["y"], "z": "s"})).len(),
        3
    );
    let with_refs = serde_json::json!({"type": "object", "properties": {
        "f": {"anyOf": [{"$ref": "#/$defs/F"}, {"type": "null"}]}},
        "$defs": {"F": {"type": "object", "required": ["n"], "properties": {"n": {"const": 1}}}}});
    assert!(violations(&with_refs, &serde_json::json!({"f": null})).is_empty());
    assert!(violations(&with_refs, &serde_json::json!({"f": {"n": 1}})).is_empty());
    assert_eq!(
        violations(&with_refs, &serde_json::json!({"f": {"n": 2}})).len(),
        1
    );
    assert_eq!(
        violations(&with_refs, &serde_json::json!({"f": {}})).len(),
        1
    );
    let strict = serde_json::json!({"type": "object", "additionalProperties": false,
        "allOf": [{"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}],
        "dependentRequired": {"s": ["e"]},
        "properties": {"a": {"type": "string", "maxLength": 2}, "b": {"type": "integer", "maximum": 9},
            "p": {"type": "object", "minProperties": 1}, "l": {"type": "array", "minItems": 1},
            "s": {"type": "string", "format": "date"}, "e": {"type": "string"}}});
    let ok =
        serde_json::json!({"a": "xy", "b": 9, "p": {"k": 1}, "l": [1], "s": "2026-11-28", "e": ""});
    assert!(
        violations(&strict, &ok).is_empty(),
        "{:?}",
        violations(&strict, &ok)
    );
    let bad = serde_json::json!({"a": "xyz", "b": 10, "p": {}, "l": [], "s": "2026-11-31", "z": 1});
    // a too long, b too big, p empty, l empty, s no date, s without e, z unknown.
    assert_eq!(
        violations(&strict, &bad).len(),
        7,
        "{:?}",
        violations(&strict, &bad)
    );
    assert_eq!(violations(&strict, &serde_json::json!({})).len(), 1);
}
