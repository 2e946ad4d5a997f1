//! The peer transport: TLS 1.3 with mutual authentication by [`Fingerprint`]. Both sides
//! present their self-signed certificate and nobody uses a CA: the verifiers accept any
//! certificate as a chain, but check the handshake signature with the certificate's key, so a
//! peer proves it holds the key its fingerprint names. The server admits every client that
//! proves its key (what a peer may do is decided per call by the capabilities its identity
//! holds, so a stranger can connect, redeem an invite, and do nothing else) and hands its
//! fingerprint to the caller; the client pins the one fingerprint it expects. Session
//! resumption is off on both sides, so every connection runs both checks.
//!
//! After the handshake the server sends one confirmation byte (`0x01`; `0x02` instead when it
//! refuses the client for holding too many connections, `ResourceExhausted:`), and the client's
//! [`TlsConnector::connect`] returns only once it has read it: in TLS 1.3 a client finishes its
//! handshake before the server has judged its certificate, so without it a refused client would
//! learn of the refusal only at its first read.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::identity::{Fingerprint, NodeIdentity};

/// The ALPN protocol both sides require.
pub const ALPN: &[u8] = b"syncbase/1";

/// Longest a handshake (including the server's confirmation) may take before it is abandoned,
/// so a silent peer cannot hold a connection slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SNI name every client sends. Identity is by fingerprint, not by name, so the name is a
/// fixed dummy and the server ignores it.
const SERVER_NAME: &str = "syncbase.peer";

/// The byte the server sends once it has admitted the client.
const ACCEPTED: u8 = 0x01;
/// The byte the server sends instead when the client's identity holds too many connections.
const BUSY: u8 = 0x02;

/// An authenticated TLS stream and the peer's identity.
pub struct PeerStream<S> {
    /// The encrypted stream, handshake done.
    pub stream: S,
    /// The peer's proven identity.
    pub peer: Fingerprint,
}

/// Server side of the peer transport.
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    timeout: Duration,
}

impl TlsAcceptor {
    /// An acceptor presenting `identity` and admitting every client that proves the key of
    /// the certificate it presents.
    pub fn new(identity: &NodeIdentity) -> anyhow::Result<Self> {
        let config = server_config(identity)?;
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Accepts a TLS connection on `io` (a `TcpStream`, or a `DuplexStream` in tests and
    /// simulations), requiring a client certificate and the handshake signature of its key;
    /// a client without either fails the handshake (and its `connect` fails with `NoAccess:`).
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        io: S,
    ) -> anyhow::Result<PeerStream<tokio_rustls::server::TlsStream<S>>> {
        let (stream, ()) = self.accept_admitting(io, |_| Ok(())).await?;
        Ok(stream)
    }

    /// Like [`TlsAcceptor::accept`], and asks `admit` about the authenticated peer before
    /// confirming: if it refuses (`ResourceExhausted:`, too many connections), the client is
    /// told so and its `connect` fails with the same id.
    pub async fn accept_admitting<S, T>(
        &self,
        io: S,
        admit: impl FnOnce(&Fingerprint) -> Result<T, Error>,
    ) -> anyhow::Result<(PeerStream<tokio_rustls::server::TlsStream<S>>, T)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        tokio::time::timeout(self.timeout, self.handshake(io, admit))
            .await
            .map_err(|_| anyhow!("a connecting peer's TLS handshake timed out"))?
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send, T>(
        &self,
        io: S,
        admit: impl FnOnce(&Fingerprint) -> Result<T, Error>,
    ) -> anyhow::Result<(PeerStream<tokio_rustls::server::TlsStream<S>>, T)> {
        let mut stream = self
            .inner
            .accept(io)
            .await
            .map_err(|error| handshake_error(error, "TLS handshake with a connecting peer"))?;
        let (_, connection) = stream.get_ref();
        let peer = authenticated_peer(connection.alpn_protocol(), connection.peer_certificates())?;
        let admitted = match admit(&peer) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                // Best effort, as above.
                let _ = reply(&mut stream, BUSY).await;
                let _ = stream.shutdown().await;
                return Err(refusal.into());
            }
        };
        reply(&mut stream, ACCEPTED)
            .await
            .with_context(|| format!("confirming the TLS connection of peer {peer}"))?;
        Ok((PeerStream { stream, peer }, admitted))
    }
}

/// Tells a client whether the server accepted it ([`ACCEPTED`] or [`BUSY`]).
async fn reply<S: AsyncWrite + Unpin>(stream: &mut S, byte: u8) -> io::Result<()> {
    stream.write_all(&[byte]).await?;
    stream.flush().await
}

/// Client side of the peer transport.
pub struct TlsConnector {
    config: ClientConfig,
    timeout: Duration,
}

