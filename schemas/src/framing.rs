//! The header in front of every Avro datum on our topics, which tells a reader which schema
//! wrote it.
//!
//! Two framings are recognized:
//! - Avro **single-object encoding** (the default): `C3 01`, then the writer schema's 64-bit
//!   Rabin fingerprint little-endian (8 bytes), then the datum. Ten bytes of header.
//! - **Schema-registry** (Confluent) framing, where a registry is configured: `00`, then the
//!   registry's 32-bit schema id big-endian (4 bytes), then the datum. Five bytes of header.

use crate::error::{Error, Result};

/// The two bytes that open a single-object encoded record.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of a single-object header: magic plus fingerprint.
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;
/// The byte that opens a schema-registry framed record.
pub const REGISTRY_MAGIC: u8 = 0x00;
/// Length of a schema-registry header: magic plus schema id.
pub const REGISTRY_HEADER_LEN: usize = 5;

/// How a record names its writer schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriterRef {
    /// Single-object encoding: the CRC-64-AVRO fingerprint of the writer schema's Parsing
    /// Canonical Form.
    Fingerprint(u64),
    /// Schema-registry framing: the registry's id of the writer schema.
    RegistryId(u32),
}

/// A framed record split into its header and its datum, without decoding the datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Which schema wrote the datum.
    pub writer: WriterRef,
    /// The Avro binary datum after the header.
    pub datum: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits `bytes` into header and datum.
    ///
    /// Fails with [`Error::TruncatedHeader`] when the input is shorter than its header and with
    /// [`Error::BadMagic`] when it starts with neither framing's magic.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        match bytes {
            [0xC3, 0x01, rest @ ..] => {
                let (fingerprint, datum) =
                    rest.split_first_chunk::<8>()
                        .ok_or(Error::TruncatedHeader {
                            framing: "single-object",
                            needed: SINGLE_OBJECT_HEADER_LEN,
                            actual: bytes.len(),
                        })?;
                Ok(Frame {
                    writer: WriterRef::Fingerprint(u64::from_le_bytes(*fingerprint)),
                    datum,
                })
            }
            // A lone C3 may be the start of a single-object header that was cut short.
            [0xC3] => Err(Error::TruncatedHeader {
                framing: "single-object",
                needed: SINGLE_OBJECT_HEADER_LEN,
                actual: 1,
            }),
            [REGISTRY_MAGIC, rest @ ..] => {
                let (id, datum) = rest
                    .split_first_chunk::<4>()
                    .ok_or(Error::TruncatedHeader {
                        framing: "schema-registry",
                        needed: REGISTRY_HEADER_LEN,
                        actual: bytes.len(),
                    })?;
                Ok(Frame {
                    writer: WriterRef::RegistryId(u32::from_be_bytes(*id)),
                    datum,
                })
            }
            [] => Err(Error::TruncatedHeader {
                framing: "any",
                needed: REGISTRY_HEADER_LEN,
                actual: 0,
            }),
            _ => Err(Error::BadMagic {
                found: bytes[..bytes.len().min(2)].to_vec(),
            }),
        }
    }
}

/// Appends a single-object header for the writer schema with this fingerprint.
pub fn write_single_object_header(fingerprint: u64, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&single_object_header(fingerprint));
}

/// The single-object header for the writer schema with this fingerprint.
pub const fn single_object_header(fingerprint: u64) -> [u8; SINGLE_OBJECT_HEADER_LEN] {
    let fp = fingerprint.to_le_bytes();
    [
        SINGLE_OBJECT_MAGIC[0],
        SINGLE_OBJECT_MAGIC[1],
        fp[0],
        fp[1],
        fp[2],
        fp[3],
        fp[4],
        fp[5],
        fp[6],
        fp[7],
    ]
}

/// Appends a schema-registry header for the writer schema with this registry id.
pub fn write_registry_header(id: u32, buf: &mut Vec<u8>) {
    buf.push(REGISTRY_MAGIC);
    buf.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_header_round_trips() {
        let mut buf = Vec::new();
        write_single_object_header(0x0102_0304_0506_0708, &mut buf);
        assert_eq!(buf, [0xC3, 0x01, 8, 7, 6, 5, 4, 3, 2, 1]);
        buf.extend_from_slice(b"datum");
        let frame = Frame::parse(&buf).unwrap();
        assert_eq!(frame.writer, WriterRef::Fingerprint(0x0102_0304_0506_0708));
        assert_eq!(frame.datum, b"datum");
    }

    #[test]
    fn registry_header_round_trips() {
        let mut buf = Vec::new();
        write_registry_header(0x0A0B_0C0D, &mut buf);
        assert_eq!(buf, [0x00, 0x0A, 0x0B, 0x0C, 0x0D]);
        let frame = Frame::parse(&buf).unwrap();
        assert_eq!(frame.writer, WriterRef::RegistryId(0x0A0B_0C0D));
        assert!(frame.datum.is_empty());
    }

    #[test]
    fn short_and_foreign_headers_are_refused() {
        for short in [&[][..], &[0xC3], &[0xC3, 0x01, 1, 2, 3], &[0x00, 1, 2]] {
            assert!(
                matches!(Frame::parse(short), Err(Error::TruncatedHeader { actual, .. }) if actual == short.len()),
                "{short:?}"
            );
        }
        for foreign in [
            &[0x7B, 0x22][..],
            &[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x01],
        ] {
            assert!(
                matches!(Frame::parse(foreign), Err(Error::BadMagic { .. })),
                "{foreign:?}"
            );
        }
    }
}
