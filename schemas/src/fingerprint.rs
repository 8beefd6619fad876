//! Schema fingerprints as the Avro specification defines them: the 64-bit Rabin fingerprint
//! (CRC-64-AVRO) of a schema's Parsing Canonical Form.
//!
//! Why not `apache_avro::Schema::fingerprint::<Rabin>()`: apache-avro 0.22 writes a
//! logical-type primitive such as `{"type": "long", "logicalType": "timestamp-millis"}` as
//! `{"type":"long"}` in the canonical form, where the specification (and Java's
//! `SchemaNormalization`, Python's `avro` and Ruby's `avro`) reduce it to `"long"`. Our schemas
//! use `timestamp-millis`, so that crate's fingerprints would differ from the ones every other
//! Avro library computes from the same `.avsc` file, and analytics readers could not find the
//! writer schema. This module follows the specification; its tests check it against
//! apache-avro on schemas without logical types.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The CRC-64-AVRO polynomial's "empty" value, from the Avro specification.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The 64-bit Rabin fingerprint (CRC-64-AVRO) of `data`, as the Avro specification defines it.
///
/// Single-object encoding writes it little-endian after the `C3 01` magic.
pub fn rabin(data: &[u8]) -> u64 {
    data.iter().fold(EMPTY, |fp, &byte| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(byte)) & 0xff) as usize]
    })
}

/// The fingerprint of a schema given as `.avsc` JSON text: [`rabin`] of its
/// [`parsing_canonical_form`].
pub fn schema_fingerprint(avsc: &str) -> Result<u64> {
    Ok(rabin(parsing_canonical_form(avsc)?.as_bytes()))
}

/// The Parsing Canonical Form of a schema given as `.avsc` JSON text.
///
/// Follows the specification's rules: primitives (with or without a logical type) become their
/// bare name; named types get full names and are written out in full only the first time; only
/// `name`, `type`, `fields`, `symbols`, `items`, `values` and `size` are kept, in that order;
/// no whitespace. The text should already have been validated as a schema: this function checks
/// only what it needs.
pub fn parsing_canonical_form(avsc: &str) -> Result<String> {
    let json: Value = serde_json::from_str(avsc).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let mut out = String::with_capacity(avsc.len() / 2);
    Canonicalizer::default().schema(&json, None, &mut out)?;
    Ok(out)
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Walks a schema's JSON, remembering which named types it has written out already.
#[derive(Debug, Default)]
struct Canonicalizer {
    defined: HashSet<String>,
}

impl Canonicalizer {
    fn schema(&mut self, json: &Value, namespace: Option<&str>, out: &mut String) -> Result<()> {
        match json {
            Value::String(name) => {
                self.reference(name, namespace, out);
                Ok(())
            }
            Value::Array(branches) => {
                out.push('[');
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.schema(branch, namespace, out)?;
                }
                out.push(']');
                Ok(())
            }
            Value::Object(object) => self.object(object, namespace, out),
            other => Err(invalid(format!("a schema cannot be {other}"))),
        }
    }

    /// A type named by a string: a primitive, or a named type defined earlier.
    fn reference(&self, name: &str, namespace: Option<&str>, out: &mut String) {
        if PRIMITIVES.contains(&name) {
            quoted(name, out);
        } else {
            quoted(&full_name(name, namespace), out);
        }
    }

    fn object(
        &mut self,
        object: &Map<String, Value>,
        namespace: Option<&str>,
        out: &mut String,
    ) -> Result<()> {
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: the schema is the inner one.
            Some(inner @ (Value::Object(_) | Value::Array(_))) => {
                return self.schema(inner, namespace, out);
            }
            _ => return Err(invalid("an object schema needs a \"type\"")),
        };
        match kind {
            // [PRIMITIVES]: a primitive with attributes (a logical type, say) is just its name.
            kind if PRIMITIVES.contains(&kind) => quoted(kind, out),
            "record" | "error" | "enum" | "fixed" => self.named(kind, object, namespace, out)?,
            "array" => {
                out.push_str("{\"type\":\"array\",\"items\":");
                self.schema(required(object, "items")?, namespace, out)?;
                out.push('}');
            }
            "map" => {
                out.push_str("{\"type\":\"map\",\"values\":");
                self.schema(required(object, "values")?, namespace, out)?;
                out.push('}');
            }
            // A reference to a named type, written as an object.
            name => self.reference(name, namespace, out),
        }
        Ok(())
    }

    fn named(
        &mut self,
        kind: &str,
        object: &Map<String, Value>,
        enclosing: Option<&str>,
        out: &mut String,
    ) -> Result<()> {
        let name = required_str(object, "name")?;
        let namespace = match object.get("namespace") {
            Some(Value::String(ns)) => Some(ns.as_str()),
            _ => enclosing,
        };
        let full = full_name(name, namespace);
        // Types nested in this one take its namespace (the part before the last dot).
        let own_namespace = full.rsplit_once('.').map(|(ns, _)| ns.to_owned());
        if !self.defined.insert(full.clone()) {
            quoted(&full, out);
            return Ok(());
        }
        out.push_str("{\"name\":");
        quoted(&full, out);
        out.push_str(",\"type\":");
        // An "error" is a record for parsing purposes.
        quoted(if kind == "error" { "record" } else { kind }, out);
        match kind {
            "record" | "error" => {
                out.push_str(",\"fields\":[");
                let fields = required(object, "fields")?
                    .as_array()
                    .ok_or_else(|| invalid("\"fields\" must be an array"))?;
                for (i, field) in fields.iter().enumerate() {
                    let field = field
                        .as_object()
                        .ok_or_else(|| invalid("a field must be an object"))?;
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"name\":");
                    quoted(required_str(field, "name")?, out);
                    out.push_str(",\"type\":");
                    self.schema(required(field, "type")?, own_namespace.as_deref(), out)?;
                    out.push('}');
                }
                out.push(']');
            }
            "enum" => {
                out.push_str(",\"symbols\":[");
                let symbols = required(object, "symbols")?
                    .as_array()
                    .ok_or_else(|| invalid("\"symbols\" must be an array"))?;
                for (i, symbol) in symbols.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let symbol = symbol
                        .as_str()
                        .ok_or_else(|| invalid("enum symbols must be strings"))?;
                    quoted(symbol, out);
                }
                out.push(']');
            }
            _ => {
                // [INTEGERS]: the size as a plain number, whether it was written as one or not.
                let size = match required(object, "size")? {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| invalid("a fixed \"size\" must be a non-negative integer"))?;
                let _ = write!(out, ",\"size\":{size}");
            }
        }
        out.push('}');
        Ok(())
    }
}

