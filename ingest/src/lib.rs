//! The write path into Kafka: report validation, per-user rate limits, Avro encoding and the keyed producer (built in the live-pipeline issue).
