//! Invites: an admin node mints a token for one syncgroup at one level, with an optional
//! expiry and a use count; a node that joins with it is added, under its authenticated
//! identity, to the syncgroup's permissions at that level. The token is what a person copies:
//! `syncbase://<admin fingerprint>@<admin peer address>/<syncgroup name>#<secret>`. It says
//! where to join and which key the admin must prove it holds; only the BLAKE3 hash of the
//! secret is stored, so a leaked store does not leak usable invites.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SyncgroupId;
use super::access::Level;
use super::name::SyncgroupName;
use crate::error::{Error, Result};
use crate::identity::Fingerprint;

const SCHEME: &str = "syncbase://";
const SECRET_BYTES: usize = 32;

/// A parsed invite token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteToken {
    /// The minting admin node's identity (pinned when dialling it).
    pub admin: Fingerprint,
    /// The admin node's peer address.
    pub address: String,
    pub name: SyncgroupName,
    /// The secret, as hex.
    pub secret: String,
}

impl InviteToken {
    /// A token with a fresh random secret.
    pub fn mint(admin: Fingerprint, address: String, name: SyncgroupName) -> Result<InviteToken> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let secret = secret.iter().map(|b| format!("{b:02x}")).collect();
        Ok(InviteToken {
            admin,
            address,
            name,
            secret,
        })
    }

    /// Parses a token; errors say which part is wrong (and never echo the secret).
    pub fn parse(text: &str) -> Result<InviteToken> {
        let bad = |why: &str| Error::invalid(format!("invite token is malformed: {why}"));
        let rest = text
            .trim()
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with syncbase://"))?;
        let (admin, rest) = rest.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let admin = Fingerprint::parse(admin)
            .map_err(|_| bad("the admin identity is not 64 hex digits"))?;
        let (address, rest) = rest.split_once('/').ok_or_else(|| bad("no address"))?;
        let (name, secret) = rest.rsplit_once('#').ok_or_else(|| bad("no '#secret'"))?;
        let name = SyncgroupName::parse(name)?;
        if address.is_empty() {
            return Err(bad("the admin address is empty"));
        }
        Ok(InviteToken {
            admin,
            address: address.to_owned(),
            name,
            secret: InviteToken::check_secret(secret)?,
        })
    }

    /// Checks a secret's form (64 hex digits) and returns it in lowercase.
    pub fn check_secret(secret: &str) -> Result<String> {
        if secret.len() != 2 * SECRET_BYTES || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                "invite token is malformed: the secret is not 64 hex digits",
            ));
        }
        Ok(secret.to_ascii_lowercase())
    }

    /// What the admin stores in place of the secret.
    pub fn hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

/// The stored form of a secret (BLAKE3, hex).
pub fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

impl fmt::Display for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}@{}/{}#{}",
            self.admin, self.address, self.name, self.secret
        )
    }
}

/// An invite as its admin node stores it (keyed by the secret's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub syncgroup: SyncgroupId,
    pub level: Level,
    /// Unix nanoseconds after which it is void (0 = never).
    pub expires_nanos: i64,
    pub uses_left: u32,
}

impl Invite {
    /// Fails with `NoAccess` if the invite has expired or is used up.
    pub fn check(&self, now_nanos: i64) -> Result<()> {
        if self.expires_nanos != 0 && now_nanos > self.expires_nanos {
            return Err(Error::NoAccess("the invite has expired".into()));
        }
        if self.uses_left == 0 {
            return Err(Error::NoAccess("the invite is used up".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> InviteToken {
        InviteToken::mint(
            Fingerprint::parse(&"a".repeat(64)).unwrap(),
            "127.0.0.1:7001".into(),
            SyncgroupName::parse("127.0.0.1:7001/photos").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn tokens_round_trip_and_hash_stably() {
        let token = token();
        let text = token.to_string();
        assert!(text.starts_with("syncbase://aaaa"), "{text}");
        let parsed = InviteToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.hash(), token.hash());
        assert_ne!(token.hash(), token.secret);
        assert_ne!(token.secret, self::token().secret);
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_the_secret() {
        let good = token().to_string();
        let cases = [
            "".to_owned(),
            good.replace("syncbase://", "http://"),
            good.replace('@', "!"),
            good.replace('#', "!"),
            good[..good.len() - 1].to_owned(),
            good.replace("photos", "pho tos"),
        ];
        for bad in cases {
            let error = InviteToken::parse(&bad).unwrap_err().to_string();
            assert!(error.starts_with("InvalidArgument:"), "{bad}: {error}");
            assert!(!error.contains(&token().secret));
        }
    }

    #[test]
    fn expired_and_used_up_invites_fail() {
        let invite = Invite {
            syncgroup: SyncgroupId(1),
            level: Level::Read,
            expires_nanos: 100,
            uses_left: 1,
        };
        invite.check(100).unwrap();
        assert!(
            invite
                .check(101)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let used = Invite {
            uses_left: 0,
            expires_nanos: 0,
            ..invite
        };
        assert!(
            used.check(i64::MAX)
                .unwrap_err()
                .to_string()
                .contains("used up")
        );
    }
}
