//! Device identity: Ed25519 keys, the v3/v2 signature payloads and their verification.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The `device` object of `connect` params.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceProof {
    /// Claimed device id (hex SHA-256 of the public key).
    pub id: String,
    /// Public key: raw 32 bytes as base64url, std base64, or PEM SPKI.
    pub public_key: String,
    /// base64url signature over the payload.
    pub signature: String,
    /// Milliseconds since the epoch when signed.
    pub signed_at: i64,
    /// The challenge nonce echoed back.
    pub nonce: String,
}

/// The fields signed along with the device (see upstream `buildDeviceAuthPayloadV3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedFields<'a> {
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// `role`.
    pub role: &'a str,
    /// Requested scopes, in request order.
    pub scopes: &'a [String],
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token: &'a str,
    /// `client.platform`.
    pub platform: &'a str,
    /// `client.deviceFamily`.
    pub device_family: &'a str,
}

/// Why a device proof is refused, each with upstream's `details.code` and `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The public key cannot be decoded.
    #[error("device public key invalid")]
    PublicKeyInvalid,
    /// The id is not the SHA-256 of the key.
    #[error("device identity mismatch")]
    IdMismatch,
    /// `signedAt` is too far from now.
    #[error("device signature expired")]
    SignatureExpired,
    /// No nonce.
    #[error("device nonce required")]
    NonceRequired,
    /// Nonce is not this connection's challenge.
    #[error("device nonce mismatch")]
    NonceMismatch,
    /// Neither the v3 nor the v2 payload verifies.
    #[error("device signature invalid")]
    SignatureInvalid,
}

impl DeviceError {
    /// upstream `details.code`.
    pub fn code(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
            DeviceError::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            DeviceError::SignatureExpired => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            DeviceError::NonceRequired => "DEVICE_AUTH_NONCE_REQUIRED",
            DeviceError::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            DeviceError::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
        }
    }

    /// upstream `details.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "device-public-key",
            DeviceError::IdMismatch => "device-id-mismatch",
            DeviceError::SignatureExpired => "device-signature-stale",
            DeviceError::NonceRequired => "device-nonce-missing",
            DeviceError::NonceMismatch => "device-nonce-mismatch",
            DeviceError::SignatureInvalid => "device-signature",
        }
    }
}

/// Lowercase hex SHA-256 of a raw public key: the device id.
pub fn device_id(raw_public_key: &[u8]) -> String {
    crate::digest::sha256_hex(raw_public_key)
}

/// Decode a public key given as base64url, std base64 or PEM (SPKI) into its raw 32 bytes.
pub fn decode_public_key(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let bytes = if s.starts_with("-----BEGIN") {
        let body: String = s.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = data_encoding::BASE64.decode(body.trim().as_bytes()).ok()?;
        // Ed25519 SPKI: 12-byte prefix then the 32-byte key.
        der.get(der.len().checked_sub(32)?..)?.to_vec()
    } else {
        decode_b64_any(s)?
    };
    bytes.try_into().ok()
}

/// The DER prefix of an Ed25519 private key in PKCS#8 (RFC 8410), before its 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Decode an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as Node's
/// `crypto` writes it) into its 32-byte seed.
pub fn decode_private_key_pem(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if !s.starts_with("-----BEGIN PRIVATE KEY-----") {
        return None;
    }
    let body: String = s.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = data_encoding::BASE64.decode(body.trim().as_bytes()).ok()?;
    let seed = der.strip_prefix(&PKCS8_ED25519_PREFIX[..])?;
    seed.try_into().ok()
}

/// Decode base64 in url-safe or standard alphabet, padded or not.
pub fn decode_b64_any(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    data_encoding::BASE64URL_NOPAD
        .decode(trimmed.as_bytes())
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(trimmed.as_bytes()))
        .ok()
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// The v3 payload string (`v3|id|client|mode|role|scopes|signedAt|token|nonce|platform|family`).
pub fn payload_v3(device_id: &str, f: &SignedFields<'_>, signed_at: i64, nonce: &str) -> String {
    format!(
        "v3|{device_id}|{}|{}|{}|{}|{signed_at}|{}|{nonce}|{}|{}",
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.token,
        f.platform.trim().to_ascii_lowercase(),
        f.device_family.trim().to_ascii_lowercase()
    )
}

/// The legacy v2 payload string (v3 without platform and family).
pub fn payload_v2(device_id: &str, f: &SignedFields<'_>, signed_at: i64, nonce: &str) -> String {
    format!(
        "v2|{device_id}|{}|{}|{}|{}|{signed_at}|{}|{nonce}",
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.token
    )
}

