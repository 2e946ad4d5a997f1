//! The client token: a random secret made at a node's first start, kept in a file only its
//! user can read (mode 0600), and compared in constant time at login. Node and clients alike
//! refuse a token file that group or others can read, and a token that is not hex or is
//! shorter than 128 bits, so a weak or exposed secret stops the node instead of guarding it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::identity::refuse_if_readable_by_others;

/// Bytes of randomness in a token the node makes (256 bits, 64 hex characters).
const NEW_TOKEN_BYTES: usize = 32;
/// Fewest hex characters a token may have: 128 bits.
const MIN_TOKEN_HEX_LEN: usize = 32;
/// What the token file is called in errors.
const WHAT: &str = "client token file";

/// The secret an app presents to `Gate.login`: hex text of at least 128 bits.
#[derive(Clone)]
pub struct ClientToken(String);

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientToken(..)")
    }
}

/// What the node's operator does about a bad token file.
const REMAKE: &str = "delete it and restart the node to make a new one";
/// What a client does about one: it may simply be the wrong file.
const CHECK_PATH: &str = "is it the node's client.token (in its data directory)?";

impl ClientToken {
    /// Reads the token at `path`, or makes one (32 random bytes as 64 lowercase hex
    /// characters) and writes it there (mode 0600) if the file does not exist yet. An existing
    /// file is checked like [`ClientToken::read`] checks it.
    pub fn load_or_create(path: &Path) -> anyhow::Result<ClientToken> {
        match File::open(path) {
            Ok(file) => ClientToken::from_file(file, path, REMAKE),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ClientToken::create(path),
            Err(error) => Err(error).with_context(|| format!("reading {WHAT} {}", path.display())),
        }
    }

    /// Reads an existing token file (clients use this). Errors start with `InvalidArgument:`
    /// when the file is readable by group or others (`... is readable by others (mode 0644);
    /// run: chmod 600 <path>`), or its token (surrounding whitespace trimmed) is empty, not
    /// hex, or shorter than 32 hex characters (128 bits).
    pub fn read(path: &Path) -> anyhow::Result<ClientToken> {
        let file =
            File::open(path).with_context(|| format!("reading {WHAT} {}", path.display()))?;
        ClientToken::from_file(file, path, CHECK_PATH)
    }

