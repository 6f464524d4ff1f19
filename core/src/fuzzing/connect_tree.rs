//! The validation of `connect` params as it was written over their JSON tree, before
//! [`crate::handshake`] read them straight from the frame's text: the reference the
//! `connect_params` fuzzer and the handshake's tests hold the text reading to (same params,
//! same error, message for message).

use serde_json::{Map, Value};

use crate::device::DeviceProof;
use crate::frame::unexpected_key;
use crate::handshake::{
    AuthParams, CLIENT_IDS, CLIENT_MODES, ClientInfo, ConnectParams, ParamsError,
};
use crate::scopes::Role;

const ROOT_KEYS: &[&str] = &[
    "minProtocol",
    "maxProtocol",
    "client",
    "caps",
    "commands",
    "computerUse",
    "workerRuns",
    "permissions",
    "pathEnv",
    "role",
    "scopes",
    "device",
    "auth",
    "locale",
    "userAgent",
    "modelCatalog",
];
const CLIENT_KEYS: &[&str] = &[
    "id",
    "displayName",
    "version",
    "buildId",
    "platform",
    "deviceFamily",
    "modelIdentifier",
    "timeZone",
    "mode",
    "instanceId",
];
const AUTH_KEYS: &[&str] = &[
    "token",
    "bootstrapToken",
    "deviceToken",
    "password",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];
const DEVICE_KEYS: &[&str] = &["id", "publicKey", "signature", "signedAt", "nonce"];

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ParamsError> {
    v.as_object()
        .ok_or_else(|| ParamsError::Invalid(format!("at {path}: must be object")))
}

fn check_keys(o: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), ParamsError> {
    match unexpected_key(o, allowed) {
        Some(k) => Err(ParamsError::Invalid(format!(
            "at {path}: unexpected property '{k}'"
        ))),
        None => Ok(()),
    }
}

fn req_str(o: &Map<String, Value>, key: &str, path: &str) -> Result<String, ParamsError> {
    match o.get(key) {
        None => Err(ParamsError::Invalid(format!(
            "at {path}: must have required property '{key}'"
        ))),
        Some(v) => {
            nonempty(v, || format!("{}/{key}", path.trim_start_matches("root"))).map(str::to_string)
        }
    }
}

/// `v` as a non-empty string; `path` (written only for the error) says where it is.
fn nonempty(v: &Value, path: impl FnOnce() -> String) -> Result<&str, ParamsError> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(ParamsError::Invalid(format!(
            "at {}: must NOT have fewer than 1 characters",
            path()
        ))),
        None => Err(ParamsError::Invalid(format!(
            "at {}: must be string",
            path()
        ))),
    }
}

fn opt_str(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    allow_empty: bool,
) -> Result<Option<String>, ParamsError> {
    match o.get(key) {
        None => Ok(None),
        Some(v) if allow_empty => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| ParamsError::Invalid(format!("at {path}/{key}: must be string"))),
        Some(v) => nonempty(v, || format!("{path}/{key}")).map(|s| Some(s.to_string())),
    }
}

fn str_array(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, ParamsError> {
    match o.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| nonempty(v, || format!("/{key}/{i}")).map(str::to_string))
            .collect(),
        Some(_) => Err(ParamsError::Invalid(format!("at /{key}: must be array"))),
    }
}

fn int(o: &Map<String, Value>, key: &str, path: &str, min: u64) -> Result<u64, ParamsError> {
    match o.get(key) {
        None => Err(ParamsError::Invalid(format!(
            "at {path}: must have required property '{key}'"
        ))),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(n),
            Some(_) => Err(ParamsError::Invalid(format!(
                "at {}/{key}: must be >= {min}",
                path.trim_start_matches("root")
            ))),
            None => Err(ParamsError::Invalid(format!(
                "at {}/{key}: must be integer",
                path.trim_start_matches("root")
            ))),
        },
    }
}