impl TlsConnector {
    /// A connector presenting `identity`.
    pub fn new(identity: &NodeIdentity) -> anyhow::Result<Self> {
        Ok(TlsConnector {
            config: client_config(identity)?,
            timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Connects TLS over `io` and succeeds only if the server's fingerprint is `expected`
    /// (pinning) and the server admits this node. A wrong server fails with
    /// `NoAccess: peer presented <got>, expected <expected>`; a refusal by the server with
    /// `NoAccess: peer <expected> refused this node (..)`.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        io: S,
        expected: &Fingerprint,
    ) -> anyhow::Result<PeerStream<tokio_rustls::client::TlsStream<S>>> {
        tokio::time::timeout(self.timeout, self.handshake(io, expected))
            .await
            .map_err(|_| anyhow!("TLS handshake with peer {expected} timed out"))?
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        io: S,
        expected: &Fingerprint,
    ) -> anyhow::Result<PeerStream<tokio_rustls::client::TlsStream<S>>> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.pinned_config(expected)));
        let server_name = ServerName::try_from(SERVER_NAME).context("the fixed SNI name")?;
        let mut stream = connector.connect(server_name, io).await.map_err(|error| {
            handshake_error(error, &format!("TLS handshake with peer {expected}"))
        })?;
        let (_, connection) = stream.get_ref();
        let peer = authenticated_peer(connection.alpn_protocol(), connection.peer_certificates())?;
        if &peer != expected {
            return Err(wrong_peer(&peer, expected));
        }
        await_acceptance(&mut stream, expected).await?;
        Ok(PeerStream { stream, peer })
    }

    /// This connector's config with a verifier pinned to `expected`. Resumption is off, so the
    /// verifier runs on every connection.
    fn pinned_config(&self, expected: &Fingerprint) -> ClientConfig {
        let mut config = self.config.clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(PinnedServerVerifier {
                expected: expected.clone(),
                algorithms: signature_algorithms(),
            }));
        config
    }
}

/// Reads the server's confirmation byte, turning a refusal alert into `NoAccess`.
async fn await_acceptance<S: AsyncRead + Unpin>(
    stream: &mut S,
    expected: &Fingerprint,
) -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    match stream.read_exact(&mut byte).await {
        Ok(_) if byte[0] == ACCEPTED => Ok(()),
        Ok(_) if byte[0] == BUSY => Err(anyhow::Error::new(Error::ResourceExhausted(format!(
            "peer {expected} refused this node: it holds too many connections from it"
        )))),
        Ok(_) => bail!(
            "peer {expected} sent {:#04x} instead of accepting the connection",
            byte[0]
        ),
        Err(error) => match received_alert(&error) {
            Some(alert) if is_refusal(alert) => Err(no_access(format!(
                "peer {expected} refused this node (TLS alert {alert:?})"
            ))),
            _ => Err(anyhow::Error::new(error)
                .context(format!("peer {expected} did not accept the TLS connection"))),
        },
    }
}

fn received_alert(error: &io::Error) -> Option<AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Alerts a server sends when it rejects a client certificate.
fn is_refusal(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
    )
}

/// The peer's fingerprint once a handshake is done, checking the negotiated ALPN.
fn authenticated_peer(
    alpn: Option<&[u8]>,
    certificates: Option<&[CertificateDer<'_>]>,
) -> anyhow::Result<Fingerprint> {
    if alpn != Some(ALPN) {
        bail!(
            "peer did not negotiate ALPN {:?}",
            String::from_utf8_lossy(ALPN)
        );
    }
    let end_entity = certificates
        .and_then(<[_]>::first)
        .ok_or_else(|| anyhow!("peer presented no certificate"))?;
    Fingerprint::of_certificate(end_entity)
}

/// A failed handshake as an error: a verifier's `NoAccess` verbatim, anything else with
/// `what` as context.
fn handshake_error(error: io::Error, what: &str) -> anyhow::Error {
    match verifier_refusal(&error) {
        Some(message) => no_access(message.to_owned()),
        None => anyhow::Error::new(error).context(format!("{what} failed")),
    }
}

/// The message of the `NoAccess` one of our verifiers raised, if it raised one.
fn verifier_refusal(error: &io::Error) -> Option<&str> {
    let rustls::Error::InvalidCertificate(CertificateError::Other(other)) =
        error.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    match other.0.downcast_ref::<Error>()? {
        Error::NoAccess(message) => Some(message),
        _ => None,
    }
}

fn no_access(message: String) -> anyhow::Error {
    anyhow::Error::new(Error::NoAccess(message))
}

fn wrong_peer(got: &Fingerprint, expected: &Fingerprint) -> anyhow::Error {
    no_access(format!("peer presented {got}, expected {expected}"))
}

/// A verifier's refusal, carried through rustls so the handshake can report it.
fn refusal(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        Error::NoAccess(message),
    ))))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn signature_algorithms() -> WebPkiSupportedAlgorithms {
    ring::default_provider().signature_verification_algorithms
}

