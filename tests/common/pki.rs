//! A private CA and a certificate for `localhost` that it signed, made in the test with rcgen, for the TLS tests of
//! the GitLab client (`ca_file`) and of the PostgreSQL store (`sslrootcert`).

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// The CA's certificate, and the server's certificate and key, as PEM.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("a server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("a server certificate");
    Pki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}
