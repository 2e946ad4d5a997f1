//! A node's peer identity: its persistent key pair and self-signed certificate (`peer.key`,
//! `peer.crt` in the data directory, made with rcgen at first start), and the [`Fingerprint`]
//! that names a peer. As with Syncthing's device ids, a fingerprint names a key (BLAKE3 over the
//! certificate's DER SubjectPublicKeyInfo), never a claimed name, so nothing here trusts a CA,
//! a subject or a validity period. [`crate::rpc::tls`] proves in the handshake that a peer holds
//! the key its fingerprint names.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Error;

/// File name of the node's private key (PKCS#8 PEM, mode 0600) in the data directory.
pub const KEY_FILE: &str = "peer.key";
/// File name of the node's self-signed certificate (PEM) in the data directory.
pub const CERT_FILE: &str = "peer.crt";

/// Number of hex characters in a fingerprint (a 32-byte BLAKE3 digest).
const FINGERPRINT_HEX_LEN: usize = 64;

/// The name put in the certificate's subject and SAN. Informational only: peers are identified
/// by fingerprint, and [`crate::rpc::tls`] uses the same fixed name as its SNI.
const CERT_NAME: &str = "syncbase.peer";

/// A peer's authenticated identity: lowercase hex of BLAKE3 over the DER SubjectPublicKeyInfo
/// of its certificate key (64 hex chars). Like Syncthing's device ids, it names the key, not a
/// claimed name. Deserializing validates the text like [`Fingerprint::parse`].
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        Fingerprint(hex::encode(blake3::hash(spki_der).as_bytes()))
    }

    /// The fingerprint of a DER-encoded X.509 certificate's key: [`Fingerprint::of_spki`] of
    /// the certificate's SubjectPublicKeyInfo exactly as encoded in it. The certificate is
    /// parsed (x509-parser) but not validated: no signature, issuer or validity check. A
    /// certificate that does not parse, or is followed by any byte, is an error starting with
    /// `InvalidArgument: malformed certificate`.
    pub fn of_certificate(cert_der: &[u8]) -> anyhow::Result<Fingerprint> {
        let malformed = |reason: String| {
            anyhow::Error::new(Error::invalid(format!("malformed certificate: {reason}")))
        };
        let (rest, cert) =
            X509Certificate::from_der(cert_der).map_err(|error| malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "bytes after the certificate: {}",
                rest.len()
            )));
        }
        Ok(Fingerprint::of_spki(cert.tbs_certificate.subject_pki.raw))
    }

    /// Parses a fingerprint's text: exactly 64 hex characters, of either case (a fingerprint
    /// copied from a tool that prints upper case is the same identity); kept in lowercase,
    /// the one form it is compared and shown in. Errors start with `InvalidArgument:`.
    pub fn parse(text: &str) -> Result<Fingerprint, Error> {
        // Checked as given, so an error names the character the user typed.
        check_fingerprint_text(text).map_err(|reason| {
            Error::invalid(format!(
                "bad peer fingerprint {:?}: {reason}",
                shorten(text)
            ))
        })?;
        Ok(Fingerprint(text.to_ascii_lowercase()))
    }

    /// The fingerprint's text (64 lowercase hex characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Fingerprint, Error> {
        Fingerprint::parse(text)
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = Error;

    fn try_from(text: String) -> Result<Fingerprint, Error> {
        Fingerprint::parse(&text)
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> String {
        fingerprint.0
    }
}

/// Why `text` is not a fingerprint, if it is not.
fn check_fingerprint_text(text: &str) -> Result<(), String> {
    if let Some((at, c)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!("character {c:?} at byte {at} is not hex"));
    }
    if text.len() != FINGERPRINT_HEX_LEN {
        return Err(format!(
            "expected {FINGERPRINT_HEX_LEN} hex characters, got {}",
            text.len()
        ));
    }
    Ok(())
}

