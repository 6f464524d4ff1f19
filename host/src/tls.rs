//! TLS for outbound HTTPS: rustls on the ring provider (no OpenSSL, no C toolchain beyond
//! ring's own), certificates verified against the system's CA roots with the server name
//! sent (SNI). The roots are the operating system's (`rustls-native-certs`: the
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` variables when set, else the distribution's bundle), so
//! a CA the machine trusts, a corporate proxy's included, is trusted here too and updates
//! come with the system's packages. They are read once, lazily, off the event loop: on the
//! thread that looks up the host of the loop's first HTTPS request or `wss://` socket
//! ([`crate::lookup`]), so a gateway that never calls an HTTPS provider never loads them and
//! the loop never waits for the files.
//!
//! The handshake completes before the request (or a WebSocket's upgrade) is written, so a
//! refused certificate is its own error ("TLS handshake with host:port failed: invalid peer
//! certificate: …"). The loop moves it along as the socket allows ([`Stream::handshake`],
//! [`Stream::send`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};

use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::{
    CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, SupportedKxGroup,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::sign::SigningKey;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, SignatureScheme, StreamOwned,
    SupportedCipherSuite,
};
use webpki::ring as alg;

use crate::sockets::write_until_blocked;

/// The client configuration every HTTPS request shares, once loaded.
static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();

/// The client configuration every HTTPS request shares, or why there is none: loaded on the
/// first call, which reads the system's roots (blocking: not on the event loop).
pub(crate) fn config() -> Result<Arc<ClientConfig>, String> {
    CONFIG.get_or_init(load).clone()
}

/// Whether [`config`] was loaded, so a call returns at once.
pub(crate) fn is_loaded() -> bool {
    CONFIG.get().is_some()
}

fn load() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted CA certificates found{why}: install the system's CA bundle (ca-certificates) or set SSL_CERT_FILE"
        ));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The cipher suites offered: ring's AES-GCM ones, in rustls's order (AES-256 first), without
/// its ChaCha20-Poly1305 ones, whose code (ring's SSE4.1 and AVX2 assembly, ~50 KB of the x86-64
/// binary) was only ever a last choice: rustls lists ChaCha20 after AES-GCM, so a server picks
/// it for us only if it has no AES-GCM, which TLS 1.3 makes mandatory (RFC 8446, 9.1) and every
/// TLS 1.2 server of the last decade has.
const CIPHER_SUITES: [SupportedCipherSuite; 6] = [
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// The certificate signature algorithms: rustls's ring provider's table, copied (it is not
/// public, and `rustls::crypto::ring::default_provider()` would link every cipher suite with
/// it); a test holds it equal to rustls's.
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::ED25519,
        alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        alg::RSA_PKCS1_2048_8192_SHA256,
        alg::RSA_PKCS1_2048_8192_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA512,
        alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[alg::ED25519]),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &[alg::RSA_PKCS1_2048_8192_SHA512],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &[alg::RSA_PKCS1_2048_8192_SHA384],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &[alg::RSA_PKCS1_2048_8192_SHA256],
        ),
    ],
};

/// The key exchange groups offered, in order of preference: ring's three, X25519 first (as
/// Node's TLS, and browsers, offer them), then P-256, then P-384. rustls's ring provider lists
/// P-384 first, and a client computes a key share for its first group in every ClientHello:
/// X25519's costs a 29th of P-384's (ring 0.17.14 on x86-64 under callgrind, a key pair and
/// its public key: 0.20 M instructions against 5.76 M; P-256's 0.15 M), and servers take it.
fn kx_groups() -> Vec<&'static dyn SupportedKxGroup> {
    vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1]
}

/// ring's provider offering [`CIPHER_SUITES`], with ring's key exchange groups ([`kx_groups`])
/// and [`SIGNATURE_ALGORITHMS`]. ring, not aws-lc-rs: no cmake, and it builds for aarch64
/// with a plain C compiler (rustls deprecates it only for lacking post-quantum key exchange).
fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: kx_groups(),
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &OsRandom,
        key_provider: &NoClientKeys,
    }
}

/// The TLS handshake's randomness: the kernel's (`getrandom(2)`), as ring's own provider.
#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        getrandom::fill(buf).map_err(|_| GetRandomFailed)
    }
}

