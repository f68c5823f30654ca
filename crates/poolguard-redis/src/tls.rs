//! TLS for `rediss://` addresses (feature `tls`): rustls with the `ring` provider.

#[cfg(not(feature = "tls"))]
/// Without the `tls` feature there is no TLS setup: `rediss://` addresses are refused.
pub(crate) enum Tls {}

#[cfg(feature = "tls")]
pub(crate) use imp::{config_from_pem, config_native, Tls};

#[cfg(feature = "tls")]
mod imp {
    use std::sync::Arc;

    use redis::ConnectionInfo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::TlsConnector;

    use crate::error::Error;
    use crate::manager::BuildError;

    /// The TLS setup of one manager: the client configuration and the name the server's
    /// certificate must carry (the URL's host).
    pub(crate) struct Tls {
        connector: TlsConnector,
        name: ServerName<'static>,
    }

    impl Tls {
        pub(crate) fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self, BuildError> {
            let name = ServerName::try_from(host.to_owned()).map_err(|e| {
                BuildError::Tls(format!("`{host}` is not a valid TLS server name: {e}"))
            })?;
            Ok(Tls {
                connector: TlsConnector::from(config),
                name,
            })
        }

        /// The TLS handshake over a connected socket. A failure (an untrusted certificate, a
        /// name mismatch, a server that does not speak TLS) is [`Error::Tls`].
        pub(crate) async fn handshake(
            &self,
            tcp: TcpStream,
            info: &ConnectionInfo,
        ) -> Result<TlsStream<TcpStream>, Error> {
            self.connector
                .connect(self.name.clone(), tcp)
                .await
                .map_err(|source| Error::Tls {
                    address: crate::redact::address(info),
                    source,
                })
        }
    }

    fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, BuildError> {
        // An explicit provider: the process-wide default may be unset, or ambiguous when more
        // than one is compiled in.
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::Tls(format!("TLS setup failed: {e}")))
    }

    /// A client configuration trusting exactly the CA certificates in `pem`.
    pub(crate) fn config_from_pem(pem: &[u8]) -> Result<ClientConfig, BuildError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert
                .map_err(|e| BuildError::Tls(format!("tls_root_ca: not a PEM certificate: {e}")))?;
            roots.add(cert).map_err(|e| {
                BuildError::Tls(format!("tls_root_ca: unusable CA certificate: {e}"))
            })?;
        }
        if roots.is_empty() {
            return Err(BuildError::Tls(
                "tls_root_ca: no certificate found; give the CA as PEM (-----BEGIN CERTIFICATE-----)"
                    .into(),
            ));
        }
        Ok(builder()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// A client configuration trusting the system's CA certificates.
    pub(crate) fn config_native() -> Result<ClientConfig, BuildError> {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(BuildError::Tls(
                "no trusted CA certificate found on this system; give the server's CA with \
                 RedisManagerBuilder::tls_root_ca"
                    .into(),
            ));
        }
        Ok(builder()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}