fn server_config(identity: &NodeIdentity) -> anyhow::Result<ServerConfig> {
    let verifier = Arc::new(KeyHolderVerifier {
        algorithms: signature_algorithms(),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.certificate()], identity.private_key())
        .context("loading the node's certificate into the TLS server")?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn client_config(identity: &NodeIdentity) -> anyhow::Result<ClientConfig> {
    // Replaced per connection by a verifier pinned to the expected peer (`pinned_config`);
    // this one admits nobody.
    let placeholder = Arc::new(PinnedServerVerifier {
        expected: Fingerprint::of_spki(&[]),
        algorithms: signature_algorithms(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(placeholder)
        .with_client_auth_cert(vec![identity.certificate()], identity.private_key())
        .context("loading the node's certificate into the TLS client")?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Checks a TLS 1.3 handshake signature with the certificate's key.
fn verify_signature(
    algorithms: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(message, cert, dss, algorithms)
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not accepted between peers".into())
}

fn fingerprint_or_bad_encoding(cert: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
    Fingerprint::of_certificate(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// Server-side verifier: any well-formed certificate; the handshake signature proves the
/// client holds its key.
#[derive(Debug)]
struct KeyHolderVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for KeyHolderVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        fingerprint_or_bad_encoding(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Client-side verifier: only the certificate whose fingerprint is `expected`.
#[derive(Debug)]
struct PinnedServerVerifier {
    expected: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = fingerprint_or_bad_encoding(end_entity)?;
        if peer == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refusal(format!(
                "peer presented {peer}, expected {}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::CertifiedKey;

    struct Node {
        identity: NodeIdentity,
    }

    fn node() -> Node {
        Node {
            identity: NodeIdentity::generate().unwrap(),
        }
    }

    fn acceptor(server: &Node) -> TlsAcceptor {
        TlsAcceptor::new(&server.identity).unwrap()
    }

    fn connector(client: &Node) -> TlsConnector {
        TlsConnector::new(&client.identity).unwrap()
    }

    /// Runs one handshake over an in-memory pipe; (server result, client result).
    async fn handshake(
        acceptor: &TlsAcceptor,
        connector: &TlsConnector,
        expected: &Fingerprint,
    ) -> (
        anyhow::Result<PeerStream<tokio_rustls::server::TlsStream<tokio::io::DuplexStream>>>,
        anyhow::Result<PeerStream<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(client_io, expected)
        )
    }

    async fn exchange<A, B>(a: &mut A, b: &mut B)
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        a.write_all(b"ping").await.unwrap();
        a.flush().await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        b.flush().await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }

    #[tokio::test]
    async fn mutual_auth_over_a_pipe_and_bytes_flow_both_ways() {
        let (server, client) = (node(), node());
        let (accepted, connected) = handshake(
            &acceptor(&server),
            &connector(&client),
            server.identity.fingerprint(),
        )
        .await;
        let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
        assert_eq!(&accepted.peer, client.identity.fingerprint());
        assert_eq!(&connected.peer, server.identity.fingerprint());
        assert_eq!(
            connected.stream.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        exchange(&mut connected.stream, &mut accepted.stream).await;
        exchange(&mut accepted.stream, &mut connected.stream).await;
    }

    #[tokio::test]
    async fn mutual_auth_over_loopback_tcp() {
        let (server, client) = (node(), node());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = acceptor(&server);
        let server_side = async {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await
        };
        let client_side = async {
            let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            connector(&client)
                .connect(tcp, server.identity.fingerprint())
                .await
        };
        let (accepted, connected) = tokio::join!(server_side, client_side);
        let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
        assert_eq!(&accepted.peer, client.identity.fingerprint());
        assert_eq!(&connected.peer, server.identity.fingerprint());
        exchange(&mut connected.stream, &mut accepted.stream).await;
        exchange(&mut accepted.stream, &mut connected.stream).await;
    }

    /// A resolver that offers no client certificate.
    #[derive(Debug)]
    struct NoCertificate;

    impl rustls::client::ResolvesClientCert for NoCertificate {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            None
        }

        fn has_certs(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused_on_both_sides() {
        let (server, client) = (node(), node());
        let mut connector = connector(&client);
        connector.config.client_auth_cert_resolver = Arc::new(NoCertificate);
        let (accepted, connected) = handshake(
            &acceptor(&server),
            &connector,
            server.identity.fingerprint(),
        )
        .await;
        let message = format!("{:#}", accepted.err().unwrap());
        assert!(message.contains("peer sent no certificates"), "{message}");
        let message = connected.err().unwrap().to_string();
        assert!(message.starts_with("NoAccess: peer "), "{message}");
        assert!(message.contains("refused this node"), "{message}");
    }

    #[tokio::test]
    async fn any_client_proving_its_key_is_admitted_with_its_fingerprint() {
        let server = node();
        let acceptor = acceptor(&server);
        for client in [node(), node()] {
            let (accepted, connected) = handshake(
                &acceptor,
                &connector(&client),
                server.identity.fingerprint(),
            )
            .await;
            assert_eq!(&accepted.unwrap().peer, client.identity.fingerprint());
            assert!(connected.is_ok());
        }
    }

    #[tokio::test]
    async fn a_client_over_its_connection_cap_learns_so_at_connect() {
        let (server, client) = (node(), node());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (acceptor, connector) = (acceptor(&server), connector(&client));
        let busy = |_: &Fingerprint| -> Result<(), Error> {
            Err(Error::ResourceExhausted("too many connections".into()))
        };
        let (accepted, connected) = tokio::join!(
            acceptor.accept_admitting(server_io, busy),
            connector.connect(client_io, server.identity.fingerprint())
        );
        let message = accepted.err().unwrap().to_string();
        assert_eq!(message, "ResourceExhausted: too many connections");
        let message = connected.err().unwrap().to_string();
        assert!(message.starts_with("ResourceExhausted: peer "), "{message}");
    }

    #[tokio::test]
    async fn a_client_pinning_another_fingerprint_is_refused() {
        let (server, client, other) = (node(), node(), node());
        let expected = other.identity.fingerprint();
        let (accepted, connected) =
            handshake(&acceptor(&server), &connector(&client), expected).await;
        let message = connected.err().unwrap().to_string();
        assert_eq!(
            message,
            format!(
                "NoAccess: peer presented {}, expected {expected}",
                server.identity.fingerprint()
            )
        );
        assert!(accepted.is_err());
    }

    /// A certificate resolver presenting `cert` but signing with another key.
    #[derive(Debug)]
    struct Impostor(Arc<CertifiedKey>);

    impl Impostor {
        fn new(victim: &NodeIdentity, own: &NodeIdentity) -> Arc<Self> {
            let key = ring::sign::any_supported_type(&own.private_key()).unwrap();
            Arc::new(Impostor(Arc::new(CertifiedKey::new(
                vec![victim.certificate()],
                key,
            ))))
        }
    }

    impl rustls::client::ResolvesClientCert for Impostor {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    impl rustls::server::ResolvesServerCert for Impostor {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[tokio::test]
    async fn a_client_presenting_another_nodes_certificate_without_its_key_is_refused() {
        let (server, victim, attacker) = (node(), node(), node());
        let mut connector = connector(&attacker);
        connector.config.client_auth_cert_resolver =
            Impostor::new(&victim.identity, &attacker.identity);
        let (accepted, connected) = handshake(
            &acceptor(&server),
            &connector,
            server.identity.fingerprint(),
        )
        .await;
        let message = format!("{:#}", accepted.err().unwrap());
        assert!(message.contains("BadSignature"), "{message}");
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn a_server_presenting_the_pinned_certificate_without_its_key_is_refused() {
        let (server, victim, client) = (node(), node(), node());
        let acceptor = acceptor(&server);
        let mut config = server_config(&server.identity).unwrap();
        config.cert_resolver = Impostor::new(&victim.identity, &server.identity);
        let acceptor = TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ..acceptor
        };
        let (accepted, connected) = handshake(
            &acceptor,
            &connector(&client),
            victim.identity.fingerprint(),
        )
        .await;
        let message = format!("{:#}", connected.err().unwrap());
        assert!(message.contains("BadSignature"), "{message}");
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn a_client_without_alpn_is_refused() {
        let (server, client) = (node(), node());
        let mut connector = connector(&client);
        connector.config.alpn_protocols.clear();
        let (accepted, connected) = handshake(
            &acceptor(&server),
            &connector,
            server.identity.fingerprint(),
        )
        .await;
        let message = accepted.err().unwrap().to_string();
        assert!(message.contains("ALPN"), "{message}");
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (server, client) = (node(), node());
        let (_silent_client, server_io) = tokio::io::duplex(1024);
        let mut acceptor = acceptor(&server);
        acceptor.timeout = Duration::from_millis(50);
        let message = acceptor.accept(server_io).await.err().unwrap().to_string();
        assert!(message.contains("timed out"), "{message}");

        let (client_io, _silent_server) = tokio::io::duplex(1024);
        let mut connector = connector(&client);
        connector.timeout = Duration::from_millis(50);
        let expected = server.identity.fingerprint();
        let message = connector
            .connect(client_io, expected)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("timed out"), "{message}");
    }
}