/// The gateway presents no client certificate (`with_no_client_auth`), so it loads no key.
#[derive(Debug)]
struct NoClientKeys;

impl KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "the gateway presents no TLS client certificate".into(),
        ))
    }
}

/// A TLS session over `socket` to `host` (a name, sent as SNI, or an IP address), its
/// handshake not started; `addr` (`host:port`) names it in errors.
pub(crate) fn client(host: &str, addr: &str, socket: TcpStream) -> Result<Stream, String> {
    let config = config()?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host} is not a valid TLS server name: {e}"))?;
    let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS with {addr}: {e}"))?;
    Ok(Stream::Tls(Box::new(StreamOwned::new(conn, socket))))
}

/// The error of a handshake with `addr` (`host:port`) that failed with `e`.
pub(crate) fn handshake_error(addr: &str, e: &io::Error) -> String {
    format!("TLS handshake with {addr} failed: {}", reason(e))
}

/// What kind of failure a handshake that failed with `e` is: TLS's own (rustls's error), or
/// the connection's under it (a reset, a timeout: [`crate::http_conn::kind_of`]).
pub(crate) fn handshake_kind(e: &io::Error) -> clawgate_core::HttpErrorKind {
    use clawgate_core::HttpErrorKind;
    match e.get_ref().map(|inner| inner.is::<rustls::Error>()) {
        Some(true) => HttpErrorKind::Tls,
        _ => crate::http_conn::kind_of(e, HttpErrorKind::Reset),
    }
}