/// [FULLNAMES]: a dotted name is already full; otherwise it takes the namespace in effect.
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

/// Writes a JSON string. Avro names and symbols are `[A-Za-z_][A-Za-z0-9_]*` (dotted for full
/// names), so escaping is only a guard against invalid input.
fn quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn required<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Value> {
    object
        .get(key)
        .ok_or_else(|| invalid(format!("missing \"{key}\"")))
}

fn required_str<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    required(object, key)?
        .as_str()
        .ok_or_else(|| invalid(format!("\"{key}\" must be a string")))
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidSchema {
        reason: reason.into(),
    }
}

/// apache-avro's own fingerprint of a schema text: the little-endian CRC-64-AVRO of its
/// canonical form as apache-avro computes it. What [`rabin`] is checked against in tests; not
/// for records (apache-avro keeps logical types in its canonical form, see the module's doc).
#[doc(hidden)]
pub fn apache_fingerprint(avsc: &str) -> u64 {
    use apache_avro::rabin::Rabin;
    let bytes = apache_avro::Schema::parse_str(avsc)
        .expect("a valid schema")
        .fingerprint::<Rabin>()
        .bytes;
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use apache_avro::Schema;

    use super::*;

    #[test]
    fn rabin_matches_known_values_and_apache_avro() {
        // The fingerprint of the empty input is the polynomial's EMPTY value.
        assert_eq!(rabin(b""), EMPTY);
        // `"int"`: 8247732601305521295, the value Java's SchemaNormalization gives.
        assert_eq!(rabin(b"\"int\""), 0x7275_d51a_3f39_5c8f);
        for text in [
            "\"null\"",
            "\"long\"",
            "{\"type\":\"map\",\"values\":\"int\"}",
            "[\"null\",\"double\"]",
        ] {
            assert_eq!(rabin(text.as_bytes()), apache_fingerprint(text), "{text}");
        }
    }

    /// A schema with every kind of type but no logical types, where apache-avro is right.
    const MIXED: &str = r#"{
        "type": "record", "name": "Outer", "namespace": "a.b", "doc": "d",
        "aliases": ["Old"],
        "fields": [
            {"name": "i", "type": {"type": "int"}, "default": 1, "doc": "x"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"], "default": "X"}},
            {"name": "f", "type": {"type": "fixed", "name": "c.F", "size": 4}},
            {"name": "arr", "type": {"type": "array", "items": "E"}},
            {"name": "m", "type": {"type": "map", "values": ["null", "c.F"]}},
            {"name": "inner", "type": {"type": "record", "name": "Inner", "namespace": "z",
                "fields": [{"name": "again", "type": ["null", "a.b.E"]}]}},
            {"name": "u", "type": ["null", "string", "z.Inner"], "default": null}
        ]
    }"#;

    #[test]
    fn canonical_form_matches_apache_avro_without_logical_types() {
        let ours = parsing_canonical_form(MIXED).unwrap();
        let theirs = Schema::parse_str(MIXED).unwrap().canonical_form();
        assert_eq!(ours, theirs);
        assert_eq!(
            schema_fingerprint(MIXED).unwrap(),
            apache_fingerprint(MIXED)
        );
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        let avsc = r#"{"type": "record", "name": "T", "namespace": "n", "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;
        assert_eq!(
            parsing_canonical_form(avsc).unwrap(),
            r#"{"name":"n.T","type":"record","fields":[{"name":"at","type":"long"}]}"#
        );
        // apache-avro 0.22 keeps the braces, which is why this module exists.
        let theirs = Schema::parse_str(avsc).unwrap().canonical_form();
        assert_eq!(
            theirs.replace(r#"{"type":"long"}"#, r#""long""#),
            parsing_canonical_form(avsc).unwrap()
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for text in [
            "",
            "{",
            "3",
            r#"{"type": "record"}"#,
            r#"{"type": "fixed", "name": "F", "size": -1}"#,
        ] {
            assert!(parsing_canonical_form(text).is_err(), "{text}");
        }
    }
}
