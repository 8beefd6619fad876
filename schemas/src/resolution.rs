//! Avro schema resolution of a decoded value, from its writer's schema to the reader's, with
//! union branches matched **by name** as the specification says.
//!
//! Why not `apache_avro::types::Value::resolve` alone: its generic values forget which named
//! branch of a union they came from, so it picks the first reader branch the value happens to
//! fit. Our location union has `Connected { session_id }` and `Disconnected { session_id }`:
//! resolved that way, a `Disconnected` written by another version would be read as a
//! `Connected`. Here the writer's branch is looked up in the writer's schema and matched to the
//! reader's branch of the same name. Leaves (primitives, logical types, fixed, promotions such
//! as int to long) and field defaults are still left to apache-avro.

use apache_avro::Schema;
use apache_avro::schema::{Name, Names, RecordSchema};
use apache_avro::types::Value;

/// Resolves values written with one schema to another. Both name tables index the named types
/// of their schema, for `Schema::Ref` lookups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver<'a> {
    pub(crate) writer_names: &'a Names,
    pub(crate) reader_names: &'a Names,
}

/// How well a writer branch fits a reader branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    Exact,
    Promoted,
}

impl Resolver<'_> {
    /// `value`, decoded with `writer`, as a value of `reader`.
    pub(crate) fn resolve(
        &self,
        value: Value,
        writer: &Schema,
        reader: &Schema,
    ) -> Result<Value, String> {
        let writer = deref(writer, self.writer_names)?;
        let reader = deref(reader, self.reader_names)?;
        match (writer, reader) {
            (Schema::Union(union), _) => {
                let Value::Union(index, inner) = value else {
                    return Err(format!("expected a union value, found {value:?}"));
                };
                let branch = union
                    .variants()
                    .get(index as usize)
                    .ok_or_else(|| format!("union branch {index} out of range"))?;
                self.resolve(*inner, branch, reader)
            }
            (_, Schema::Union(union)) => {
                let (index, branch) = self.best_branch(writer, union.variants())?;
                let resolved = self.resolve(value, writer, branch)?;
                Ok(Value::Union(index as u32, Box::new(resolved)))
            }
            (Schema::Record(w), Schema::Record(r)) => self.record(value, w, r),
            (Schema::Enum(w), Schema::Enum(r)) => {
                let Value::Enum(_, symbol) = value else {
                    return Err(format!("expected an enum value, found {value:?}"));
                };
                let symbol = if r.symbols.contains(&symbol) {
                    symbol
                } else if let Some(default) = &r.default {
                    default.clone()
                } else {
                    return Err(format!(
                        "symbol {symbol} of enum {} is unknown to the reader, which has no default",
                        w.name
                    ));
                };
                let index = r.symbols.iter().position(|s| *s == symbol).unwrap_or(0);
                Ok(Value::Enum(index as u32, symbol))
            }
            (Schema::Array(w), Schema::Array(r)) => match value {
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| self.resolve(item, &w.items, &r.items))
                    .collect::<Result<_, _>>()
                    .map(Value::Array),
                other => Err(format!("expected an array value, found {other:?}")),
            },
            (Schema::Map(w), Schema::Map(r)) => match value {
                Value::Map(entries) => entries
                    .into_iter()
                    .map(|(k, v)| Ok((k, self.resolve(v, &w.types, &r.types)?)))
                    .collect::<Result<_, String>>()
                    .map(Value::Map),
                other => Err(format!("expected a map value, found {other:?}")),
            },
            // The same leaf type: nothing to convert.
            _ if std::mem::discriminant(writer) == std::mem::discriminant(reader)
                && Primitive::of(writer).is_some() =>
            {
                Ok(value)
            }
            // apache-avro would narrow (a long that fits into an int); the specification does not.
            _ if self.fit(writer, reader).is_none()
                && Primitive::of(writer).is_some()
                && Primitive::of(reader).is_some() =>
            {
                Err(format!("a {writer:?} cannot be read as a {reader:?}"))
            }
            _ => value
                .resolve_with_names(reader, self.reader_names)
                .map_err(|e| e.to_string()),
        }
    }

    fn record(&self, value: Value, w: &RecordSchema, r: &RecordSchema) -> Result<Value, String> {
        if !same_name(&w.name, &r.name, r.aliases.as_deref()) {
            return Err(format!("record {} cannot be read as {}", w.name, r.name));
        }
        let Value::Record(fields) = value else {
            return Err(format!("expected a record value, found {value:?}"));
        };
        // Writer fields by position, taken out as the reader's fields claim them.
        let mut written: Vec<Option<Value>> = fields.into_iter().map(|(_, v)| Some(v)).collect();
        let mut out = Vec::with_capacity(r.fields.len());
        for field in &r.fields {
            let from_writer = w
                .fields
                .iter()
                .position(|wf| wf.name == field.name || field.aliases.contains(&wf.name));
            let resolved = match from_writer.and_then(|i| Some((i, written.get_mut(i)?.take()?))) {
                Some((i, v)) => self.resolve(v, &w.fields[i].schema, &field.schema)?,
                None => match &field.default {
                    Some(default) => self
                        .default_value(default, &field.schema)
                        .map_err(|e| format!("default of {}.{}: {e}", r.name, field.name))?,
                    None => {
                        return Err(format!(
                            "field {}.{} is not written and has no default",
                            r.name, field.name
                        ));
                    }
                },
            };
            out.push((field.name.clone(), resolved));
        }
        Ok(Value::Record(out))
    }

    /// A field's default as a value of its schema. A union field's default is a value of the
    /// union's first branch.
    fn default_value(&self, default: &serde_json::Value, schema: &Schema) -> Result<Value, String> {
        let value = Value::try_from(default.clone()).map_err(|e| e.to_string())?;
        let resolved = match deref(schema, self.reader_names)? {
            Schema::Union(union) => match union.variants().first() {
                Some(Schema::Null) | None => return Ok(Value::Union(0, Box::new(Value::Null))),
                Some(first) => value
                    .resolve_with_names(first, self.reader_names)
                    .map(|v| Value::Union(0, Box::new(v))),
            },
            other => value.resolve_with_names(other, self.reader_names),
        };
        resolved.map_err(|e| e.to_string())
    }

    /// The reader branch a writer schema resolves to: the first exact match, else the first
    /// it can be promoted to.
    fn best_branch<'r>(
        &self,
        writer: &Schema,
        branches: &'r [Schema],
    ) -> Result<(usize, &'r Schema), String> {
        let mut best: Option<(Fit, usize)> = None;
        for (i, branch) in branches.iter().enumerate() {
            let fit = self.fit(writer, deref(branch, self.reader_names)?);
            if let Some(fit) = fit
                && best.is_none_or(|(b, _)| fit < b)
            {
                best = Some((fit, i));
            }
        }
        let (_, index) = best.ok_or_else(|| {
            format!("no branch of the reader's union matches the writer's {writer:?}")
        })?;
        Ok((index, &branches[index]))
    }

    fn fit(&self, writer: &Schema, reader: &Schema) -> Option<Fit> {
        match (writer, reader) {
            (Schema::Record(w), Schema::Record(r)) => {
                same_name(&w.name, &r.name, r.aliases.as_deref()).then_some(Fit::Exact)
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                same_name(&w.name, &r.name, r.aliases.as_deref()).then_some(Fit::Exact)
            }
            (Schema::Fixed(w), Schema::Fixed(r)) => {
                same_name(&w.name, &r.name, r.aliases.as_deref()).then_some(Fit::Exact)
            }
            (Schema::Array(_), Schema::Array(_)) | (Schema::Map(_), Schema::Map(_)) => {
                Some(Fit::Exact)
            }
            _ => {
                let (w, r) = (Primitive::of(writer)?, Primitive::of(reader)?);
                if w == r {
                    Some(Fit::Exact)
                } else if w.promotes_to(r) {
                    Some(Fit::Promoted)
                } else {
                    None
                }
            }
        }
    }
}