/// At most the first 80 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// The node's TLS identity: key pair + self-signed certificate (rcgen, ECDSA P-256), made at
/// first start and stored in the data directory as `peer.key` (PKCS#8 PEM, mode 0600) and
/// `peer.crt` (PEM). `Debug` never shows the key.
#[derive(Clone)]
pub struct NodeIdentity {
    cert_der: CertificateDer<'static>,
    key_pkcs8_der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Reads the identity from `data_dir` (`peer.key`, `peer.crt`), or makes one and writes it
    /// there if neither file exists. Exactly one of the two files existing is an error naming
    /// the missing one, as is a key that does not match the certificate. A key file that group
    /// or others can access is refused (`InvalidArgument: key file <path> is readable by others
    /// (mode 0644); run: chmod 600 <path>`), like ssh refuses a private key.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<NodeIdentity> {
        let key_path = data_dir.join(KEY_FILE);
        let cert_path = data_dir.join(CERT_FILE);
        match (exists(&key_path)?, exists(&cert_path)?) {
            (true, true) => NodeIdentity::load(&key_path, &cert_path),
            (false, false) => NodeIdentity::create(data_dir, &key_path, &cert_path),
            (true, false) => Err(half_identity(&cert_path, &key_path)),
            (false, true) => Err(half_identity(&key_path, &cert_path)),
        }
    }

    /// The fingerprint of the identity stored in `data_dir` (its `peer.crt`), read without the
    /// key and without a running node (`syncbase id` of a stopped node). None when the node
    /// never started there (no `peer.crt`); an unreadable or malformed certificate is an error
    /// naming the file.
    pub fn fingerprint_on_disk(data_dir: &Path) -> anyhow::Result<Option<Fingerprint>> {
        let cert_path = data_dir.join(CERT_FILE);
        if !exists(&cert_path)? {
            return Ok(None);
        }
        let cert_der = read_certificate(&cert_path)?;
        Fingerprint::of_certificate(&cert_der)
            .with_context(|| format!("reading certificate file {}", cert_path.display()))
            .map(Some)
    }

    /// Makes a new identity in memory (tests, and nodes without a data directory).
    pub fn generate() -> anyhow::Result<NodeIdentity> {
        let key = KeyPair::generate().context("generating the node's key pair")?;
        NodeIdentity::self_sign(key)
    }

    /// An identity made from a 32-byte seed, the same seed giving the same key and fingerprint:
    /// for the deterministic simulation, whose runs must replay bit for bit. The key is
    /// Ed25519 (the seed is its private key, RFC 8032), not the P-256 of [`NodeIdentity::generate`];
    /// the fingerprint is the same BLAKE3 of its SubjectPublicKeyInfo. Never use one for a
    /// served node: whoever knows the seed holds the key.
    pub fn from_seed(seed: [u8; 32]) -> anyhow::Result<NodeIdentity> {
        // PKCS#8 v1 (RFC 8410): PrivateKeyInfo { version 0, id-Ed25519, OCTET STRING { seed } }.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let key = KeyPair::try_from(der.as_slice()).context("making a key from a seed")?;
        NodeIdentity::self_sign(key)
    }

    /// The fingerprint of this node's key: its peer identity.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The node's self-signed certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as rustls takes it.
    pub(crate) fn certificate(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key (PKCS#8 DER) as rustls takes it.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8_der.clone()))
    }

    fn self_sign(key: KeyPair) -> anyhow::Result<NodeIdentity> {
        let cert = certificate_params()?
            .self_signed(&key)
            .context("signing the node's certificate")?;
        Ok(NodeIdentity {
            cert_der: cert.der().clone(),
            key_pkcs8_der: key.serialize_der(),
            fingerprint: Fingerprint::of_spki(&key.subject_public_key_info()),
        })
    }

    fn load(key_path: &Path, cert_path: &Path) -> anyhow::Result<NodeIdentity> {
        let key = read_key(key_path)?;
        let cert_der = read_certificate(cert_path)?;
        let fingerprint = Fingerprint::of_certificate(&cert_der)
            .with_context(|| format!("reading certificate file {}", cert_path.display()))?;
        if Fingerprint::of_spki(&key.subject_public_key_info()) != fingerprint {
            bail!(
                "the key in {} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            );
        }
        Ok(NodeIdentity {
            cert_der,
            key_pkcs8_der: key.serialize_der(),
            fingerprint,
        })
    }

    fn create(data_dir: &Path, key_path: &Path, cert_path: &Path) -> anyhow::Result<NodeIdentity> {
        let key = KeyPair::generate().context("generating the node's key pair")?;
        let cert_pem = certificate_params()?
            .self_signed(&key)
            .context("signing the node's certificate")?
            .pem();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating directory {}", data_dir.display()))?;
        let key_file = staged_file(data_dir, key.serialize_pem().as_bytes(), key_path)?;
        let cert_file = staged_file(data_dir, cert_pem.as_bytes(), cert_path)?;
        publish(key_file, key_path)?;
        publish(cert_file, cert_path)?;
        sync_dir(data_dir);
        // Read back what was written, so a first start and a later one build the same value.
        NodeIdentity::load(key_path, cert_path)
    }
}

/// The certificate's fields. Validity keeps rcgen's default (1975 to 4096): identity is the
/// key, so expiry would only break links without adding safety.
fn certificate_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![CERT_NAME.to_owned()])
        .context("building the node's certificate parameters")?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CERT_NAME);
    params.distinguished_name = name;
    Ok(params)
}

