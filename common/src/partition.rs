//! The Java producer's default partitioner, so a process can tell which partition of the
//! location topic holds a user (and so which fanout instance owns them) without asking Kafka:
//! `toPositive(murmur2(key)) % partitions`, as in `kafka-clients`' `BuiltInPartitioner`.
//! A test checks it against the real `kafka-clients` jar and against rdkafka's `murmur2_random`.

use crate::UserId;

/// Kafka's murmur2 (32-bit, seed `0x9747b28c`), as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Java works on a signed int length; keys are far below 2^31 bytes.
    #[allow(clippy::cast_possible_truncation)]
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h.cast_signed()
}

/// The partition a key lands on among `partitions`, as the Java producer picks it.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    // toPositive clears the sign bit (it is not abs()).
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The partition of the location topic holding `user`.
pub fn partition_of_user(user: UserId, partitions: i32) -> i32 {
    partition_for_key(crate::ids::user_key(user).as_bytes(), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_java_reference_values() {
        // Values from Kafka's own UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()), want, "{key}");
        }
    }
}
