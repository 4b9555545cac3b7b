//! TLS 1.3 for the QUIC connection that carries a session. TLS here only
//! protects the transport and yields the channel binding: agents are
//! authenticated by the Noise handshake bound to it (spec §11.2), so each
//! endpoint presents an ephemeral self-signed certificate and a client
//! accepts any certificate whose handshake signature verifies.
//! No 0-RTT, TLS 1.3 only, one ALPN.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use agentwire_protocol::exchange::StreamAllowance;

use super::TransportLimits;

/// The ALPN of AgentWire sessions.
pub const ALPN: &[u8] = b"agentwire/1";

/// Why the QUIC/TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("QUIC/TLS configuration: {0}")]
pub struct TlsConfigError(String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport(limits: &TransportLimits) -> Result<Arc<quinn::TransportConfig>, TlsConfigError> {
    let mut t = quinn::TransportConfig::default();
    // Request streams start at the initial allowance; a server raises it as
    // the peer uses it (server.rs, StreamAllowance).
    let initial = StreamAllowance::new(limits.initial_streams_per_connection, limits.max_streams_per_connection);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(initial.current()));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(limits.one_way_streams_per_connection));
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| TlsConfigError(e.to_string()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(limits.idle_timeout / 3));
    t.initial_rtt(INITIAL_RTT);
    Ok(Arc::new(t))
}

/// A server configuration with a fresh self-signed certificate.
pub fn server_config(limits: &TransportLimits) -> Result<quinn::ServerConfig, TlsConfigError> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["agentwire".to_string()]).map_err(|e| TlsConfigError(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| TlsConfigError(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0; // no 0-RTT (spec §11.1)
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsConfigError(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport(limits)?);
    config.migration(false);
    Ok(config)
}

/// A client configuration that leaves authentication to Noise.
pub fn client_config(limits: &TransportLimits) -> Result<quinn::ClientConfig, TlsConfigError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoiseAuthenticates(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsConfigError(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(limits)?);
    Ok(config)
}

/// Accepts any certificate (Noise authenticates the agent) but still checks
/// the TLS handshake signature, so the exporter comes from a real TLS 1.3
/// key exchange with the holder of that certificate's key.
#[derive(Debug)]
struct NoiseAuthenticates(Arc<CryptoProvider>);

impl ServerCertVerifier for NoiseAuthenticates {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Default time for a peer to answer a connection at all (also in [`TransportLimits`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The first round trip's estimate before any is measured. QUIC's default
/// (333 ms, RFC 9002) sends a lost first packet again only after about a
/// second; 100 ms (what browsers use) resends it after about 300 ms, so the
/// connect timeout covers two losses. A far peer costs one spare packet.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);

/// Default handshake timeout (also in [`TransportLimits`]).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
