//! The published `.avsc` files, embedded in the binary and parsed once.
//!
//! Every version ever published stays here, so records written by old producers can still be
//! read. To publish a new version: add the new file to `schemas/avro/` (never edit an old one),
//! add a constant and a static for it below, list both, and point the record's
//! [`Record::schema`](crate::Record::schema) at it.

use std::sync::{Arc, LazyLock};

use crate::schema_version::SchemaVersion;

/// One published schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedFile {
    /// The file's name in `schemas/avro/`.
    pub file: &'static str,
    /// Its text.
    pub avsc: &'static str,
}

/// The [`PublishedFile`] of a file in `schemas/avro/`, its text embedded.
macro_rules! published {
    ($file:literal) => {
        PublishedFile {
            file: $file,
            avsc: include_str!(concat!("../avro/", $file)),
        }
    };
}

/// `location_event.v1.avsc`: the record on `nearby.location-updates`.
pub const LOCATION_EVENT_V1: PublishedFile = published!("location_event.v1.avsc");

/// `delivery.v1.avsc`: the record on `nearby.deliveries.<gateway-id>`.
pub const DELIVERY_V1: PublishedFile = published!("delivery.v1.avsc");

/// `delivery_batch.v1.avsc`: the record fanout writes on `nearby.deliveries.<gateway-id>`.
pub const DELIVERY_BATCH_V1: PublishedFile = published!("delivery_batch.v1.avsc");

/// `friendship_event.v1.avsc`: the record on the friendship events topic.
pub const FRIENDSHIP_EVENT_V1: PublishedFile = published!("friendship_event.v1.avsc");

/// Every published file.
pub const FILES: &[PublishedFile] = &[
    LOCATION_EVENT_V1,
    DELIVERY_V1,
    DELIVERY_BATCH_V1,
    FRIENDSHIP_EVENT_V1,
];

pub(crate) static LOCATION_EVENT_V1_SCHEMA: LazyLock<Arc<SchemaVersion>> =
    LazyLock::new(|| load(LOCATION_EVENT_V1));
pub(crate) static DELIVERY_V1_SCHEMA: LazyLock<Arc<SchemaVersion>> =
    LazyLock::new(|| load(DELIVERY_V1));
pub(crate) static DELIVERY_BATCH_V1_SCHEMA: LazyLock<Arc<SchemaVersion>> =
    LazyLock::new(|| load(DELIVERY_BATCH_V1));
pub(crate) static FRIENDSHIP_EVENT_V1_SCHEMA: LazyLock<Arc<SchemaVersion>> =
    LazyLock::new(|| load(FRIENDSHIP_EVENT_V1));

/// The parsed versions, in the order of [`FILES`].
pub(crate) fn versions() -> [&'static Arc<SchemaVersion>; 4] {
    [
        &LOCATION_EVENT_V1_SCHEMA,
        &DELIVERY_V1_SCHEMA,
        &DELIVERY_BATCH_V1_SCHEMA,
        &FRIENDSHIP_EVENT_V1_SCHEMA,
    ]
}

/// Parses an embedded file. It is part of the binary and the tests parse every one, so failing
/// here is a build mistake, not bad input.
fn load(file: PublishedFile) -> Arc<SchemaVersion> {
    match SchemaVersion::parse(file.avsc) {
        Ok(version) => Arc::new(version),
        Err(e) => panic!("published schema {} is invalid: {e}", file.file),
    }
}
