//! The Avro fuzz target's seed corpus (`fuzz/corpus/avro_records/seed-*`) is the encodings of
//! the sample records of these tests, as the current schemas write them: a schema change that
//! leaves the seeds stale fails here. `NEARBY_UPDATE_FUZZ_SEEDS=1` rewrites them.

mod common;

use std::path::PathBuf;

#[test]
fn the_avro_fuzz_seeds_are_the_sample_records_as_written_now() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/avro_records");
    let mut samples = common::encoded_samples();
    let batch = nearby_schemas::DeliveryBatch {
        deliveries: common::deliveries(),
    };
    samples.push(nearby_schemas::to_vec(&batch).unwrap());
    if std::env::var_os("NEARBY_UPDATE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, bytes) in samples.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), bytes).unwrap();
        }
    }
    for (i, bytes) in samples.iter().enumerate() {
        let path = dir.join(format!("seed-{i:02}"));
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (NEARBY_UPDATE_FUZZ_SEEDS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(&committed, bytes, "{} is stale", path.display());
    }
}