    /// `fix` ends the error for a bad token: what the reader should do about it.
    fn from_file(mut file: File, path: &Path, fix: &str) -> anyhow::Result<ClientToken> {
        refuse_if_readable_by_others(&file, path, WHAT)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("reading {WHAT} {}", path.display()))?;
        let token = text.trim();
        check_token(token, fix)
            .map_err(|reason| Error::invalid(format!("{WHAT} {} {reason}", path.display())))?;
        Ok(ClientToken(token.to_owned()))
    }

    fn create(path: &Path) -> anyhow::Result<ClientToken> {
        let token = ClientToken::random()?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {WHAT} {}", path.display()))?;
        writeln!(file, "{}", token.0)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {WHAT} {}", path.display()))?;
        Ok(token)
    }

    /// A new token (32 random bytes from the operating system, hex), kept in memory only: for
    /// a node without a data directory.
    pub fn generate() -> anyhow::Result<ClientToken> {
        ClientToken::random()
    }

    fn random() -> anyhow::Result<ClientToken> {
        let mut bytes = [0u8; NEW_TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
        Ok(ClientToken(hex::encode(bytes)))
    }

    /// The token's text, for clients that log in with it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token's text exactly, compared in constant time
    /// (`subtle`): the time depends on the lengths, never on where the texts differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

/// Why `token` (trimmed file text) is not a usable token, as the end of a sentence that
/// starts with the file's name. Never quotes the token.
fn check_token(token: &str, fix: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!("is empty; {fix}"));
    }
    if token.len() < MIN_TOKEN_HEX_LEN {
        return Err(format!(
            "holds a token of {} characters; at least {MIN_TOKEN_HEX_LEN} hex digits (128 bits) \
             are required; {fix}",
            token.len(),
        ));
    }
    let not_hex = |why: String| format!("does not hold a hex token ({why}); {fix}");
    match hex::decode(token) {
        Err(hex::FromHexError::InvalidHexCharacter { index, .. }) => {
            Err(not_hex(format!("byte {index} is not a hex digit")))
        }
        Err(hex::FromHexError::OddLength) => Err(not_hex("an odd number of hex digits".into())),
        Err(error) => Err(not_hex(error.to_string())),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writes `text` to a private token file in `dir`.
    fn token_file(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("client.token");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        path
    }

    /// The error the node gives for the token file at `path`; a client gives the same with
    /// its own advice at the end (the file may just be the wrong one).
    fn refusal(path: &Path) -> String {
        let read = ClientToken::read(path).unwrap_err().to_string();
        let loaded = ClientToken::load_or_create(path).unwrap_err().to_string();
        assert_eq!(read, loaded.replace(REMAKE, CHECK_PATH));
        loaded
    }

    #[test]
    fn first_start_creates_a_private_token_that_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.token");
        let token = ClientToken::load_or_create(&path).unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert!(hex::decode(token.as_str()).is_ok(), "{}", token.as_str());
        assert_eq!(token.as_str(), token.as_str().to_lowercase());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ClientToken::load_or_create(&path).unwrap();
        assert!(again.matches(token.as_str()));
        assert!(ClientToken::read(&path).unwrap().matches(token.as_str()));
        let other = ClientToken::load_or_create(&dir.path().join("other.token")).unwrap();
        assert!(!other.matches(token.as_str()));
    }

    #[test]
    fn matching_is_exact() {
        let text = "0123456789abcdef".repeat(2);
        let token = ClientToken(text.clone());
        assert!(token.matches(&text));
        assert!(!token.matches(&format!("{}0", &text[..31])));
        assert!(!token.matches(&text[..31]));
        assert!(!token.matches(&format!("{text}0")));
        assert!(!token.matches(&text.to_uppercase()));
        assert!(!token.matches(""));
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused_with_the_chmod_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path(), &"ab".repeat(16));
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                refusal(&path),
                format!(
                    "InvalidArgument: client token file {} is readable by others \
                     (mode {mode:04o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                )
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ClientToken::read(&path).unwrap().matches(&"ab".repeat(16)));
    }

    #[test]
    fn a_short_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for short in ["ab".repeat(15), "abc".into()] {
            let path = token_file(dir.path(), &format!("{short}\n"));
            let message = refusal(&path);
            assert_eq!(
                message,
                format!(
                    "InvalidArgument: client token file {} holds a token of {} characters; at \
                     least 32 hex digits (128 bits) are required; delete it and restart the \
                     node to make a new one",
                    path.display(),
                    short.len()
                )
            );
        }
        let path = token_file(dir.path(), &"AB".repeat(16));
        assert!(ClientToken::read(&path).unwrap().matches(&"AB".repeat(16)));
    }

    #[test]
    fn a_token_that_is_not_hex_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        for (text, why) in [
            (
                format!("{}g{}", "a".repeat(20), "b".repeat(19)),
                "byte 20 is not a hex digit",
            ),
            (
                "secret-password-of-some-length!!".to_owned(),
                "byte 0 is not a hex digit",
            ),
            ("a".repeat(33), "an odd number of hex digits"),
        ] {
            let path = token_file(dir.path(), &text);
            let message = refusal(&path);
            assert!(
                message.starts_with(&format!(
                    "InvalidArgument: client token file {} does not hold a hex token ({why})",
                    path.display()
                )),
                "{message}"
            );
            assert!(!message.contains(&text), "{message}");
        }
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path(), " \n");
        let message = refusal(&path);
        assert!(
            message.starts_with(&format!(
                "InvalidArgument: client token file {} is empty",
                path.display()
            )),
            "{message}"
        );
    }

    #[test]
    fn a_missing_token_file_is_an_error_for_clients_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.token");
        let message = format!("{:#}", ClientToken::read(&path).unwrap_err());
        assert!(message.contains("client.token"), "{message}");
        assert!(!path.exists());
        ClientToken::load_or_create(&path).unwrap();
        assert!(path.exists());
    }
}