/// Verify a device proof against this connection's challenge nonce and the current time.
/// Checks run in upstream's order: key, id, freshness, nonce, signature (v3 then v2).
pub fn verify(
    proof: &DeviceProof,
    fields: &SignedFields<'_>,
    challenge_nonce: &str,
    now_ms: i64,
    max_skew_ms: i64,
) -> Result<(), DeviceError> {
    let raw = decode_public_key(&proof.public_key).ok_or(DeviceError::PublicKeyInvalid)?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| DeviceError::PublicKeyInvalid)?;
    if device_id(&raw) != proof.id {
        return Err(DeviceError::IdMismatch);
    }
    if now_ms.abs_diff(proof.signed_at) > max_skew_ms.unsigned_abs() {
        return Err(DeviceError::SignatureExpired);
    }
    if proof.nonce.trim().is_empty() {
        return Err(DeviceError::NonceRequired);
    }
    if proof.nonce != challenge_nonce {
        return Err(DeviceError::NonceMismatch);
    }
    let sig_bytes = decode_b64_any(&proof.signature).ok_or(DeviceError::SignatureInvalid)?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| DeviceError::SignatureInvalid)?;
    let v3 = payload_v3(&proof.id, fields, proof.signed_at, &proof.nonce);
    if key.verify(v3.as_bytes(), &sig).is_ok() {
        return Ok(());
    }
    let v2 = payload_v2(&proof.id, fields, proof.signed_at, &proof.nonce);
    key.verify(v2.as_bytes(), &sig)
        .map_err(|_| DeviceError::SignatureInvalid)
}

/// A device's own key pair, for the client side.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
}

impl DeviceKey {
    /// A key from a 32-byte seed (the shell supplies randomness or a stored seed).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The seed, for storing the identity.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The raw public key.
    pub fn public_raw(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The device id.
    pub fn id(&self) -> String {
        device_id(&self.public_raw())
    }

    /// Sign the v3 payload for a challenge and return the `device` proof.
    pub fn prove(&self, fields: &SignedFields<'_>, signed_at: i64, nonce: &str) -> DeviceProof {
        let id = self.id();
        let payload = payload_v3(&id, fields, signed_at, nonce);
        let sig = self.signing.sign(payload.as_bytes());
        DeviceProof {
            id,
            public_key: b64url(&self.public_raw()),
            signature: b64url(&sig.to_bytes()),
            signed_at,
            nonce: nonce.to_string(),
        }
    }
}

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DeviceKey({})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(scopes: &'a [String]) -> SignedFields<'a> {
        SignedFields {
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            token: "t",
            platform: " Linux ",
            device_family: "",
        }
    }

    #[test]
    fn v3_payload_matches_upstream_layout() {
        let scopes = vec!["operator.admin".to_string(), "operator.read".to_string()];
        let p = payload_v3("abc", &fields(&scopes), 17, "n");
        assert_eq!(
            p,
            "v3|abc|cli|cli|operator|operator.admin,operator.read|17|t|n|linux|"
        );
    }

    #[test]
    fn proof_round_trip_and_each_failure() {
        let key = DeviceKey::from_seed([7; 32]);
        let scopes = vec!["operator.read".to_string()];
        let f = fields(&scopes);
        let p = key.prove(&f, 1_000_000, "nonce-1");
        assert_eq!(verify(&p, &f, "nonce-1", 1_000_000, 120_000), Ok(()));
        assert_eq!(
            verify(&p, &f, "nonce-2", 1_000_000, 120_000),
            Err(DeviceError::NonceMismatch)
        );
        assert_eq!(
            verify(&p, &f, "nonce-1", 1_200_001, 120_000),
            Err(DeviceError::SignatureExpired)
        );
        let mut bad = p.clone();
        bad.id = "00".repeat(32);
        assert_eq!(
            verify(&bad, &f, "nonce-1", 1_000_000, 120_000),
            Err(DeviceError::IdMismatch)
        );
        let other = vec!["operator.admin".to_string()];
        assert_eq!(
            verify(&p, &fields(&other), "nonce-1", 1_000_000, 120_000),
            Err(DeviceError::SignatureInvalid)
        );
        let mut blank = p.clone();
        blank.nonce = " ".into();
        assert_eq!(
            verify(&blank, &f, " ", 1_000_000, 120_000),
            Err(DeviceError::NonceRequired)
        );
    }

    #[test]
    fn v2_payload_still_verifies() {
        let key = DeviceKey::from_seed([9; 32]);
        let scopes: Vec<String> = vec![];
        let f = fields(&scopes);
        let id = key.id();
        let sig = key.signing.sign(payload_v2(&id, &f, 5, "n").as_bytes());
        let p = DeviceProof {
            id,
            public_key: b64url(&key.public_raw()),
            signature: b64url(&sig.to_bytes()),
            signed_at: 5,
            nonce: "n".into(),
        };
        assert_eq!(verify(&p, &f, "n", 5, 120_000), Ok(()));
    }
}
