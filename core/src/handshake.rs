//! The `connect` request: validating its params the way upstream's schema does, and the
//! admission decision (protocol, device proof, shared secret or device token, pairing,
//! scopes) with upstream's error frames and close codes.

use serde_json::{Map, Value, json};

use crate::device::DeviceProof;
use crate::frame::{ErrorCode, ErrorShape, PROTOCOL_VERSION, unexpected_key};
use crate::scopes::Role;

/// Allowed `client.id` values.
pub const CLIENT_IDS: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// Allowed `client.mode` values.
pub const CLIENT_MODES: &[&str] = &[
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

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

/// `connect.params.client`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Client id (one of [`CLIENT_IDS`]).
    pub id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Client version.
    pub version: String,
    /// Platform.
    pub platform: String,
    /// Device family.
    pub device_family: Option<String>,
    /// Model identifier.
    pub model_identifier: Option<String>,
    /// Mode (one of [`CLIENT_MODES`]).
    pub mode: String,
    /// Instance id.
    pub instance_id: Option<String>,
}

/// `connect.params.auth`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthParams {
    /// `auth.token`.
    pub token: Option<String>,
    /// `auth.password`.
    pub password: Option<String>,
    /// `auth.deviceToken`.
    pub device_token: Option<String>,
    /// `auth.bootstrapToken`.
    pub bootstrap_token: Option<String>,
}

impl AuthParams {
    /// The token that goes into the signed payload: `token ?? deviceToken ?? bootstrapToken ?? ""`.
    pub fn signed_token(&self) -> &str {
        self.token
            .as_deref()
            .or(self.device_token.as_deref())
            .or(self.bootstrap_token.as_deref())
            .unwrap_or("")
    }
}

/// Validated `connect` params.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectParams {
    /// Lowest protocol the client speaks.
    pub min_protocol: u64,
    /// Highest protocol the client speaks.
    pub max_protocol: u64,
    /// Client description.
    pub client: ClientInfo,
    /// Requested role.
    pub role: Role,
    /// Requested scopes, as sent.
    pub scopes: Vec<String>,
    /// Declared caps.
    pub caps: Vec<String>,
    /// Declared node commands.
    pub commands: Vec<String>,
    /// Credentials.
    pub auth: AuthParams,
    /// Device proof.
    pub device: Option<DeviceProof>,
}

/// Why `connect` params were refused before any auth decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamsError {
    /// Schema violation; the message follows upstream's `at <path>: …` form.
    Invalid(String),
    /// A role other than `operator` or `node`.
    Role,
}

impl ParamsError {
    /// The error frame and the close reason.
    pub fn to_error(&self) -> ErrorShape {
        match self {
            ParamsError::Invalid(m) => ErrorShape::invalid(format!("invalid connect params: {m}")),
            ParamsError::Role => ErrorShape::invalid("invalid role"),
        }
    }
}

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

/// Validate `connect` params as upstream's `ConnectParams` schema does.
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

/// Whether the protocol range is acceptable: 4 for everyone; 3..4 for probes and nodes.
pub fn protocol_ok(p: &ConnectParams) -> bool {
    let supports = |v: u64| p.min_protocol <= v && v <= p.max_protocol;
    supports(PROTOCOL_VERSION)
        || (supports(PROTOCOL_VERSION - 1)
            && (p.client.mode == "probe" || (p.role == Role::Node && p.client.mode == "node")))
}

/// The protocol-mismatch error.
pub(crate) fn protocol_mismatch(p: &ConnectParams) -> ErrorShape {
    ErrorShape::invalid("protocol mismatch").with_details(json!({
        "code": "PROTOCOL_MISMATCH",
        "clientMinProtocol": p.min_protocol,
        "clientMaxProtocol": p.max_protocol,
        "expectedProtocol": PROTOCOL_VERSION,
        "minimumProbeProtocol": PROTOCOL_VERSION - 1,
    }))
}

/// The hint upstream appends to token and password failures, by client kind.
pub(crate) fn auth_hint(client: &ClientInfo, local: bool, password: bool) -> &'static str {
    let ui = matches!(
        client.id.as_str(),
        "openclaw-control-ui" | "webchat-ui" | "webchat"
    ) || client.mode == "webchat"
        || client.mode == "ui";
    match (client.mode.as_str(), local, ui, password) {
        (_, _, true, false) => "open the dashboard URL and paste the token in Control UI settings",
        (_, _, true, true) => {
            "open the dashboard URL and enter the password in Control UI settings"
        }
        ("cli", true, _, false) => "use this gateway's gateway.auth.token or pair the device",
        ("cli", true, _, true) => "use this gateway's gateway.auth.password or pair the device",
        ("cli", false, _, false) => "set gateway.remote.token to match gateway.auth.token",
        ("cli", false, _, true) => "set gateway.remote.password to match gateway.auth.password",
        (_, _, _, false) => "provide gateway auth token",
        (_, _, _, true) => "provide gateway auth password",
    }
}

