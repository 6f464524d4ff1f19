//! TLS for the local fakes: a throwaway certificate authority made at test time (rcgen), a
//! server certificate it signs for `127.0.0.1` and `localhost`, and the CA's PEM file, which
//! a gateway trusts through `SSL_CERT_FILE` (how the host's system-roots loader is pointed at
//! a private CA). And a server that trickles a handshake ([`trickle_handshake`]).

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tempdir::TempDir;

/// A test CA with one server certificate, and its PEM file on disk (removed on drop).
pub struct TestCa {
    _dir: TempDir,
    /// The CA certificate, PEM: the value for `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    /// A rustls server configuration presenting the certificate the CA signed.
    pub server: Arc<rustls::ServerConfig>,
    ca_key: KeyPair,
    ca_cert: rcgen::Certificate,
}

impl TestCa {
    /// A fresh CA named `name` and a server certificate for `127.0.0.1` and `localhost`.
    pub fn new(name: &str) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let server = server_config(&ca_key, &ca_cert, &["127.0.0.1", "localhost"]);
        let dir = TempDir::new("tls");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write the CA file");
        TestCa {
            _dir: dir,
            ca_file,
            server,
            ca_key,
            ca_cert,
        }
    }

    /// A rustls server configuration presenting a certificate this CA signs for `names`
    /// only.
    pub fn server_for(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        server_config(&self.ca_key, &self.ca_cert, names)
    }

    /// The CA file's path as a string, for `SSL_CERT_FILE`.
    pub fn ca_path(&self) -> String {
        self.ca_file.display().to_string()
    }
}

/// A server configuration presenting a certificate for `names` signed by the CA.
fn server_config(
    ca_key: &KeyPair,
    ca_cert: &rcgen::Certificate,
    names: &[&str],
) -> Arc<rustls::ServerConfig> {
    let leaf_key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut leaf = CertificateParams::new(names).expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "fake model provider");
    let leaf_cert = leaf
        .signed_by(&leaf_key, ca_cert, ca_key)
        .expect("sign the server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    #[allow(deprecated)] // ring, as the gateway uses
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("the server certificate");
    Arc::new(server)
}

/// Answer the first connection `listener` accepts with the start of a ServerHello record
/// (16 KiB long), one byte every 50 ms: a handshake never complete and never idle for 200 ms.
/// The thread ends when the client goes.
pub fn trickle_handshake(listener: TcpListener) {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let record = [0x16, 0x03, 0x03, 0x40, 0x00];
        for byte in record.into_iter().chain(std::iter::repeat(0x02)) {
            std::thread::sleep(Duration::from_millis(50));
            if conn.write_all(&[byte]).is_err() {
                return;
            }
        }
    });
}
