//! One version of one record schema, parsed once with everything decoding and encoding need
//! prepared up front, so that no per-record call repeats schema work.

use std::fmt;
use std::sync::OnceLock;

use apache_avro::schema::{Names, NamesRef, ResolvedSchema};
use apache_avro::{GenericSingleObjectReader, Schema};

use crate::error::{Error, Result};
use crate::fingerprint::{parsing_canonical_form, rabin};
use crate::framing::{SINGLE_OBJECT_HEADER_LEN, single_object_header};

/// The largest single allocation the Avro decoder may make for one string or collection.
///
/// apache-avro's own default is 512 MiB, so a corrupt length prefix in one record could make
/// the process reserve that much; our records are tens of bytes and Kafka's default message
/// limit is 1 MiB.
const MAX_DECODE_ALLOCATION: usize = 1 << 20;

/// One version of a record schema (one `.avsc` file), parsed and ready.
///
/// It serves both roles: as a **writer** schema it decodes datums it wrote; as a **reader**
/// schema (the version a Rust type matches) it is the target of schema resolution and the
/// schema that type is encoded with.
pub struct SchemaVersion {
    name: String,
    fingerprint: u64,
    canonical_form: String,
    header: [u8; SINGLE_OBJECT_HEADER_LEN],
    schema: Schema,
    /// The schema's named types, for resolving references when this version is either side of
    /// schema resolution.
    owned_names: Names,
    /// The same, borrowed from `schema` as apache-avro's encoder wants them, indexed on first
    /// use. Only a `'static` version can lend to itself; the versions that types encode with
    /// ([`Record::schema`](crate::Record::schema)) are statics.
    encoder_names: OnceLock<Option<ResolvedSchema<'static>>>,
    /// Decodes datums written with this schema (given an empty header, it reads none).
    datum_reader: GenericSingleObjectReader,
}

impl SchemaVersion {
    /// Parses `.avsc` JSON text whose top level is a record.
    pub fn parse(avsc: &str) -> Result<Self> {
        // Set before apache-avro first allocates (it reads the limit once, on first use); if the
        // embedding program set its own limit earlier, that one stays.
        apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
        let schema = Schema::parse_str(avsc).map_err(|e| Error::InvalidSchema {
            reason: e.to_string(),
        })?;
        let name = match &schema {
            Schema::Record(record) => record.name.fullname(None),
            other => {
                return Err(Error::InvalidSchema {
                    reason: format!("the top level must be a record, not {other:?}"),
                });
            }
        };
        let canonical_form = parsing_canonical_form(avsc)?;
        let fingerprint = rabin(canonical_form.as_bytes());
        let owned_names = ResolvedSchema::new(&schema)
            .map_err(|e| Error::InvalidSchema {
                reason: e.to_string(),
            })?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        let datum_reader = GenericSingleObjectReader::builder()
            .schema(schema.clone())
            .header(Vec::new())
            .human_readable(false)
            .build()
            .map_err(|e| Error::InvalidSchema {
                reason: e.to_string(),
            })?;
        Ok(SchemaVersion {
            name,
            fingerprint,
            header: single_object_header(fingerprint),
            canonical_form,
            schema,
            owned_names,
            encoder_names: OnceLock::new(),
            datum_reader,
        })
    }

    /// The record's full name, such as `nearby.v1.LocationEvent`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CRC-64-AVRO fingerprint of the Parsing Canonical Form, as in single-object headers.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The Parsing Canonical Form the fingerprint is taken of.
    pub fn canonical_form(&self) -> &str {
        &self.canonical_form
    }

    /// The single-object header of records written with this version.
    pub fn single_object_header(&self) -> [u8; SINGLE_OBJECT_HEADER_LEN] {
        self.header
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The named types of the schema.
    pub(crate) fn owned_names(&self) -> &Names {
        &self.owned_names
    }

    /// The named types of the schema as the encoder wants them, indexed on first use.
    pub(crate) fn encoder_names(&'static self) -> Result<&'static NamesRef<'static>> {
        self.encoder_names
            .get_or_init(|| ResolvedSchema::new(&self.schema).ok())
            .as_ref()
            .map(ResolvedSchema::get_names)
            // Unreachable in practice: `parse` resolved the same names.
            .ok_or_else(|| Error::InvalidSchema {
                reason: format!("the named types of {} do not resolve", self.name),
            })
    }

    pub(crate) fn datum_reader(&self) -> &GenericSingleObjectReader {
        &self.datum_reader
    }
}

impl fmt::Debug for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaVersion")
            .field("name", &self.name)
            .field("fingerprint", &format_args!("{:#018x}", self.fingerprint))
            .finish_non_exhaustive()
    }
}
