//! TLS (feature `tls`) against the real server, with tokio-postgres-rustls as the connector.
//! The local server uses Debian's self-signed "snakeoil" certificate, so the test connector
//! accepts any certificate (never do that outside a test).
#![cfg(feature = "tls")]

mod common;

use std::sync::Arc;

use common::*;
use poolguard::conn::Manager;
use poolguard_postgres::{Error, PostgresManager};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

async fn ssl_in_use(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn require_encrypts_and_the_tap_still_sees_transactions() {
    let admin = admin().await;
    let ssl_on: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl_on, "on",
        "the test server must have ssl=on (Debian's default; see scripts/services.sh)"
    );
    let m = PostgresManager::builder(&format!("{} sslmode=require", pg_url()))
        .tls(connector())
        .build()
        .unwrap();
    let mut c = m.connect().await.unwrap();
    assert!(ssl_in_use(&c).await, "sslmode=require must encrypt");

    // The transaction tracking works above the encryption.
    let table = unique("pg_tls_tx");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    c.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    m.reset(&mut c).await.unwrap();
    c.batch_execute("COMMIT").await.ok();
    let n: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the open transaction leaked through TLS");
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    m.validate(&mut c).await.unwrap();
}

#[tokio::test]
async fn disable_and_no_connector_stay_plaintext() {
    drop(admin().await);
    let m = PostgresManager::builder(&format!("{} sslmode=disable", pg_url()))
        .tls(connector())
        .build()
        .unwrap();
    let c = m.connect().await.unwrap();
    assert!(!ssl_in_use(&c).await);
    let m = PostgresManager::new(&pg_url()).unwrap();
    let c = m.connect().await.unwrap();
    assert!(!ssl_in_use(&c).await);
}

#[tokio::test]
async fn a_failed_handshake_is_a_tls_error() {
    drop(admin().await);
    // A connector that trusts nothing: the snakeoil certificate is rejected.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let m = PostgresManager::builder(&format!("{} sslmode=require", pg_url()))
        .tls(tokio_postgres_rustls::MakeRustlsConnect::new(config))
        .build()
        .unwrap();
    match m.connect().await {
        Err(e @ Error::Tls { .. }) => assert!(e.to_string().contains("TLS"), "{e}"),
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("an untrusted certificate was accepted"),
    }
}
