//! TLS towards PostgreSQL with rustls (ring), for tokio-postgres.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// A client configuration trusting the webpki roots plus the PEM certificates given.
pub(crate) fn client_config(
    extra_roots_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("the CA certificate PEM cannot be parsed: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("the CA certificate PEM holds no certificate".into());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `MakeTlsConnect` for tokio-postgres: verifies the server's certificate and name, and
/// (unless `allow_weak_auth`) refuses cleartext and MD5 password authentication.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
    allow_weak_auth: bool,
}

impl MakeRustls {
    pub(crate) fn new(config: Arc<rustls::ClientConfig>, allow_weak_auth: bool) -> Self {
        MakeRustls {
            config,
            allow_weak_auth,
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_string())?,
            allow_weak_auth: self.allow_weak_auth,
        })
    }
}

pub(crate) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    allow_weak_auth: bool,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream {
                inner: Box::new(stream),
                guard: AuthGuard::new(self.allow_weak_auth),
            })
        })
    }
}

/// The TLS stream, with an [`AuthGuard`] on what the server sends.
pub(crate) struct RustlsStream<S> {
    inner: Box<tokio_rustls::client::TlsStream<S>>,
    guard: AuthGuard,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut *self.inner).poll_read(cx, buf))?;
        if let Err(refused) = self.guard.inspect(&buf.filled()[before..]) {
            // Hand none of it to tokio-postgres: the request is never complete there, so
            // it never answers it.
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                refused,
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM-SHA-256 without channel binding (the server still authenticates the
        // client with SCRAM; the certificate check authenticates the server).
        ChannelBinding::none()
    }
}

/// `AuthenticationCleartextPassword`.
const AUTH_CLEARTEXT: u32 = 3;
/// `AuthenticationMD5Password`.
const AUTH_MD5: u32 = 5;

/// Reads along the server's messages until authentication succeeds and refuses a request
/// for a cleartext or MD5 password. tokio-postgres answers such a request itself, with
/// the password (or its MD5 hash, which logs in as well as the password does); the guard
/// fails the read that would complete the request, so it is never answered. After
/// `AuthenticationOk` it passes everything through untouched.
#[derive(Debug)]
pub(super) struct AuthGuard {
    /// Authentication succeeded (or weak methods are allowed): nothing to watch.
    done: bool,
    /// A request was refused (reported again on every later read).
    refused: Option<&'static str>,
    /// The current message's header: type, length and, for `R`, the request code.
    header: [u8; 9],
    have: usize,
    /// Bytes of the current message's body still to pass.
    skip: usize,
}

impl AuthGuard {
    pub(super) fn new(allow_weak: bool) -> Self {
        AuthGuard {
            done: allow_weak,
            refused: None,
            header: [0; 9],
            have: 0,
            skip: 0,
        }
    }

    /// Looks at the next bytes from the server; `Err` when they complete a refused
    /// authentication request (or a message too malformed to follow).
    pub(super) fn inspect(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        while !self.done && !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let need = match self.have {
                0 => 1,
                _ if self.header[0] == b'R' => 9,
                _ => 5,
            };
            let n = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < need {
                continue;
            }
            if need == 1 {
                continue;
            }
            let [_, l0, l1, l2, l3, c0, c1, c2, c3] = self.header;
            let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
            let header_body = need - 1;
            if length < header_body {
                return self
                    .refuse("the server sent a malformed message during authentication; refused");
            }
            if self.header[0] == b'R' {
                match u32::from_be_bytes([c0, c1, c2, c3]) {
                    0 => self.done = true,
                    AUTH_CLEARTEXT => return self.refuse(
                        "the server asked for the password in cleartext; refused (only SCRAM-SHA-256 is used unless allow_insecure_local_dev() is set)",
                    ),
                    AUTH_MD5 => return self.refuse(
                        "the server asked for an MD5 password hash; refused (only SCRAM-SHA-256 is used unless allow_insecure_local_dev() is set)",
                    ),
                    _ => {}
                }
            }
            self.skip = length - header_body;
            self.have = 0;
        }
        Ok(())
    }

    fn refuse(&mut self, why: &'static str) -> Result<(), &'static str> {
        self.refused = Some(why);
        Err(why)
    }
}

#[cfg(test)]
mod tests {
    use super::AuthGuard;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn auth(code: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        message(b'R', &body)
    }

    /// Feeds `stream` in chunks of `chunk` bytes; the number of bytes passed before a
    /// refusal, or `None` when everything passed.
    fn refused_at(allow_weak: bool, stream: &[u8], chunk: usize) -> Option<usize> {
        let mut guard = AuthGuard::new(allow_weak);
        let mut passed = 0;
        for part in stream.chunks(chunk) {
            if guard.inspect(part).is_err() {
                return Some(passed);
            }
            passed += part.len();
        }
        None
    }

    #[test]
    fn cleartext_and_md5_requests_are_refused_before_they_are_complete() {
        let notice = message(b'N', b"SNOTICE\0Mhello\0\0");
        for request in [auth(3, b""), auth(5, b"salt")] {
            let mut stream = notice.clone();
            stream.extend_from_slice(&request);
            // The refusal comes at the latest with the request code's last byte, so the
            // request never reaches tokio-postgres complete.
            let complete_at = notice.len() + 9;
            for chunk in 1..=stream.len() {
                let at = refused_at(false, &stream, chunk).expect("refused");
                assert!(at < complete_at, "chunk {chunk}: passed {at} bytes");
                assert!(at + chunk >= complete_at, "chunk {chunk}: refused early");
            }
            // Allowed explicitly: passes.
            assert_eq!(refused_at(true, &stream, 3), None);
        }
    }

    #[test]
    fn scram_and_what_follows_authentication_pass() {
        let mut stream = auth(10, b"SCRAM-SHA-256\0\0");
        stream.extend(auth(11, b"r=abc,s=def,i=4096"));
        stream.extend(auth(12, b"v=xyz"));
        stream.extend(auth(0, b""));
        // After AuthenticationOk nothing is inspected, even bytes that look like a request.
        stream.extend(message(b'S', b"server_version\x0015\0"));
        stream.extend(auth(3, b""));
        for chunk in 1..=stream.len() {
            assert_eq!(refused_at(false, &stream, chunk), None, "chunk {chunk}");
        }
    }

    #[test]
    fn a_malformed_length_is_refused_and_the_refusal_sticks() {
        let mut guard = AuthGuard::new(false);
        assert!(guard.inspect(&[b'R', 0, 0, 0, 3, 0, 0, 0, 0]).is_err());
        assert!(guard.inspect(b"anything").is_err());
        let mut guard = AuthGuard::new(false);
        assert!(guard.inspect(&[b'E', 0, 0, 0, 2]).is_err());
    }
}