fn exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists()
        .with_context(|| format!("checking for identity file {}", path.display()))
}

fn half_identity(missing: &Path, present: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "identity file {} is missing but {} exists; restore it, or remove both files to make \
         a new identity (peers will then need the new fingerprint)",
        missing.display(),
        present.display()
    )
}

fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let context = || format!("reading key file {}", path.display());
    let mut file = std::fs::File::open(path).with_context(context)?;
    refuse_if_readable_by_others(&file, path, "key file")?;
    let mut pem = String::new();
    file.read_to_string(&mut pem).with_context(context)?;
    KeyPair::from_pem(&pem).with_context(|| format!("parsing key file {}", path.display()))
}

fn read_certificate(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading certificate file {}", path.display()))?;
    CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("parsing certificate file {}", path.display()))
}

/// Refuses a secret file (the node's key, the client token) that its group or others may
/// read, write or run (`mode & 0o077 != 0`), as ssh refuses a private key. `file` is the open
/// file, so the mode checked is the mode of the file then read; `what` names it in the error
/// ("key file"). Error: `InvalidArgument: <what> <path> is readable by others (mode 0644);
/// run: chmod 600 <path>`.
pub(crate) fn refuse_if_readable_by_others(
    file: &std::fs::File,
    path: &Path,
    what: &str,
) -> anyhow::Result<()> {
    let mode = file
        .metadata()
        .with_context(|| format!("reading the mode of {what} {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        let shown = shell_quoted(path);
        return Err(anyhow::Error::new(Error::invalid(format!(
            "{what} {shown} is readable by others (mode {mode:04o}); run: chmod 600 {shown}"
        ))));
    }
    Ok(())
}

/// `path` as a shell word: unchanged if it has only safe characters, else single-quoted.
fn shell_quoted(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Writes `contents` to a new private (0600) temporary file in `dir`, synced, ready to be
/// renamed to `target`.
fn staged_file(
    dir: &Path,
    contents: &[u8],
    target: &Path,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let context = || format!("writing {}", target.display());
    let mut file = tempfile::Builder::new()
        .prefix(".peer-identity")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(context)?;
    file.write_all(contents).with_context(context)?;
    file.as_file().sync_all().with_context(context)?;
    Ok(file)
}

/// Renames a staged file to `target`, refusing to replace an existing file.
fn publish(file: tempfile::NamedTempFile, target: &Path) -> anyhow::Result<()> {
    file.persist_noclobber(target)
        .map_err(|error| error.error)
        .with_context(|| format!("creating {}", target.display()))?;
    Ok(())
}

/// Makes the renames durable; failure only weakens crash safety, so it is logged.
fn sync_dir(dir: &Path) {
    if let Err(error) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!("syncing directory {}: {error}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_certificate_is_the_fingerprint_of_its_key() {
        for _ in 0..8 {
            let key = KeyPair::generate().unwrap();
            let cert = certificate_params().unwrap().self_signed(&key).unwrap();
            let from_cert = Fingerprint::of_certificate(cert.der()).unwrap();
            assert_eq!(
                from_cert,
                Fingerprint::of_spki(&key.subject_public_key_info())
            );
            assert_eq!(from_cert.as_str().len(), 64);
        }
    }

    #[test]
    fn an_identity_from_a_seed_is_the_same_for_the_same_seed_only() {
        let one = NodeIdentity::from_seed([1; 32]).unwrap();
        let again = NodeIdentity::from_seed([1; 32]).unwrap();
        let two = NodeIdentity::from_seed([2; 32]).unwrap();
        assert_eq!(one.fingerprint(), again.fingerprint());
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert_eq!(
            &Fingerprint::of_certificate(one.certificate_der()).unwrap(),
            one.fingerprint()
        );
    }

    #[test]
    fn generated_identity_is_consistent() {
        let identity = NodeIdentity::generate().unwrap();
        let from_cert = Fingerprint::of_certificate(identity.certificate_der()).unwrap();
        assert_eq!(&from_cert, identity.fingerprint());
        assert_ne!(
            NodeIdentity::generate().unwrap().fingerprint(),
            identity.fingerprint()
        );
        assert!(!format!("{identity:?}").contains("key_pkcs8"));
    }

    #[test]
    fn malformed_certificates_are_refused() {
        let identity = NodeIdentity::generate().unwrap();
        let cert = identity.certificate_der();
        let mut inputs: Vec<&[u8]> = vec![b"not a certificate", &[0x30, 0x80, 0x00, 0x00]];
        for end in [0, 1, 2, 3, 10, cert.len() / 2, cert.len() - 1] {
            inputs.push(&cert[..end]);
        }
        for input in inputs {
            let message = Fingerprint::of_certificate(input).unwrap_err().to_string();
            assert!(
                message.starts_with("InvalidArgument: malformed certificate"),
                "{} bytes: {message}",
                input.len()
            );
        }
    }

    #[test]
    fn a_certificate_with_trailing_bytes_is_refused() {
        let identity = NodeIdentity::generate().unwrap();
        let mut trailing = identity.certificate_der().to_vec();
        trailing.push(0);
        let message = Fingerprint::of_certificate(&trailing)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "InvalidArgument: malformed certificate: bytes after the certificate: 1"
        );
    }

    /// A P-256 certificate made by openssl, not rcgen.
    const OPENSSL_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUfEOKUp2dpOuNOqhM/WDMoGlC9uIwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNc3luY2Jhc2UucGVlcjAgFw0yNjExMzAwMjI1MDRaGA8yMTI2
MTEwNjAyMjUwNFowGDEWMBQGA1UEAwwNc3luY2Jhc2UucGVlcjBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABCYC4rXM/rnCWU+xbS5UbI9p2drWngJzEg9KufANFVom
+dZnnHhm9FX/PhJFfIMtlIAaaXxm+VMDDN3gLnK/ASSjUzBRMB0GA1UdDgQWBBRF
E6lUkGW+nhTWIo6gQnVlWUgznTAfBgNVHSMEGDAWgBRFE6lUkGW+nhTWIo6gQnVl
WUgznTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCEGDLmXkgz
xImEH3ggb7dMH6KH/PEZHd60jtlk5T+TbAIhALf7rGnsiZVlcvuD7+kEavcgUvaA
9wOSxtfyGXPLkLpg
-----END CERTIFICATE-----";

    #[test]
    fn fingerprints_of_existing_certificates_do_not_change() {
        // BLAKE3 of the SPKI as `openssl x509 -pubkey | openssl pkey -pubin -outform DER`
        // extracts it; the hand-written DER reader this replaced gave the same.
        let cert = CertificateDer::from_pem_slice(OPENSSL_CERT.as_bytes()).unwrap();
        assert_eq!(
            Fingerprint::of_certificate(&cert).unwrap().as_str(),
            "23bc0565fb07634ab6c71fef18f2ea11d090eaa95f304f03d6b0579dfa6095b1"
        );
    }

    #[test]
    fn fingerprint_parse_accepts_only_64_hex_and_keeps_them_lowercase() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(Fingerprint::parse(&good).unwrap().as_str(), good);
        assert_eq!(good.parse::<Fingerprint>().unwrap().to_string(), good);
        let bad = [
            String::new(),
            "abc".into(),
            good[..63].to_owned(),
            format!("{good}0"),
            format!("{}g", &good[..63]),
            format!(" {}", &good[..63]),
            format!("{}é", &good[..62]),
        ];
        for text in bad {
            let message = Fingerprint::parse(&text).unwrap_err().to_string();
            assert!(
                message.starts_with("InvalidArgument: bad peer fingerprint"),
                "{message}"
            );
        }
        let upper = Fingerprint::parse(&good.to_uppercase()).unwrap();
        assert_eq!(upper.as_str(), good, "upper case is the same identity");
    }

    #[test]
    fn a_bad_fingerprint_character_is_named_as_given() {
        let text = format!("{}G", "AB".repeat(31) + "A");
        let message = Fingerprint::parse(&text).unwrap_err().to_string();
        assert!(
            message.contains("character 'G' at byte 63 is not hex"),
            "{message}"
        );
        assert!(message.contains(&format!("{text:?}")), "{message}");
    }

    #[test]
    fn fingerprint_serde_validates() {
        let good = "ab".repeat(32);
        let json = serde_json::to_string(&Fingerprint::parse(&good).unwrap()).unwrap();
        assert_eq!(json, format!("\"{good}\""));
        let back: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), good);
        assert!(serde_json::from_str::<Fingerprint>("\"nothex\"").is_err());
    }

    #[test]
    fn the_fingerprint_on_disk_is_the_stored_identitys() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            NodeIdentity::fingerprint_on_disk(dir.path())
                .unwrap()
                .is_none()
        );
        let made = NodeIdentity::load_or_create(dir.path()).unwrap();
        let read = NodeIdentity::fingerprint_on_disk(dir.path()).unwrap();
        assert_eq!(read.as_ref(), Some(made.fingerprint()));
        std::fs::write(dir.path().join(CERT_FILE), "not a certificate").unwrap();
        let message = NodeIdentity::fingerprint_on_disk(dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains(CERT_FILE), "{message}");
    }

    #[test]
    fn identity_files_persist_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = NodeIdentity::load_or_create(&data).unwrap();
        let again = NodeIdentity::load_or_create(&data).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.certificate_der(), again.certificate_der());
        let mode = std::fs::metadata(data.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = std::fs::read_to_string(data.join(KEY_FILE)).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        let cert = std::fs::read_to_string(data.join(CERT_FILE)).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        let leftovers: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn a_half_identity_is_an_error_naming_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path()).unwrap();
        let cert = std::fs::read(dir.path().join(CERT_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let message = NodeIdentity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("peer.crt is missing"), "{message}");

        std::fs::write(dir.path().join(CERT_FILE), cert).unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let message = NodeIdentity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("peer.key is missing"), "{message}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_an_error() {
        let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        NodeIdentity::load_or_create(one.path()).unwrap();
        NodeIdentity::load_or_create(other.path()).unwrap();
        std::fs::copy(other.path().join(KEY_FILE), one.path().join(KEY_FILE)).unwrap();
        let message = NodeIdentity::load_or_create(one.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("does not match"), "{message}");
    }

    #[test]
    fn a_corrupt_identity_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path()).unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "garbage").unwrap();
        let message = format!(
            "{:#}",
            NodeIdentity::load_or_create(dir.path()).unwrap_err()
        );
        assert!(message.contains("peer.crt"), "{message}");
        std::fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        let message = format!(
            "{:#}",
            NodeIdentity::load_or_create(dir.path()).unwrap_err()
        );
        assert!(message.contains("peer.key"), "{message}");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused_with_the_chmod_fix() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        for mode in [0o644, 0o640, 0o604, 0o610] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let message = NodeIdentity::load_or_create(dir.path())
                .unwrap_err()
                .to_string();
            assert_eq!(
                message,
                format!(
                    "InvalidArgument: key file {} is readable by others (mode {mode:04o}); \
                     run: chmod 600 {}",
                    key.display(),
                    key.display()
                )
            );
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let again = NodeIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), first.fingerprint());
    }

    #[test]
    fn the_chmod_fix_quotes_a_path_the_shell_would_split() {
        assert_eq!(shell_quoted(Path::new("/x/peer.key")), "/x/peer.key");
        assert_eq!(
            shell_quoted(Path::new("/my dir/peer.key")),
            "'/my dir/peer.key'"
        );
        assert_eq!(shell_quoted(Path::new("/it's/k")), r"'/it'\''s/k'");
    }
}
