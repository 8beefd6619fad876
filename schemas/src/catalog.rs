//! The catalog of known writer schemas: every published version of every record, found by
//! fingerprint, plus the schema-registry ids a caller has registered.
//!
//! [`Catalog::published`] holds the `.avsc` files of `schemas/avro/`, embedded in the binary and
//! parsed once. A program that reads schema-registry framing, or a test with extra versions,
//! makes its own catalog with [`Catalog::with_published`] and adds to it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use apache_avro::types::Value;

use crate::codec::{Record, decode_with, write_datum};
use crate::error::{Error, Result};
use crate::fingerprint::schema_fingerprint;
use crate::framing::{Frame, WriterRef, write_registry_header};
use crate::published;
use crate::schema_version::SchemaVersion;

/// Known writer schemas by fingerprint, and registered schema-registry ids.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// A handful of entries (a few versions of three records): a linear scan over the
    /// fingerprints beats hashing them.
    versions: Vec<Arc<SchemaVersion>>,
    by_registry_id: HashMap<u32, Arc<SchemaVersion>>,
    /// The reverse, for writing: the lowest id registered for each fingerprint.
    registry_id_by_fingerprint: HashMap<u64, u32>,
}

static PUBLISHED: LazyLock<Catalog> = LazyLock::new(|| {
    let mut catalog = Catalog::default();
    for version in published::versions() {
        catalog.add(Arc::clone(version));
    }
    catalog
});

impl Catalog {
    /// The published schemas (every file in `schemas/avro/`), shared and parsed once.
    pub fn published() -> &'static Catalog {
        &PUBLISHED
    }

    /// A catalog of its own holding the published schemas, to add versions or registry ids to.
    pub fn with_published() -> Catalog {
        Catalog::published().clone()
    }

    /// Adds a parsed version (no-op when one with the same fingerprint is already known) and
    /// returns the catalog's entry for that fingerprint.
    pub fn add(&mut self, version: Arc<SchemaVersion>) -> Arc<SchemaVersion> {
        if let Some(known) = self
            .versions
            .iter()
            .find(|v| v.fingerprint() == version.fingerprint())
        {
            return Arc::clone(known);
        }
        self.versions.push(Arc::clone(&version));
        version
    }

    /// Parses `.avsc` text and adds it; see [`Catalog::add`].
    pub fn add_avsc(&mut self, avsc: &str) -> Result<Arc<SchemaVersion>> {
        // A version already known (the usual case for registry ids) is not parsed again.
        let fingerprint = schema_fingerprint(avsc)?;
        if let Some(known) = self
            .versions
            .iter()
            .find(|v| v.fingerprint() == fingerprint)
        {
            return Ok(Arc::clone(known));
        }
        Ok(self.add(Arc::new(SchemaVersion::parse(avsc)?)))
    }

    /// Records that the schema registry's id `id` stands for the schema `avsc` (the text the
    /// registry returns for that id). The schema joins the catalog if it was not known, so a
    /// newer writer version found only in the registry can be read too. Registering the same id
    /// again with the same schema is a no-op; with another schema it is an error.
    pub fn register_id(&mut self, id: u32, avsc: &str) -> Result<()> {
        let version = self.add_avsc(avsc)?;
        if let Some(existing) = self.by_registry_id.get(&id) {
            return if existing.fingerprint() == version.fingerprint() {
                Ok(())
            } else {
                Err(Error::RegistryIdConflict {
                    id,
                    existing: existing.fingerprint(),
                    new: version.fingerprint(),
                })
            };
        }
        self.registry_id_by_fingerprint
            .entry(version.fingerprint())
            .and_modify(|known| *known = (*known).min(id))
            .or_insert(id);
        self.by_registry_id.insert(id, version);
        Ok(())
    }

    /// The version with this fingerprint, if known.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&SchemaVersion> {
        self.versions
            .iter()
            .find(|v| v.fingerprint() == fingerprint)
            .map(Arc::as_ref)
    }

    /// The version registered under this schema-registry id, if any.
    pub fn by_registry_id(&self, id: u32) -> Option<&SchemaVersion> {
        self.by_registry_id.get(&id).map(Arc::as_ref)
    }

    /// The schema-registry id registered for the version with this fingerprint (the lowest,
    /// when several ids name the same schema).
    pub fn registry_id_of(&self, fingerprint: u64) -> Option<u32> {
        self.registry_id_by_fingerprint.get(&fingerprint).copied()
    }

    /// Every known version, in the order they were added.
    pub fn versions(&self) -> impl Iterator<Item = &SchemaVersion> {
        self.versions.iter().map(Arc::as_ref)
    }

    /// Appends `value` with schema-registry framing (`00` + the registry id of `T`'s schema +
    /// datum). The id must have been registered with [`Catalog::register_id`]. On error `buf`
    /// is left as it was.
    pub fn encode_for_registry<T: Record>(&self, value: &T, buf: &mut Vec<u8>) -> Result<()> {
        let schema = T::schema();
        let id = self
            .registry_id_of(schema.fingerprint())
            .ok_or_else(|| Error::NoRegistryId {
                schema: schema.name().to_owned(),
                fingerprint: schema.fingerprint(),
            })?;
        let start = buf.len();
        write_registry_header(id, buf);
        write_datum(schema, value, buf).inspect_err(|_| buf.truncate(start))
    }

    /// The writer schema a framed record names.
    pub fn writer_of(&self, bytes: &[u8]) -> Result<&SchemaVersion> {
        Ok(self.writer_and_datum(bytes)?.0)
    }

    /// Decodes a framed record (either framing) into `T`, resolving the writer's version of the
    /// schema to `T`'s.
    pub fn decode<T: Record>(&self, bytes: &[u8]) -> Result<T> {
        let (writer, datum) = self.writer_and_datum(bytes)?;
        decode_with(writer, T::schema(), datum)
    }

    /// Decodes a framed record into a generic Avro value with its writer schema, for tools that
    /// do not know the record type in advance.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<(&SchemaVersion, Value)> {
        let (writer, mut datum) = self.writer_and_datum(bytes)?;
        let value = writer
            .datum_reader()
            .read_value(&mut datum)
            .map_err(|e| Error::datum(writer.name(), e))?;
        if !datum.is_empty() {
            return Err(Error::TrailingBytes {
                schema: writer.name().to_owned(),
                count: datum.len(),
            });
        }
        Ok((writer, value))
    }

    fn writer_and_datum<'b>(&self, bytes: &'b [u8]) -> Result<(&SchemaVersion, &'b [u8])> {
        let frame = Frame::parse(bytes)?;
        let writer = match frame.writer {
            WriterRef::Fingerprint(fingerprint) => self
                .by_fingerprint(fingerprint)
                .ok_or(Error::UnknownFingerprint { fingerprint })?,
            WriterRef::RegistryId(id) => self
                .by_registry_id(id)
                .ok_or(Error::UnregisteredSchemaId { id })?,
        };
        Ok((writer, frame.datum))
    }
}
