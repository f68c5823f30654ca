//! Plain-HTTP GETs with a deadline (a diagnostics endpoint listens on loopback or a private
//! port; TLS is the service's front door's business).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// The largest answer read (a `/pools` of hundreds of pools is well below).
const MAX_BODY: usize = 16 << 20;

/// The diagnostics endpoint: its base address and the client that reads it.
pub(crate) struct Endpoint {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Endpoint {
    /// `url` is the endpoint's base (`http://host:port/` or with a path prefix); a trailing
    /// `/pools` or `/metrics` is taken off. Refused: another scheme, no host.
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let trimmed = url.trim().trim_end_matches('/');
        let base = trimmed
            .strip_suffix("/pools")
            .or_else(|| trimmed.strip_suffix("/metrics"))
            .unwrap_or(trimmed)
            .to_owned();
        let uri: Uri = format!("{base}/pools")
            .parse()
            .map_err(|e| format!("not a URL ({e}): give the endpoint as http://HOST:PORT/"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme `{other}` is not supported: give the diagnostics endpoint's plain http address (http://HOST:PORT/)"
                ))
            }
            None => return Err("the URL has no scheme: give it as http://HOST:PORT/".into()),
        }
        if uri.host().is_none() {
            return Err("the URL has no host: give it as http://HOST:PORT/".into());
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(
                "the URL carries user info (user:password@): the endpoint takes none; drop it"
                    .into(),
            );
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(http);
        Ok(Self { base, client })
    }

    /// GET `base + path` within `limit`: the body of a 200 answer, else why not.
    pub(crate) async fn get(&self, path: &str, limit: Duration) -> Result<String, String> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| format!("{path}: bad URL ({e})"))?;
        let work = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("{path}: request failed ({})", chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("{path}: reading the answer failed ({e})"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("{path}: HTTP {status}"));
            }
            String::from_utf8(body.to_vec()).map_err(|_| format!("{path}: the answer is not UTF-8"))
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(format!("{path}: no answer within {limit:?}")))
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
