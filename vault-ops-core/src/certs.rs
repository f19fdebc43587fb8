//! Certificate validity for the health report's expiry rules: the chain a server presents on
//! the TLS handshake (the operations guide's `openssl s_client` step) and PEM certificates
//! such as PKI issuers.
//!
//! The handshake only reads the presented certificates: nothing is sent over the connection,
//! and trust is not judged here (every request the client makes still verifies the server).
//! It connects directly, not through a proxy.

use std::time::Duration;

/// Most certificates read from one chain or one PEM bundle; the rest are ignored.
pub(crate) const MAX_CERTS: usize = 16;

/// The validity of one certificate (never the certificate itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertValidity {
    /// The subject, e.g. `CN=vault.example.com`.
    pub(crate) subject: String,
    /// notAfter, Unix seconds.
    pub(crate) not_after: i64,
}

/// Parses one DER certificate; `None` when it is not one.
pub(crate) fn validity_from_der(der: &[u8]) -> Option<CertValidity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject().to_string();
    Some(CertValidity {
        subject: if subject.is_empty() {
            "(no subject)".into()
        } else {
            subject
        },
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The certificates of a PEM bundle, in order (at most [`MAX_CERTS`]); blocks that are not
/// certificates are skipped. `Err` when no certificate could be read.
pub(crate) fn validity_from_pem(pem: &str) -> Result<Vec<CertValidity>, String> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("unreadable PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        match validity_from_der(&block.contents) {
            Some(v) => out.push(v),
            None => return Err("a PEM block is not an X.509 certificate".into()),
        }
        if out.len() == MAX_CERTS {
            break;
        }
    }
    if out.is_empty() {
        return Err("no certificate in the PEM data".into());
    }
    Ok(out)
}

/// The certificate chain `address` (`https://host:port...`) presents on a TLS handshake, as
/// presented (leaf first, at most [`MAX_CERTS`]), within `limit`.
#[cfg(feature = "rustls")]
pub(crate) async fn presented_chain(
    address: &str,
    limit: Duration,
) -> Result<Vec<CertValidity>, String> {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    let url = url::Url::parse(address).map_err(|e| format!("not a URL: {e}"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the address has no port".to_string())?;
    let (server_name, host): (ServerName<'static>, String) = match url.host() {
        Some(url::Host::Domain(d)) => (
            ServerName::try_from(d.to_string()).map_err(|e| format!("bad host name: {e}"))?,
            d.to_string(),
        ),
        Some(url::Host::Ipv4(ip)) => (ServerName::IpAddress(ip.into()), ip.to_string()),
        Some(url::Host::Ipv6(ip)) => (ServerName::IpAddress(ip.into()), ip.to_string()),
        None => return Err("the address has no host".into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        let chain: Vec<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .take(MAX_CERTS)
            .map(|c| c.as_ref().to_vec())
            .collect();
        Ok::<_, String>(chain)
    };
    let chain = tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| format!("no TLS handshake within {} s", limit.as_secs()))??;
    if chain.is_empty() {
        return Err("the server presented no certificate".into());
    }
    chain
        .iter()
        .map(|der| {
            validity_from_der(der).ok_or_else(|| "a presented certificate is not X.509".into())
        })
        .collect()
}

/// Accepts whatever certificate is presented (so that an expired or privately signed chain
/// can still be read) but checks the handshake signatures; used only to read the chain, the
/// connection carries no data.
#[cfg(feature = "rustls")]
#[derive(Debug)]
struct ReadOnly(std::sync::Arc<rustls::crypto::CryptoProvider>);

#[cfg(feature = "rustls")]
impl rustls::client::danger::ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Without rustls the chain cannot be read; the report notes it.
#[cfg(not(feature = "rustls"))]
pub(crate) async fn presented_chain(
    _address: &str,
    _limit: Duration,
) -> Result<Vec<CertValidity>, String> {
    Err("built without the `rustls` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_garbage_is_an_error_not_a_panic() {
        assert!(validity_from_pem("").is_err());
        assert!(validity_from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
        assert!(validity_from_der(&[0x30, 0x82, 0xff, 0xff]).is_none());
    }
}
