//! User ids: the JWT `sub`, a decimal u64 on the wire, stored as a non-negative i64 (Avro `long`,
//! CQL `bigint`), and the Kafka key as its decimal string.

/// A user's id. Non-negative; fits both Avro `long` and CQL `bigint`.
pub type UserId = i64;

/// Parses a user id as clients and tokens write it: a decimal string of 0 to `i64::MAX`.
pub fn parse_user_id(s: &str) -> Option<UserId> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<UserId>().ok()
}

/// The Kafka record key of a user: the id as a decimal string.
pub fn user_key(id: UserId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_ids_only() {
        assert_eq!(parse_user_id("42"), Some(42));
        assert_eq!(parse_user_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            " 1",
            "9223372036854775808",
            "abc",
            "０",
        ] {
            assert_eq!(parse_user_id(bad), None, "{bad}");
        }
        assert_eq!(user_key(17), "17");
    }
}
