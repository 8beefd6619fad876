//! The names of the project's Kafka topics, all under one prefix so that a test (or a second
//! deployment on the same cluster) gets its own set.

use crate::{Error, Result};

/// Kafka refuses topic names longer than this.
const MAX_TOPIC_LEN: usize = 249;
/// Room kept for the longest suffix we append (`.deliveries.` plus a gateway id).
const MAX_PREFIX_LEN: usize = 100;

/// Topic names derived from one validated prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (for example `nearby`). The prefix obeys Kafka's name rules.
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::InvalidTopicName {
                name: prefix.to_owned(),
                why: "prefix longer than 100 characters",
            });
        }
        validate_topic_name(prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// Every position report and connect/disconnect record, keyed by user id.
    pub fn location_updates(&self) -> String {
        format!("{}.location-updates", self.prefix)
    }

    /// Friendship and sharing changes, keyed by user id (both sides get an event).
    pub fn friendship_events(&self) -> String {
        format!("{}.friendship-events", self.prefix)
    }

    /// Deliveries for the sockets held by one gateway.
    pub fn deliveries(&self, gateway_id: &str) -> Result<String> {
        let name = format!("{}.deliveries.{gateway_id}", self.prefix);
        validate_topic_name(&name)?;
        Ok(name)
    }
}

/// Checks Kafka's rules for a topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_TOPIC_LEN {
        Some("longer than 249 characters")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are reserved")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidTopicName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topics::new("nearby").expect("valid prefix");
        assert_eq!(t.location_updates(), "nearby.location-updates");
        assert_eq!(t.friendship_events(), "nearby.friendship-events");
        assert_eq!(
            t.deliveries("gw-1").expect("valid"),
            "nearby.deliveries.gw-1"
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for bad in ["", ".", "..", "has space", "slash/no", "ünï"] {
            let err = Topics::new(bad).expect_err(bad);
            assert!(
                matches!(err, Error::InvalidTopicName { .. }),
                "{bad}: {err}"
            );
        }
        let t = Topics::new("nearby").expect("valid prefix");
        assert!(t.deliveries("gw 1").is_err());
        assert!(t.deliveries(&"g".repeat(240)).is_err());
        assert!(Topics::new(&"p".repeat(101)).is_err());
    }
}
