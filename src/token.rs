//! The client token: a random secret made at a node's first start, kept in a file only its
//! user can read (mode 0600), and compared in constant time at login.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use subtle::ConstantTimeEq;

/// The secret an app presents to `Gate.login`.
#[derive(Clone)]
pub struct ClientToken(String);

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientToken(..)")
    }
}

impl ClientToken {
    /// Reads the token at `path`, or makes one and writes it there (mode 0600) if the file
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> anyhow::Result<ClientToken> {
        match std::fs::read_to_string(path) {
            Ok(text) => ClientToken::from_file_text(&text, path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ClientToken::create(path),
            Err(error) => {
                Err(error).with_context(|| format!("reading token file {}", path.display()))
            }
        }
    }

    /// Reads an existing token file (clients use this).
    pub fn read(path: &Path) -> anyhow::Result<ClientToken> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        ClientToken::from_file_text(&text, path)
    }

    fn from_file_text(text: &str, path: &Path) -> anyhow::Result<ClientToken> {
        let token = text.trim();
        if token.is_empty() {
            bail!("token file {} is empty", path.display());
        }
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
            .with_context(|| format!("creating token file {}", path.display()))?;
        writeln!(file, "{}", token.0)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing token file {}", path.display()))?;
        Ok(token)
    }

    fn random() -> anyhow::Result<ClientToken> {
        let mut bytes = [0u8; 32];
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_a_private_token_that_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.token");
        let token = ClientToken::load_or_create(&path).unwrap();
        assert_eq!(token.as_str().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ClientToken::load_or_create(&path).unwrap();
        assert!(again.matches(token.as_str()));
        assert!(ClientToken::read(&path).unwrap().matches(token.as_str()));
    }

    #[test]
    fn matching_is_exact() {
        let token = ClientToken("abc".into());
        assert!(token.matches("abc"));
        assert!(!token.matches("abd"));
        assert!(!token.matches("ab"));
        assert!(!token.matches("abcd"));
        assert!(!token.matches("ABC"));
        assert!(!token.matches(""));
    }

    #[test]
    fn an_empty_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.token");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            ClientToken::read(&path)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
