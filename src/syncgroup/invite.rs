//! Invites: an admin node mints a token for one syncgroup at one level, with an optional
//! expiry and a use count; a node that joins with it is added, under its authenticated
//! identity, to the syncgroup's permissions at that level. The token is what a person copies:
//! `syncbase://<admin fingerprint>@<admin peer address>/<syncgroup name>#<secret>`. It says
//! where to join and which key the admin must prove it holds; only the BLAKE3 hash of the
//! secret is stored, so a leaked store does not leak usable invites.
//!
//! A **publish invite** lets another node publish a syncgroup of one database here and have it
//! accepted at once instead of waiting as a proposal (issue 9: a publish is an offer):
//! `syncbase-publish://<host fingerprint>@<host peer address>/<database>#<secret>`. It is
//! stored, hashed, expires and is spent like the others.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SyncgroupId;
use super::access::Level;
use super::name::SyncgroupName;
use crate::env::Random;
use crate::error::{Error, Result};
use crate::identity::Fingerprint;
use crate::names::DbName;

const SCHEME: &str = "syncbase://";
const PUBLISH_SCHEME: &str = "syncbase-publish://";
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

/// A parsed publish invite: publishing a syncgroup of `db` at `host` with it is accepted at
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishInviteToken {
    /// The minting node's identity (pinned when dialling it).
    pub host: Fingerprint,
    /// The minting node's peer address.
    pub address: String,
    pub db: DbName,
    /// The secret, as hex.
    pub secret: String,
}

/// The parts every token has: `SCHEME<fingerprint>@<address>/<rest>#<secret>`.
struct TokenParts<'a> {
    node: Fingerprint,
    address: &'a str,
    rest: &'a str,
    secret: String,
}

fn malformed(why: &str) -> Error {
    Error::invalid(format!("invite token is malformed: {why}"))
}

impl<'a> TokenParts<'a> {
    fn parse(text: &'a str, scheme: &str) -> Result<TokenParts<'a>> {
        let rest = text
            .trim()
            .strip_prefix(scheme)
            .ok_or_else(|| malformed(&format!("it does not start with {scheme}")))?;
        let (node, rest) = rest.split_once('@').ok_or_else(|| malformed("no '@'"))?;
        let node = Fingerprint::parse(node)
            .map_err(|_| malformed("the node identity is not 64 hex digits"))?;
        let (address, rest) = rest
            .split_once('/')
            .ok_or_else(|| malformed("no address"))?;
        let (rest, secret) = rest
            .rsplit_once('#')
            .ok_or_else(|| malformed("no '#secret'"))?;
        if address.is_empty() {
            return Err(malformed("the node address is empty"));
        }
        Ok(TokenParts {
            node,
            address,
            rest,
            secret: check_secret(secret)?,
        })
    }
}

/// A fresh secret of [`SECRET_BYTES`] drawn from `random`, as hex.
fn new_secret(random: &dyn Random) -> Result<String> {
    let mut secret = [0u8; SECRET_BYTES];
    random.fill(&mut secret)?;
    Ok(hex::encode(secret))
}

/// Checks a secret's form (64 hex digits) and returns it in lowercase.
pub fn check_secret(secret: &str) -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    hex::decode_to_slice(secret, &mut bytes)
        .map_err(|_| malformed("the secret is not 64 hex digits"))?;
    Ok(hex::encode(bytes))
}

impl InviteToken {
    /// A token with a fresh secret drawn from `random` (the node's `Env`: the operating
    /// system's generator in production). Fails only as `random` does (`Internal:`).
    pub fn mint(
        admin: Fingerprint,
        address: String,
        name: SyncgroupName,
        random: &dyn Random,
    ) -> Result<InviteToken> {
        Ok(InviteToken {
            admin,
            address,
            name,
            secret: new_secret(random)?,
        })
    }

    /// Parses a token; errors say which part is wrong (and never echo the secret).
    pub fn parse(text: &str) -> Result<InviteToken> {
        if text.trim().starts_with(PUBLISH_SCHEME) {
            return Err(Error::invalid(
                "this is a publish invite (syncbase-publish://): give it to `sg create --invite`",
            ));
        }
        let parts = TokenParts::parse(text, SCHEME)?;
        Ok(InviteToken {
            admin: parts.node,
            address: parts.address.to_owned(),
            name: SyncgroupName::parse(parts.rest)?,
            secret: parts.secret,
        })
    }