/// rustls reports its own errors inside `io::Error`s; show those without the wrapping.
fn reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection (is it speaking TLS?)".into()
        }
        None => e.to_string(),
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
pub(crate) enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Acknowledge the answer's bytes as they are read, not after the delayed-ACK timeout
    /// (40 ms or more): writing a request on a reused connection puts Linux's socket in its
    /// "pingpong" mode, which holds the ACK for a reply to carry it, and a server that writes
    /// the head and the body separately (Nagle's algorithm on) sends the body only once the
    /// head is acknowledged. One `TCP_QUICKACK` after the request is written leaves that mode
    /// until the next request.
    pub(crate) fn ack_promptly(&self) {
        let socket = self.tcp();
        #[cfg(target_os = "linux")]
        let _ = rustix::net::sockopt::set_tcp_quickack(socket, true);
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
    }

    /// The TCP socket under it.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Move the handshake along as far as the non-blocking socket allows: whether it is
    /// complete (a plain stream has none). Its error goes to [`handshake_error`].
    pub(crate) fn handshake(&mut self) -> io::Result<bool> {
        let Stream::Tls(s) = self else {
            return Ok(true);
        };
        while s.conn.is_handshaking() {
            match s.conn.complete_io(&mut s.sock) {
                // Nothing moved: wait for the socket.
                Ok((0, 0)) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Write what the non-blocking socket takes of `buf` now: how many bytes of it were
    /// taken. TLS takes them into its buffer once what it holds is on the socket, so bytes
    /// may be taken and not yet sent: [`Stream::wants_write`] says so.
    pub(crate) fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = match self {
            Stream::Plain(s) => return write_until_blocked(s, buf),
            Stream::Tls(s) => s,
        };
        let mut taken = 0;
        loop {
            while s.conn.wants_write() {
                match s.conn.write_tls(&mut s.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let rest = buf.get(taken..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(taken);
            }
            // The buffer is empty here: rustls takes some (else it would never).
            match s.conn.writer().write(rest)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => taken += n,
            }
        }
    }

    /// Whether TLS holds bytes not yet on the socket (a plain stream holds none).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(s) => s.conn.wants_write(),
        }
    }

    /// Whether the server sent nothing beyond what was read: for TLS, no decrypted bytes
    /// waiting and no `close_notify` (a plain socket is peeked before its next use instead).
    pub(crate) fn is_drained(&mut self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(s) => s
                .conn
                .process_new_packets()
                .is_ok_and(|io| io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            // A server that closes without `close_notify` ends the stream like a plain EOF;
            // the response parser decides whether the body was complete.
            Stream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    /// rustls's own ring provider, which [`provider`] departs from in its suites only.
    #[allow(deprecated)]
    fn rustls_ring() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    #[test]
    fn the_provider_offers_aes_gcm_and_no_chacha20() {
        let offered: Vec<CipherSuite> =
            provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            offered,
            [
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
        // rustls's order, ChaCha20 left out.
        let ring: Vec<CipherSuite> = rustls_ring()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let without_chacha: Vec<CipherSuite> = ring
            .into_iter()
            .filter(|s| !format!("{s:?}").contains("CHACHA20"))
            .collect();
        assert_eq!(offered, without_chacha);
        // Still a valid provider for TLS 1.2 and 1.3 (a suite and key exchange for each).
        assert!(
            ClientConfig::builder_with_provider(Arc::new(provider()))
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .is_ok()
        );
    }

    /// A server for `localhost` offering `suites` over `versions`, and the roots that trust it.
    fn server(
        suites: &[SupportedCipherSuite],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ServerConfig>, RootCertStore) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = CryptoProvider {
            cipher_suites: suites.to_vec(),
            ..rustls_ring()
        };
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .unwrap();
        (Arc::new(server), roots)
    }

    /// A handshake of [`provider`]'s client with `server`, in memory: the suite agreed, or the
    /// first side's error.
    fn handshake(
        (server, roots): (Arc<rustls::ServerConfig>, RootCertStore),
    ) -> Result<CipherSuite, rustls::Error> {
        let client = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.negotiated_cipher_suite().unwrap().suite());
            }
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut &wire[..]).unwrap();
            s.process_new_packets()?;
            wire.clear();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets()?;
        }
        panic!("the handshake did not end");
    }

    #[test]
    fn the_provider_completes_tls_1_3_and_1_2_handshakes_with_aes_gcm() {
        let all = rustls_ring().cipher_suites;
        let tls13 = handshake(server(&all, &[&rustls::version::TLS13]));
        assert_eq!(tls13, Ok(CipherSuite::TLS13_AES_256_GCM_SHA384));
        let tls12 = handshake(server(&all, &[&rustls::version::TLS12]));
        assert_eq!(
            tls12,
            Ok(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
        // What is given up: a server with ChaCha20-Poly1305 alone.
        let chacha = [cipher_suite::TLS13_CHACHA20_POLY1305_SHA256];
        assert!(handshake(server(&chacha, &[&rustls::version::TLS13])).is_err());
    }

    #[test]
    fn the_provider_verifies_and_exchanges_keys_as_rustls_ring_provider() {
        let (ours, theirs) = (provider(), rustls_ring());
        assert_eq!(
            format!("{:?}", ours.signature_verification_algorithms),
            format!("{:?}", theirs.signature_verification_algorithms)
        );
        // The same groups, in another order (see `the_client_hello_offers_x25519_first`).
        let groups = |p: &CryptoProvider| {
            let mut names: Vec<u16> = p.kx_groups.iter().map(|g| g.name().into()).collect();
            names.sort_unstable();
            names
        };
        assert_eq!(groups(&ours), groups(&theirs));
        let mut random = [0u8; 32];
        ours.secure_random.fill(&mut random).unwrap();
        assert_ne!(random, [0u8; 32]);
    }

    /// The ClientHello names X25519 first, then P-256, then P-384, and carries X25519's key
    /// share: a server that prefers P-384 (rustls's ring provider) still agrees on X25519
    /// without asking for another share (no HelloRetryRequest).
    #[test]
    fn the_client_hello_offers_x25519_first() {
        use rustls::NamedGroup;
        use rustls::server::Acceptor;
        let (server, roots) = server(&rustls_ring().cipher_suites, &[&rustls::version::TLS13]);
        let client = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        let mut acceptor = Acceptor::default();
        acceptor.read_tls(&mut &hello[..]).unwrap();
        let accepted = acceptor
            .accept()
            .ok()
            .flatten()
            .expect("a whole ClientHello");
        assert_eq!(
            accepted.client_hello().named_groups(),
            Some(
                &[
                    NamedGroup::X25519,
                    NamedGroup::secp256r1,
                    NamedGroup::secp384r1
                ][..]
            )
        );
        let mut s = accepted.into_connection(server).ok().unwrap();
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
            let mut wire = Vec::new();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets().unwrap();
            wire.clear();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut &wire[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        assert!(!c.is_handshaking(), "the handshake ended");
        assert_eq!(
            c.negotiated_key_exchange_group().map(|g| g.name()),
            Some(NamedGroup::X25519)
        );
        assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Full));
    }
}
