//! A small JSON Schema checker for the subset our output schemas use: `type` (one or a
//! list), `properties`, `required`, `items`, `additionalProperties` (a schema), `enum`,
//! `const`, `minimum`, `anyOf`/`oneOf`, and `$ref` into `$defs`. Enough to hold every
//! `--json` output to its checked-in (generated) schema.

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
    if let Value::Object(obj) = value {
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
                None => {
                    if let Some(extra) =
                        schema.get("additionalProperties").filter(|e| e.is_object())
                    {
                        check(root, extra, v, &format!("{path}.{k}"), out);
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check(root, s, v, &format!("{path}[{i}]"), out);
        }
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
}