/// Records, enums and fixed types match when their unqualified names do, or the reader lists
/// the writer's name as an alias.
fn same_name(
    writer: &Name,
    reader: &Name,
    reader_aliases: Option<&[apache_avro::schema::Alias]>,
) -> bool {
    writer.name() == reader.name()
        || reader_aliases
            .unwrap_or_default()
            .iter()
            .any(|alias| alias.name() == writer.name())
}

/// Follows a reference to a named type.
fn deref<'s>(schema: &'s Schema, names: &'s Names) -> Result<&'s Schema, String> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .ok_or_else(|| format!("reference to unknown type {name}")),
        other => Ok(other),
    }
}

/// The primitive a leaf schema is encoded as (logical types fall back to theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Primitive {
    fn of(schema: &Schema) -> Option<Primitive> {
        Some(match schema {
            Schema::Null => Primitive::Null,
            Schema::Boolean => Primitive::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Primitive::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Primitive::Long,
            Schema::Float => Primitive::Float,
            Schema::Double => Primitive::Double,
            Schema::Bytes | Schema::BigDecimal => Primitive::Bytes,
            Schema::String => Primitive::String,
            _ => return None,
        })
    }

    /// The specification's promotions.
    fn promotes_to(self, reader: Primitive) -> bool {
        use Primitive::{Bytes, Double, Float, Int, Long, String};
        matches!(
            (self, reader),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        )
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::schema::ResolvedSchema;

    use super::*;

    fn parse(avsc: &str) -> (Schema, Names) {
        let schema = Schema::parse_str(avsc).unwrap();
        let names = ResolvedSchema::new(&schema)
            .unwrap()
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        (schema, names)
    }

    fn resolve(writer: &str, reader: &str, value: Value) -> Result<Value, String> {
        let (w, wn) = parse(writer);
        let (r, rn) = parse(reader);
        Resolver {
            writer_names: &wn,
            reader_names: &rn,
        }
        .resolve(value, &w, &r)
    }

    const TWINS: &str = r#"{"type": "record", "name": "E", "fields": [{"name": "b", "type": [
        {"type": "record", "name": "A", "fields": [{"name": "s", "type": "string"}]},
        {"type": "record", "name": "B", "fields": [{"name": "s", "type": "string"}]}]}]}"#;
    /// The same union in the other order, with a field added to the record.
    const TWINS_SWAPPED: &str = r#"{"type": "record", "name": "E", "fields": [
        {"name": "n", "type": "int", "default": 5},
        {"name": "b", "type": [
            {"type": "record", "name": "B", "fields": [{"name": "s", "type": "string"}]},
            {"type": "record", "name": "A", "fields": [{"name": "s", "type": "string"}]}]}]}"#;

    fn twin(branch: u32) -> Value {
        Value::Record(vec![(
            "b".into(),
            Value::Union(
                branch,
                Box::new(Value::Record(vec![("s".into(), Value::String("x".into()))])),
            ),
        )])
    }

    #[test]
    fn union_branches_are_matched_by_name_not_shape() {
        // Written as B (branch 1): the reader's B is its branch 0.
        let resolved = resolve(TWINS, TWINS_SWAPPED, twin(1)).unwrap();
        let Value::Record(fields) = resolved else {
            panic!()
        };
        assert_eq!(fields[0], ("n".into(), Value::Int(5)), "the default");
        let Value::Union(branch, _) = &fields[1].1 else {
            panic!()
        };
        assert_eq!(*branch, 0);
        // Written as A (branch 0): the reader's A is its branch 1.
        let Value::Record(fields) = resolve(TWINS, TWINS_SWAPPED, twin(0)).unwrap() else {
            panic!()
        };
        assert!(matches!(fields[1].1, Value::Union(1, _)));
    }

    #[test]
    fn primitives_are_promoted_into_unions_and_fields() {
        let writer = r#"{"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "int"}, {"name": "b", "type": "int"}]}"#;
        let reader = r#"{"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "long"}, {"name": "b", "type": ["null", "string", "double"]}]}"#;
        let value = Value::Record(vec![
            ("a".into(), Value::Int(3)),
            ("b".into(), Value::Int(4)),
        ]);
        assert_eq!(
            resolve(writer, reader, value).unwrap(),
            Value::Record(vec![
                ("a".into(), Value::Long(3)),
                ("b".into(), Value::Union(2, Box::new(Value::Double(4.0)))),
            ])
        );
    }

    #[test]
    fn renamed_fields_and_records_follow_aliases() {
        let writer =
            r#"{"type": "record", "name": "Old", "fields": [{"name": "x", "type": "long"}]}"#;
        let reader = r#"{"type": "record", "name": "New", "aliases": ["Old"],
            "fields": [{"name": "y", "type": "long", "aliases": ["x"]}]}"#;
        let value = Value::Record(vec![("x".into(), Value::Long(1))]);
        assert_eq!(
            resolve(writer, reader, value).unwrap(),
            Value::Record(vec![("y".into(), Value::Long(1))])
        );
    }

    #[test]
    fn incompatible_changes_are_errors() {
        let writer =
            r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}"#;
        let no_default = r#"{"type": "record", "name": "R", "fields": [
            {"name": "x", "type": "long"}, {"name": "y", "type": "long"}]}"#;
        let value = || Value::Record(vec![("x".into(), Value::Long(1))]);
        assert!(
            resolve(writer, no_default, value())
                .unwrap_err()
                .contains("R.y")
        );
        let renamed =
            r#"{"type": "record", "name": "S", "fields": [{"name": "x", "type": "long"}]}"#;
        assert!(resolve(writer, renamed, value()).is_err());
        let narrowed =
            r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}"#;
        assert!(resolve(writer, narrowed, value()).is_err());
    }
}
