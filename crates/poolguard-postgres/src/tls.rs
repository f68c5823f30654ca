//! TLS under the protocol tap (feature `tls`).
//!
//! The tap must see plaintext, so the manager negotiates TLS itself, below it: it sends the
//! `SSLRequest`, reads the server's one-byte answer, runs the handshake with the connector the
//! application supplied (any `tokio_postgres::tls::MakeTlsConnect`, e.g. tokio-postgres-rustls),
//! and hands the encrypted stream, wrapped in the tap, to tokio-postgres as an already-secure
//! socket (`sslmode=disable` from its point of view). Channel binding (`SCRAM-SHA-256-PLUS`)
//! is therefore not offered; plain SCRAM is.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// An encrypted stream, type-erased.
pub(crate) trait TlsIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> TlsIo for S {}

type Handshake = Pin<Box<dyn Future<Output = io::Result<Box<dyn TlsIo>>> + Send>>;

/// A TLS connector, type-erased so the manager stays a plain type.
pub(crate) trait TlsFactory: Send + Sync {
    fn handshake(&self, stream: TcpStream, host: &str) -> Handshake;
}

pub(crate) struct Connector<T>(pub(crate) T);

impl<T> TlsFactory for Connector<T>
where
    T: MakeTlsConnect<TcpStream> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <T::TlsConnect as TlsConnect<TcpStream>>::Future: Send,
{
    fn handshake(&self, stream: TcpStream, host: &str) -> Handshake {
        let connect = self
            .0
            .clone()
            .make_tls_connect(host)
            .map_err(|e| io::Error::other(e.into()));
        Box::pin(async move {
            let connect = connect?;
            let tls = connect
                .connect(stream)
                .await
                .map_err(|e| io::Error::other(e.into()))?;
            Ok(Box::new(tls) as Box<dyn TlsIo>)
        })
    }
}

/// Shared handle on the application's connector.
#[derive(Clone)]
pub(crate) struct Tls(pub(crate) std::sync::Arc<dyn TlsFactory>);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls(..)")
    }
}

/// Outcome of the `SSLRequest`.
pub(crate) enum Negotiated {
    Tls(Box<dyn TlsIo>),
    /// The server answered `N`: it does not do TLS.
    Refused(TcpStream),
}

/// Sends `SSLRequest` and, if the server agrees, runs the handshake.
pub(crate) async fn negotiate(
    tls: &Tls,
    mut stream: TcpStream,
    host: &str,
) -> io::Result<Negotiated> {
    // Length 8, request code 80877103.
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => Ok(Negotiated::Tls(tls.0.handshake(stream, host).await?)),
        b'N' => Ok(Negotiated::Refused(stream)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {other:#04x} to SSLRequest"),
        )),
    }
}