/// Validate `connect` params from their JSON tree, as the gateway did before it read them
/// from the text.
pub fn parse_connect(params: &Value) -> Result<ConnectParams, ParamsError> {
    let root = obj(params, "root")?;
    check_keys(root, ROOT_KEYS, "root")?;
    let min_protocol = int(root, "minProtocol", "root", 1)?;
    let max_protocol = int(root, "maxProtocol", "root", 1)?;
    let c = match root.get("client") {
        None => {
            return Err(ParamsError::Invalid(
                "at root: must have required property 'client'".into(),
            ));
        }
        Some(v) => obj(v, "/client")?,
    };
    check_keys(c, CLIENT_KEYS, "/client")?;
    let id = req_str(c, "id", "/client")?;
    if !CLIENT_IDS.contains(&id.as_str()) {
        return Err(ParamsError::Invalid(
            "at /client/id: must be equal to one of the allowed values".into(),
        ));
    }
    let version = req_str(c, "version", "/client")?;
    let platform = req_str(c, "platform", "/client")?;
    let mode = req_str(c, "mode", "/client")?;
    if !CLIENT_MODES.contains(&mode.as_str()) {
        return Err(ParamsError::Invalid(
            "at /client/mode: must be equal to one of the allowed values".into(),
        ));
    }
    for key in ["buildId", "timeZone"] {
        let limit = if key == "buildId" { 96 } else { 64 };
        if let Some(s) = opt_str(c, key, "/client", false)?
            && s.chars().count() > limit
        {
            return Err(ParamsError::Invalid(format!(
                "at /client/{key}: must NOT have more than {limit} characters"
            )));
        }
    }
    let client = ClientInfo {
        id,
        display_name: opt_str(c, "displayName", "/client", false)?,
        version,
        platform,
        device_family: opt_str(c, "deviceFamily", "/client", false)?,
        model_identifier: opt_str(c, "modelIdentifier", "/client", false)?,
        mode,
        instance_id: opt_str(c, "instanceId", "/client", false)?,
    };
    let caps = str_array(root, "caps")?;
    let commands = str_array(root, "commands")?;
    let scopes = str_array(root, "scopes")?;
    for key in ["pathEnv", "locale", "userAgent"] {
        opt_str(root, key, "", true)?;
    }
    if let Some(m) = root.get("modelCatalog") {
        // The Control UI's model-catalog scope: a session key, or a short session id.
        let m = obj(m, "/modelCatalog")?;
        let keys: &[&str] = if m.contains_key("shortId") {
            &["agentId", "shortId", "slugHint"]
        } else {
            &["agentId", "sessionKey"]
        };
        check_keys(m, keys, "/modelCatalog")?;
        for key in keys {
            opt_str(m, key, "/modelCatalog", false)?;
        }
    }
    if let Some(p) = root.get("permissions") {
        let p = obj(p, "/permissions")?;
        if let Some((k, _)) = p.iter().find(|(_, v)| !v.is_boolean()) {
            return Err(ParamsError::Invalid(format!(
                "at /permissions/{k}: must be boolean"
            )));
        }
    }
    let auth = match root.get("auth") {
        None => AuthParams::default(),
        Some(a) => {
            let a = obj(a, "/auth")?;
            check_keys(a, AUTH_KEYS, "/auth")?;
            for k in AUTH_KEYS {
                opt_str(a, k, "/auth", true)?;
            }
            let get = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            AuthParams {
                token: get("token"),
                password: get("password"),
                device_token: get("deviceToken"),
                bootstrap_token: get("bootstrapToken"),
            }
        }
    };
    let device = match root.get("device") {
        None => None,
        Some(d) => {
            let d = obj(d, "/device")?;
            check_keys(d, DEVICE_KEYS, "/device")?;
            let signed_at = int(d, "signedAt", "/device", 0)?;
            Some(DeviceProof {
                id: req_str(d, "id", "/device")?,
                public_key: req_str(d, "publicKey", "/device")?,
                signature: req_str(d, "signature", "/device")?,
                signed_at: i64::try_from(signed_at).unwrap_or(i64::MAX),
                nonce: match d.get("nonce") {
                    None => {
                        return Err(ParamsError::Invalid(
                            "at /device: must have required property 'nonce'".into(),
                        ));
                    }
                    Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
                        ParamsError::Invalid("at /device/nonce: must be string".into())
                    })?,
                },
            })
        }
    };
    let role = match root.get("role") {
        None => Role::Operator,
        Some(v) => Role::parse(nonempty(v, || "/role".into())?).ok_or(ParamsError::Role)?,
    };
    Ok(ConnectParams {
        min_protocol,
        max_protocol,
        client,
        role,
        scopes,
        caps,
        commands,
        auth,
        device,
    })
}
