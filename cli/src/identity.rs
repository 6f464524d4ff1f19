//! This machine's device identity for connections to a gateway on another machine: an
//! Ed25519 key kept in `<state dir>/identity/clawgate-device.json` (0600). A device-less client
//! gets scopes only on loopback; from elsewhere the gateway wants a signed device, approved
//! once on the gateway host (`clawgate devices approve <requestId>`).

use std::io;
use std::path::{Path, PathBuf};

use clawgate_core::device::DeviceKey;
use serde_json::{Value, json};

use super::Failure;

/// Where the identity lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("identity").join("clawgate-device.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Load the identity at `path`, creating it (0600, in a 0700 directory) on first use.
pub fn load_or_create(path: &Path) -> Result<DeviceKey, Failure> {
    let broken = |why: String| {
        Failure::failed(format!(
            "device identity {} is unusable ({why}); move it aside to create a new one (the gateway will then ask to approve this machine again)",
            path.display()
        ))
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| broken(e.to_string()))?;
            let seed = v
                .get("seed")
                .and_then(Value::as_str)
                .and_then(unhex32)
                .ok_or_else(|| broken("no 64-hex-digit seed".into()))?;
            Ok(DeviceKey::from_seed(seed))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = DeviceKey::from_seed(clawgate_host::entropy::random_bytes::<32>());
            let doc = json!({"version": 1, "deviceId": key.id(), "seed": hex(&key.seed())});
            let mut text = serde_json::to_vec_pretty(&doc).map_err(|e| broken(e.to_string()))?;
            text.push(b'\n');
            clawgate_host::store::write_atomic(path, &text).map_err(|e| broken(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(broken(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_tests::tempdir::TempDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let dir = TempDir::new("identity");
        let p = path(dir.path());
        let a = load_or_create(&p).unwrap();
        let b = load_or_create(&p).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 64);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let doc: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(doc["deviceId"], a.id().as_str());
        std::fs::write(&p, r#"{"seed":"zz"}"#).unwrap();
        assert!(
            load_or_create(&p)
                .unwrap_err()
                .message
                .contains("move it aside")
        );
        assert_eq!(unhex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(unhex32(&"é".repeat(32)), None);
    }
}
