//! A credentials-checking backend for the tests: the simulator behind a "server" that
//! accepts a set of passwords, and a provider whose next answer the test switches.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::conn::{Credentials, CredentialsError, CredentialsProvider, ErrorClass, Manager};
use poolguard_testkit::sim::{SimConn, SimError, SimManager};

/// The simulator, authenticating every connect against `accepted`.
#[derive(Clone)]
pub struct AuthSim {
    pub sim: SimManager,
    accepted: Arc<Mutex<HashSet<String>>>,
    /// `connect()` without credentials (must never happen with a provider set).
    pub plain_connects: Arc<AtomicUsize>,
}

#[derive(Debug)]
pub struct AuthConn {
    pub sim: SimConn,
    /// The password this connection authenticated with.
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("password authentication failed for user \"{0}\"")]
    WrongPassword(String),
}

impl AuthSim {
    pub fn new(accepted: &[&str]) -> Self {
        let sim = SimManager::new();
        sim.with_reset(false);
        Self {
            sim,
            accepted: Arc::new(Mutex::new(accepted.iter().map(|s| s.to_string()).collect())),
            plain_connects: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The server now accepts exactly these passwords.
    pub fn accept(&self, passwords: &[&str]) {
        *self.accepted.lock().unwrap() = passwords.iter().map(|s| s.to_string()).collect();
    }
}

impl Manager for AuthSim {
    type Connection = AuthConn;
    type Error = AuthError;

    async fn connect(&self) -> Result<AuthConn, AuthError> {
        self.plain_connects.fetch_add(1, SeqCst);
        Err(AuthError::WrongPassword("(none)".into()))
    }

    async fn connect_with(&self, credentials: Credentials) -> Result<AuthConn, AuthError> {
        let sim = self.sim.connect().await?;
        let password = credentials.password().expose().to_owned();
        if !self.accepted.lock().unwrap().contains(&password) {
            // The connection the simulator made is dropped (never pooled).
            drop(sim);
            return Err(AuthError::WrongPassword(
                credentials.user().unwrap_or("default").to_owned(),
            ));
        }
        Ok(AuthConn { sim, password })
    }

    fn accepts_credentials(&self) -> bool {
        true
    }

    fn is_auth_failure(&self, error: &AuthError) -> bool {
        matches!(error, AuthError::WrongPassword(_))
    }

    async fn validate(&self, conn: &mut AuthConn) -> Result<(), AuthError> {
        Ok(self.sim.validate(&mut conn.sim).await?)
    }

    async fn reset(&self, conn: &mut AuthConn) -> Result<(), AuthError> {
        Ok(self.sim.reset(&mut conn.sim).await?)
    }

    fn needs_reset(&self, conn: &mut AuthConn) -> bool {
        self.sim.needs_reset(&mut conn.sim)
    }

    fn is_broken(&self, conn: &mut AuthConn) -> bool {
        self.sim.is_broken(&mut conn.sim)
    }

    fn classify(&self, error: &AuthError) -> ErrorClass {
        match error {
            AuthError::Sim(e) => self.sim.classify(e),
            AuthError::WrongPassword(_) => ErrorClass::Fatal,
        }
    }

    async fn close(&self, conn: AuthConn) {
        self.sim.close(conn.sim).await;
    }
}

/// What the provider does on its next call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Password(String),
    Fail,
    Panic,
    Hang,
    Slow(Duration, String),
}

/// A provider the test switches; counts its calls.
#[derive(Clone)]
pub struct Switch {
    answer: Arc<Mutex<Answer>>,
    pub calls: Arc<AtomicUsize>,
}

impl Switch {
    pub fn new(password: &str) -> Self {
        Self {
            answer: Arc::new(Mutex::new(Answer::Password(password.into()))),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn password(&self, password: &str) {
        self.set(Answer::Password(password.into()));
    }

    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    pub fn provider(&self) -> impl CredentialsProvider {
        let me = self.clone();
        move || {
            let me = me.clone();
            async move {
                me.calls.fetch_add(1, SeqCst);
                let answer = me.answer.lock().unwrap().clone();
                match answer {
                    Answer::Password(p) => Ok(Credentials::new("app", p)),
                    Answer::Fail => Err(CredentialsError::new("secrets manager unreachable")),
                    Answer::Panic => panic!("provider panicked at random"),
                    Answer::Hang => std::future::pending().await,
                    Answer::Slow(d, p) => {
                        tokio::time::sleep(d).await;
                        Ok(Credentials::new("app", p))
                    }
                }
            }
        }
    }
}