/// An auth failure of upstream's shape: `INVALID_REQUEST "unauthorized: …"`.
pub(crate) fn auth_failure(
    message: String,
    code: &str,
    auth_reason: &str,
    next: &str,
    retry_with_device_token: bool,
) -> ErrorShape {
    ErrorShape::invalid(message).with_details(json!({
        "code": code,
        "authReason": auth_reason,
        "canRetryWithDeviceToken": retry_with_device_token,
        "recommendedNextStep": next,
    }))
}

/// `NOT_PAIRED "device identity required"`.
pub(crate) fn device_identity_required() -> ErrorShape {
    ErrorShape::new(ErrorCode::NotPaired, "device identity required")
        .with_details(json!({"code": "DEVICE_IDENTITY_REQUIRED"}))
}

/// `CONTROL_UI_DEVICE_IDENTITY_REQUIRED`: a Control UI without a device outside a secure context.
pub(crate) fn control_ui_device_required() -> ErrorShape {
    ErrorShape::invalid(
        "control ui requires device identity (use HTTPS or localhost secure context)",
    )
    .with_details(json!({"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"}))
}

/// `CONTROL_UI_ORIGIN_NOT_ALLOWED`.
pub(crate) fn origin_not_allowed(origin: &str) -> ErrorShape {
    ErrorShape::invalid(format!(
        "origin not allowed: {origin} (add it to gateway.controlUi.allowedOrigins)"
    ))
    .with_details(json!({"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "origin": origin}))
}

/// `AUTH_REQUIRED` for a non-local connection in mode `none`.
pub(crate) fn auth_required() -> ErrorShape {
    ErrorShape::invalid("unauthorized: gateway auth required for non-local connections")
        .with_details(json!({
            "code": "AUTH_REQUIRED",
            "authReason": "auth_required",
            "canRetryWithDeviceToken": false,
            "recommendedNextStep": "review_auth_configuration",
        }))
}

/// `AUTH_RATE_LIMITED`.
pub(crate) fn rate_limited(retry_after_ms: u64) -> ErrorShape {
    let mut e =
        ErrorShape::invalid("unauthorized: too many failed authentication attempts (retry later)")
            .with_details(json!({
                "code": "AUTH_RATE_LIMITED",
                "authReason": "rate_limited",
                "canRetryWithDeviceToken": false,
                "recommendedNextStep": "wait_then_retry",
            }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(retry_after_ms);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}})
    }

    #[test]
    fn minimal_connect_parses() {
        let p = parse_connect(&base()).unwrap();
        assert_eq!(p.role, Role::Operator);
        assert!(protocol_ok(&p));
    }

    #[test]
    fn the_control_uis_model_catalog_scope_is_accepted_in_either_shape() {
        for scope in [
            json!({"sessionKey": "main"}),
            json!({"agentId": "main", "shortId": "ab12", "slugHint": "x"}),
        ] {
            let mut v = base();
            v["modelCatalog"] = scope;
            assert!(parse_connect(&v).is_ok());
        }
        for bad in [
            json!({"sessionKey": "main", "shortId": "x"}),
            json!({"sessionKey": ""}),
            json!("main"),
        ] {
            let mut v = base();
            v["modelCatalog"] = bad;
            assert!(
                matches!(parse_connect(&v), Err(ParamsError::Invalid(m)) if m.contains("/modelCatalog"))
            );
        }
    }

    #[test]
    fn unknown_fields_and_enums_are_refused() {
        let mut v = base();
        v["bogusField"] = json!(1);
        assert_eq!(
            parse_connect(&v),
            Err(ParamsError::Invalid(
                "at root: unexpected property 'bogusField'".into()
            ))
        );
        let mut v = base();
        v["client"]["id"] = json!("nope");
        assert!(
            matches!(parse_connect(&v), Err(ParamsError::Invalid(m)) if m.contains("/client/id"))
        );
        let mut v = base();
        v["role"] = json!("admin");
        assert_eq!(parse_connect(&v), Err(ParamsError::Role));
        let mut v = base();
        v["device"] = json!({"id":"a","publicKey":"b","signature":"c","signedAt":1});
        assert_eq!(
            parse_connect(&v),
            Err(ParamsError::Invalid(
                "at /device: must have required property 'nonce'".into()
            ))
        );
    }

    #[test]
    fn protocol_ranges() {
        let mut v = base();
        v["minProtocol"] = json!(3);
        v["maxProtocol"] = json!(3);
        assert!(!protocol_ok(&parse_connect(&v).unwrap()));
        v["client"]["mode"] = json!("probe");
        assert!(protocol_ok(&parse_connect(&v).unwrap()));
        v["minProtocol"] = json!(5);
        v["maxProtocol"] = json!(5);
        assert!(!protocol_ok(&parse_connect(&v).unwrap()));
    }
}
