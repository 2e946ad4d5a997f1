//! Syncgroup names, which route to the node hosting the syncgroup: `HOST:PORT/SUFFIX` is
//! hosted by the node whose peer listener is `HOST:PORT` (the original used
//! `<syncbase name>/%%sync/<suffix>` and a mount table). It also holds the rule a member
//! name (`serve --name`, a peer label) adds to `check_member_name`'s when a node sets one:
//! [`check_member_name_shown`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest suffix, in bytes.
pub const MAX_SUFFIX_BYTES: usize = 64;
/// Longest host address, in bytes.
pub const MAX_HOST_BYTES: usize = 255;

/// Refuses a member name a node sets here (its `serve --name` or config `name`, a `peer add
/// --name` label) that holds a hidden character (`names::hidden_char`: a bidi override such
/// as U+202E, a zero-width character, U+2028), with which one node's name could pass for
/// another's in member and peer lists. `InvalidArgument:` naming the character. Names from
/// the network are not refused by it (older builds sent such names): the CLI escapes them.
pub fn check_member_name_shown(name: &str) -> Result<()> {
    match crate::names::hidden_char(name) {
        Some(c) => Err(Error::invalid(format!(
            "name {name:?} contains the invisible character U+{:04X}: names refuse Unicode \
             format characters (bidi controls, zero-width ones) and line or paragraph \
             separators, so that no name can pass for another",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// A valid syncgroup name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SyncgroupName(String);

impl SyncgroupName {
    /// Parses `HOST:PORT/SUFFIX`: a host address with a port, then a suffix of 1-64 bytes of
    /// ASCII letters, digits, `.`, `_`, `-` and `/`.
    pub fn parse(text: &str) -> Result<SyncgroupName> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "syncgroup name {text:?} {why} (expected HOST:PORT/SUFFIX, e.g. 127.0.0.1:7001/photos)"
            ))
        };
        let (host, suffix) = text.split_once('/').ok_or_else(|| bad("has no '/'"))?;
        if host.len() > MAX_HOST_BYTES || host.trim() != host {
            return Err(bad("does not start with HOST:PORT"));
        }
        // The host is an address like any other: the one parser, its reason in the message.
        if let Err(error) = crate::address::check(host) {
            let reason = error.to_string();
            let reason = reason.trim_start_matches("InvalidArgument: ");
            let reason = reason.split("; expected").next().unwrap_or(reason);
            return Err(bad(&format!("does not start with HOST:PORT ({reason})")));
        }
        let suffix_ok = !suffix.is_empty()
            && suffix.len() <= MAX_SUFFIX_BYTES
            && suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !suffix_ok {
            return Err(bad(
                "needs a suffix of 1-64 letters, digits, '.', '_', '-' or '/'",
            ));
        }
        Ok(SyncgroupName(text.to_owned()))
    }

    /// The peer address of the node hosting the syncgroup.
    pub fn host(&self) -> &str {
        self.0.split_once('/').map_or("", |(host, _)| host)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SyncgroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SyncgroupName {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        SyncgroupName::parse(&text)
    }
}

impl From<SyncgroupName> for String {
    fn from(name: SyncgroupName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_route_to_their_host() {
        let name = SyncgroupName::parse("127.0.0.1:7001/photos/2024").unwrap();
        assert_eq!(name.host(), "127.0.0.1:7001");
        assert_eq!(
            SyncgroupName::parse("[::1]:7001/x").unwrap().host(),
            "[::1]:7001"
        );
    }

    #[test]
    fn member_names_refuse_hidden_characters() {
        assert!(check_member_name_shown("alice").is_ok());
        assert!(check_member_name_shown("").is_ok());
        assert!(check_member_name_shown("日本").is_ok());
        for bad in ["bob\u{202e}ecila", "a\u{2028}b", "zero\u{200b}"] {
            let error = check_member_name_shown(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("InvalidArgument: name") && error.contains("U+20"),
                "{error}"
            );
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "photos",
            "/photos",
            "host/photos",
            "host:port/photos",
            "h:1/",
            "h:1/a b",
            "h:1/a#b",
            "h :1/a",
        ] {
            let error = SyncgroupName::parse(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("InvalidArgument: syncgroup name"),
                "{bad}: {error}"
            );
        }
        let long = format!("h:1/{}", "x".repeat(65));
        assert!(SyncgroupName::parse(&long).is_err());
    }
}
