//! Encoding records into framed Avro and decoding them back, with schema resolution.
//!
//! Decoding has two paths. When the writer's version is the reader's (the usual case), the datum
//! is deserialized straight into the Rust type. When it is another version, the datum is decoded
//! into a generic value with the writer's schema, resolved to the reader's schema by the Avro
//! rules (defaults fill added fields, removed fields are skipped), then turned into the type.

use apache_avro::write_avro_datum_ref;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::framing::write_single_object_header;
use crate::resolution::Resolver;
use crate::schema_version::SchemaVersion;

/// A Rust type that is one of our Avro records.
pub trait Record: Serialize + DeserializeOwned {
    /// The schema version this type matches: the newest published one. Records of this type
    /// are written with it, and records of other versions are resolved to it when read.
    fn schema() -> &'static SchemaVersion;
}

/// Appends `value` as a single-object encoded record (`C3 01` + fingerprint + datum) to `buf`.
///
/// `buf` is not cleared first, so one buffer can be reused (clear it between records) or hold
/// several records. On error `buf` is left as it was.
pub fn encode<T: Record>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    let schema = T::schema();
    let start = buf.len();
    write_single_object_header(schema.fingerprint(), buf);
    write_datum(schema, value, buf).inspect_err(|_| buf.truncate(start))
}

/// `value` as a new single-object encoded record.
pub fn to_vec<T: Record>(value: &T) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    encode(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a framed record written with any published version of `T`'s schema.
///
/// Schema-registry framed records need a catalog with the ids registered: use
/// [`Catalog::decode`] on it.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T> {
    Catalog::published().decode(bytes)
}

/// Appends the Avro datum of `value` (no header).
pub(crate) fn write_datum<T: Serialize>(
    schema: &'static SchemaVersion,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<()> {
    write_avro_datum_ref(schema.schema(), schema.encoder_names()?, value, buf)
        .map(drop)
        .map_err(|cause| Error::Encode {
            schema: schema.name().to_owned(),
            cause,
        })
}

/// Decodes `datum`, written with `writer`, into `T`, whose schema is `reader`.
pub(crate) fn decode_with<T: DeserializeOwned>(
    writer: &SchemaVersion,
    reader: &SchemaVersion,
    mut datum: &[u8],
) -> Result<T> {
    let value = if writer.fingerprint() == reader.fingerprint() {
        // The reader's own version (the usual case): straight into the type.
        writer
            .datum_reader()
            .read_deser::<T>(&mut datum)
            .map_err(|e| Error::datum(writer.name(), e))?
    } else if writer.name() != reader.name() {
        // Resolution would fail too, but with a message about fields rather than record types.
        return Err(Error::WrongRecordType {
            expected: reader.name().to_owned(),
            found: writer.name().to_owned(),
        });
    } else {
        let generic = writer
            .datum_reader()
            .read_value(&mut datum)
            .map_err(|e| Error::datum(writer.name(), e))?;
        let resolver = Resolver {
            writer_names: writer.owned_names(),
            reader_names: reader.owned_names(),
        };
        let resolved = resolver
            .resolve(generic, writer.schema(), reader.schema())
            .map_err(|reason| Error::Incompatible {
                reader: reader.name().to_owned(),
                writer_fingerprint: writer.fingerprint(),
                reason,
            })?;
        apache_avro::from_value::<T>(&resolved).map_err(|e| Error::Incompatible {
            reader: reader.name().to_owned(),
            writer_fingerprint: writer.fingerprint(),
            reason: e.to_string(),
        })?
    };
    if !datum.is_empty() {
        return Err(Error::TrailingBytes {
            schema: writer.name().to_owned(),
            count: datum.len(),
        });
    }
    Ok(value)
}
