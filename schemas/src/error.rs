//! The crate's one error type.
//!
//! Every way a record can be refused on the read path has its own variant, so a consumer can
//! count and log them by kind; none of them is retryable: the bytes are what they are. A consumer
//! logs the error, counts it, skips the record and stores its offset.

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong encoding or decoding a record, or loading a schema.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside the framing header.
    #[error(
        "truncated record: {actual} bytes, but the {framing} header alone needs {needed}; \
         the record was cut short or is not framed Avro"
    )]
    TruncatedHeader {
        /// Which framing the first byte announced.
        framing: &'static str,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes there were.
        actual: usize,
    },

    /// The first bytes are neither single-object encoding (`C3 01`) nor schema-registry framing
    /// (`00`).
    #[error(
        "bad magic {found:02X?}: not Avro single-object encoding (C3 01 + fingerprint) nor \
         schema-registry framing (00 + schema id); was it written by this crate?"
    )]
    BadMagic {
        /// The first one or two bytes of the input.
        found: Vec<u8>,
    },

    /// A single-object record names a writer schema the catalog does not know.
    #[error(
        "unknown writer schema fingerprint {fingerprint:#018x}: no known .avsc version has it; \
         add the writer's schema file to schemas/avro/ (or the catalog) to read it"
    )]
    UnknownFingerprint {
        /// The CRC-64-AVRO fingerprint from the header.
        fingerprint: u64,
    },

    /// A schema-registry record names a schema id nobody registered with the catalog.
    #[error(
        "schema-registry id {id} is not registered: fetch that schema from the registry and \
         pass it to Catalog::register_id before decoding"
    )]
    UnregisteredSchemaId {
        /// The id from the header.
        id: u32,
    },

    /// The record was written with a schema for another record type.
    #[error("wrong record type: expected {expected}, but the record was written as {found}")]
    WrongRecordType {
        /// Full name of the type the caller asked for.
        expected: String,
        /// Full name of the writer schema.
        found: String,
    },

    /// The datum ended before the writer schema said it would.
    #[error("truncated {schema} datum: the input ended inside the record ({cause})")]
    TruncatedDatum {
        /// Full name of the writer schema.
        schema: String,
        /// What the Avro decoder said.
        cause: apache_avro::Error,
    },

    /// The datum does not decode with its writer schema (corrupt bytes, a bad union or enum
    /// index, invalid UTF-8, an absurd length).
    #[error("malformed {schema} datum: {cause}")]
    MalformedDatum {
        /// Full name of the writer schema.
        schema: String,
        /// What the Avro decoder said.
        cause: apache_avro::Error,
    },

    /// Bytes were left over after the datum: the header named the wrong schema or the record is
    /// corrupt.
    #[error("{count} bytes left over after the {schema} datum: corrupt record or wrong schema")]
    TrailingBytes {
        /// Full name of the writer schema.
        schema: String,
        /// How many bytes were left.
        count: usize,
    },

    /// The writer schema cannot be resolved to the reader schema (an incompatible change, such
    /// as a field added without a default).
    #[error(
        "cannot resolve writer schema {writer_fingerprint:#018x} to the reader's {reader}: {reason}"
    )]
    Incompatible {
        /// Full name of the reader schema.
        reader: String,
        /// Fingerprint of the writer schema.
        writer_fingerprint: u64,
        /// What did not resolve.
        reason: String,
    },

    /// A value could not be encoded with its schema (for example a long that does not fit).
    #[error("cannot encode a {schema}: {cause}")]
    Encode {
        /// Full name of the schema.
        schema: String,
        /// What the Avro encoder said.
        cause: apache_avro::Error,
    },

    /// A schema text is not a valid Avro record schema.
    #[error("invalid Avro schema: {reason}")]
    InvalidSchema {
        /// What is wrong with it.
        reason: String,
    },

    /// A schema-registry id was registered twice with different schemas.
    #[error(
        "schema-registry id {id} is already registered with fingerprint {existing:#018x}, \
         not {new:#018x}"
    )]
    RegistryIdConflict {
        /// The id.
        id: u32,
        /// Fingerprint already registered under the id.
        existing: u64,
        /// Fingerprint of the schema offered now.
        new: u64,
    },

    /// Writing with schema-registry framing needs the id of the writer schema.
    #[error(
        "no schema-registry id is registered for {schema} (fingerprint {fingerprint:#018x}); \
         register the schema and pass its id to Catalog::register_id first"
    )]
    NoRegistryId {
        /// Full name of the schema.
        schema: String,
        /// Its fingerprint.
        fingerprint: u64,
    },
}

impl Error {
    /// Sorts a decoder error into [`Error::TruncatedDatum`] (the input ran out) or
    /// [`Error::MalformedDatum`] (anything else).
    pub(crate) fn datum(schema: &str, cause: apache_avro::Error) -> Self {
        if ran_out_of_input(&cause) {
            Error::TruncatedDatum {
                schema: schema.to_owned(),
                cause,
            }
        } else {
            Error::MalformedDatum {
                schema: schema.to_owned(),
                cause,
            }
        }
    }
}

/// Whether an I/O "unexpected end of file" is anywhere in the error's chain: reading from a slice
/// that ran out is the only I/O error decoding can meet.
fn ran_out_of_input(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::UnexpectedEof
        {
            return true;
        }
        next = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_can_cross_threads_and_into_anyhow() {
        fn check<T: Send + Sync + 'static + std::error::Error>() {}
        check::<Error>();
    }
}