    /// Checks a secret's form (64 hex digits) and returns it in lowercase.
    pub fn check_secret(secret: &str) -> Result<String> {
        check_secret(secret)
    }

    /// What the admin stores in place of the secret.
    pub fn hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

impl PublishInviteToken {
    /// A token with a fresh secret drawn from `random` (the node's `Env`). Fails only as
    /// `random` does (`Internal:`).
    pub fn mint(
        host: Fingerprint,
        address: String,
        db: DbName,
        random: &dyn Random,
    ) -> Result<PublishInviteToken> {
        Ok(PublishInviteToken {
            host,
            address,
            db,
            secret: new_secret(random)?,
        })
    }

    /// Parses a token; errors say which part is wrong (and never echo the secret).
    pub fn parse(text: &str) -> Result<PublishInviteToken> {
        if text.trim().starts_with(SCHEME) {
            return Err(Error::invalid(
                "this is a join invite (syncbase://): give it to `sg join`",
            ));
        }
        let parts = TokenParts::parse(text, PUBLISH_SCHEME)?;
        Ok(PublishInviteToken {
            host: parts.node,
            address: parts.address.to_owned(),
            db: DbName::parse(parts.rest)?,
            secret: parts.secret,
        })
    }

    /// What the host stores in place of the secret.
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

impl fmt::Display for PublishInviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLISH_SCHEME}{}@{}/{}#{}",
            self.host,
            self.address,
            self.db.as_str(),
            self.secret
        )
    }
}

/// What redeeming an invite gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// Joining one syncgroup at a level.
    Join {
        syncgroup: SyncgroupId,
        level: Level,
    },
    /// Publishing a syncgroup of one database, accepted at once.
    Publish { db: String },
}

/// An invite as its minting node stores it (keyed by the secret's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub grant: Grant,
    /// Unix nanoseconds after which it is void (0 = never).
    pub expires_nanos: i64,
    pub uses_left: u32,
}

impl Invite {
    /// Fails with `NoAccess` if the invite has expired or is used up.
    pub fn check(&self, now_nanos: i64) -> Result<()> {
        if self.expires_nanos != 0 && now_nanos > self.expires_nanos {
            return Err(Error::NoAccess(
                "the invite has expired; ask an admin for a new one (`sg invite`)".into(),
            ));
        }
        if self.uses_left == 0 {
            return Err(Error::NoAccess(
                "the invite is used up (it admitted as many joins as its --uses); ask an \
                 admin for a new one (`sg invite --uses N`)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{OsRandom, SeededRandom};

    fn token() -> InviteToken {
        token_from(&OsRandom)
    }

    fn token_from(random: &dyn Random) -> InviteToken {
        InviteToken::mint(
            Fingerprint::parse(&"a".repeat(64)).unwrap(),
            "127.0.0.1:7001".into(),
            SyncgroupName::parse("127.0.0.1:7001/photos").unwrap(),
            random,
        )
        .unwrap()
    }

    #[test]
    fn invite_secrets_are_drawn_from_the_given_random_source() {
        let seeded = token_from(&SeededRandom::new(5));
        assert_eq!(seeded, token_from(&SeededRandom::new(5)));
        let mut expected = [0u8; SECRET_BYTES];
        SeededRandom::new(5).fill(&mut expected).unwrap();
        assert_eq!(seeded.secret, hex::encode(expected));
        assert_ne!(seeded.secret, token_from(&SeededRandom::new(6)).secret);
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
            grant: Grant::Join {
                syncgroup: SyncgroupId(1),
                level: Level::Read,
            },
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
            ..invite.clone()
        };
        assert!(
            used.check(i64::MAX)
                .unwrap_err()
                .to_string()
                .contains("used up")
        );
    }

    #[test]
    fn publish_tokens_round_trip_and_are_not_join_tokens() {
        let token = PublishInviteToken::mint(
            Fingerprint::parse(&"b".repeat(64)).unwrap(),
            "127.0.0.1:7001".into(),
            DbName::parse("photos").unwrap(),
            &OsRandom,
        )
        .unwrap();
        let text = token.to_string();
        assert!(text.starts_with("syncbase-publish://bbbb"), "{text}");
        assert_eq!(PublishInviteToken::parse(&text).unwrap(), token);
        let error = InviteToken::parse(&text).unwrap_err().to_string();
        assert!(error.contains("publish invite"), "{error}");
        let join = self::token().to_string();
        let error = PublishInviteToken::parse(&join).unwrap_err().to_string();
        assert!(error.contains("join invite"), "{error}");
    }
}
