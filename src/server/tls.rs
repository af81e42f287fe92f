//! TLS for the listening port: a rustls server configuration built from the web config
//! file's `tls_server_config`, and the per-connection handshake.
//!
//! The configuration is rebuilt whenever the web config or a certificate file changes
//! (`server::web`); each connection takes the configuration in force when it arrives,
//! so a rotated certificate is served from the next connection on. The handshake runs
//! in the connection's own task under `server.header_read_timeout`, so a client that
//! sends nothing (or plain HTTP) never holds up the accept loop.
//!
//! Client authentication follows Go's policies: the two verifying ones use webpki
//! against `client_ca_file`; `RequestClientCert` and `RequireAnyClientCert` take any
//! certificate without checking its chain (only that the client holds its key), as Go
//! does.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, NamedGroup, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::web::{ClientAuth, PemSource, TlsSettings, TlsVersion};

/// Why a TLS setting could not be put in force: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field tls_server_config.{field}: {msg}")]
pub struct TlsSetupError {
    /// The field under `tls_server_config`, e.g. `cert_file`.
    pub field: &'static str,
    /// What is wrong with it.
    pub msg: String,
}

/// Go's names of key exchange groups (`curve_preferences`) and rustls' groups.
const CURVES: &[(&str, NamedGroup)] = &[
    ("X25519", NamedGroup::X25519),
    ("CurveP256", NamedGroup::secp256r1),
    ("CurveP384", NamedGroup::secp384r1),
    ("CurveP521", NamedGroup::secp521r1),
];

/// Reads the PEM text of `source`.
fn read_pem(source: &PemSource, field: &'static str) -> Result<Vec<u8>, TlsSetupError> {
    match source {
        PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
        PemSource::File(path) => std::fs::read(path).map_err(|e| TlsSetupError {
            field,
            msg: format!("{}: {e}", path.display()),
        }),
    }
}

/// The field naming `source` (`cert_file` or `cert`, ...).
fn field_of(source: &PemSource, file: &'static str, inline: &'static str) -> &'static str {
    match source {
        PemSource::File(_) => file,
        PemSource::Inline(_) => inline,
    }
}

/// Builds the rustls configuration: reads the certificate, key and client CA, and
/// checks that they fit together. `http2` decides whether `h2` is offered (ALPN).
pub fn server_config(t: &TlsSettings, http2: bool) -> Result<ServerConfig, TlsSetupError> {
    let cert_field = field_of(&t.cert, "cert_file", "cert");
    let key_field = field_of(&t.key, "key_file", "key");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&t.cert, cert_field)?)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError {
                field: cert_field,
                msg: format!("not PEM certificates: {e}"),
            })?;
    if certs.is_empty() {
        return Err(TlsSetupError {
            field: cert_field,
            msg: "no certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&t.key, key_field)?).map_err(|e| {
        TlsSetupError {
            field: key_field,
            msg: format!("no PEM private key in it: {e}"),
        }
    })?;
    let provider = Arc::new(provider(t)?);
    let verifier = client_verifier(t, &provider)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
    .map(|(_, v)| v)
    .collect();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsSetupError {
            field: "cipher_suites",
            msg: format!("no cipher suite for the allowed versions: {e}"),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError {
            field: key_field,
            msg: format!("does not fit the certificate: {e}"),
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The ring provider with the configured TLS 1.2 cipher suites (TLS 1.3 suites are
/// always offered, as Go does) and key exchange groups.
fn provider(t: &TlsSettings) -> Result<CryptoProvider, TlsSetupError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut chosen: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in &t.cipher_suites {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| {
                    s.version() == &rustls::version::TLS12 && s.suite().as_str() == Some(name)
                })
                .ok_or_else(|| {
                    let known: Vec<_> = provider
                        .cipher_suites
                        .iter()
                        .filter(|s| s.version() == &rustls::version::TLS12)
                        .filter_map(|s| s.suite().as_str())
                        .collect();
                    TlsSetupError {
                        field: "cipher_suites",
                        msg: format!(
                            "{name:?} is not supported (supported: {})",
                            known.join(", ")
                        ),
                    }
                })?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &t.curve_preferences {
            let group = CURVES.iter().find(|(n, _)| n == name).map(|(_, g)| *g);
            let kx = group.and_then(|g| provider.kx_groups.iter().find(|k| k.name() == g));
            match kx {
                Some(kx) => groups.push(*kx),
                None => {
                    return Err(TlsSetupError {
                        field: "curve_preferences",
                        msg: format!(
                            "{name:?} is not supported (supported: X25519, CurveP256, CurveP384)"
                        ),
                    });
                }
            }
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

/// The verifier of client certificates for `client_auth_type`.
fn client_verifier(
    t: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    let roots = || -> Result<Arc<rustls::RootCertStore>, TlsSetupError> {
        let Some(source) = &t.client_ca else {
            return Err(TlsSetupError {
                field: "client_ca_file",
                msg: "needed to verify client certificates".into(),
            });
        };
        let field = field_of(source, "client_ca_file", "client_ca");
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read_pem(source, field)?) {
            let cert = cert.map_err(|e| TlsSetupError {
                field,
                msg: format!("not PEM certificates: {e}"),
            })?;
            store.add(cert).map_err(|e| TlsSetupError {
                field,
                msg: format!("not a usable CA certificate: {e}"),
            })?;
        }
        if store.is_empty() {
            return Err(TlsSetupError {
                field,
                msg: "no certificate in it".into(),
            });
        }
        Ok(Arc::new(store))
    };
    let webpki = |optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| TlsSetupError {
            field: "client_ca_file",
            msg: e.to_string(),
        })
    };
    Ok(match t.client_auth {
        ClientAuth::NoClientCert => Arc::new(NoClientAuth),
        ClientAuth::RequestClientCert => Arc::new(AnyClientCert::new(provider, false)),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyClientCert::new(provider, true)),
        ClientAuth::VerifyClientCertIfGiven => webpki(true)?,
        ClientAuth::RequireAndVerifyClientCert => webpki(false)?,
    })
}

/// Takes any client certificate without checking its chain, only that the client
/// signs the handshake with its key (`RequestClientCert`, `RequireAnyClientCert`).
#[derive(Debug)]
struct AnyClientCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl AnyClientCert {
    fn new(provider: &CryptoProvider, mandatory: bool) -> AnyClientCert {
        AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
            mandatory,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client did not finish within the time allowed.
    TimedOut,
    /// The handshake failed (not TLS, a refused certificate, a closed connection).
    Failed(std::io::Error),
}

/// Runs the server side of a TLS handshake on `stream` within `timeout`.
pub async fn accept<IO>(
    config: Arc<ServerConfig>,
    stream: IO,
    timeout: Duration,
) -> Result<TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(HandshakeError::Failed(e)),
        Err(_) => Err(HandshakeError::TimedOut),
    }
}
