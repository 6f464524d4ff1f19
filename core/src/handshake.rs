//! The `connect` request: validating its params the way upstream's schema does, and the
//! admission decision (protocol, device proof, shared secret or device token, pairing,
//! scopes) with upstream's error frames and close codes.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::connect_fields::{
    AuthKeys, CatalogKeys, ConnectFields, Flat, KeyList, List, Obj, Permissions, Scalar,
};
use crate::device::DeviceProof;
use crate::frame::{ErrorCode, ErrorShape, PROTOCOL_VERSION};
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

/// The fields of an object, and the first key it may not have; `path` (for the errors) says
/// where it is.
fn object<'f, 'a, T>(
    v: &'f Obj<'a, T>,
    path: &str,
) -> Result<(&'f T, Option<&'f str>), ParamsError> {
    match v {
        Obj::Object { fields, unexpected } => Ok((fields, unexpected.as_deref())),
        Obj::NotObject => Err(ParamsError::Invalid(format!("at {path}: must be object"))),
    }
}

/// The fields of an object that may only have its own keys.
fn strict_object<'f, 'a, T>(v: &'f Obj<'a, T>, path: &str) -> Result<&'f T, ParamsError> {
    let (fields, unexpected) = object(v, path)?;
    check_keys(unexpected, path)?;
    Ok(fields)
}

fn check_keys(unexpected: Option<&str>, path: &str) -> Result<(), ParamsError> {
    match unexpected {
        Some(k) => Err(ParamsError::Invalid(format!(
            "at {path}: unexpected property '{k}'"
        ))),
        None => Ok(()),
    }
}

fn req_str<K: KeyList>(o: &Flat<'_, K>, key: &str, path: &str) -> Result<String, ParamsError> {
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
fn nonempty<'v>(v: &'v Scalar<'_>, path: impl FnOnce() -> String) -> Result<&'v str, ParamsError> {
    match v {
        Scalar::Str(s) if !s.is_empty() => Ok(s),
        Scalar::Str(_) => Err(ParamsError::Invalid(format!(
            "at {}: must NOT have fewer than 1 characters",
            path()
        ))),
        _ => Err(ParamsError::Invalid(format!(
            "at {}: must be string",
            path()
        ))),
    }
}

/// `v`, the value of `key` in the object at `path` if it has one, as a string.
fn opt_str(
    v: Option<&Scalar<'_>>,
    key: &str,
    path: &str,
    allow_empty: bool,
) -> Result<Option<String>, ParamsError> {
    match v {
        None => Ok(None),
        Some(Scalar::Str(s)) if allow_empty => Ok(Some(s.to_string())),
        Some(_) if allow_empty => Err(ParamsError::Invalid(format!(
            "at {path}/{key}: must be string"
        ))),
        Some(v) => nonempty(v, || format!("{path}/{key}")).map(|s| Some(s.to_string())),
    }
}

/// Root key `key`'s value, `v`, as a list of non-empty strings.
fn str_array(v: Option<&List<'_>>, key: &str) -> Result<Vec<String>, ParamsError> {
    match v {
        None => Ok(Vec::new()),
        Some(List::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| nonempty(v, || format!("/{key}/{i}")).map(str::to_string))
            .collect(),
        Some(List::NotArray) => Err(ParamsError::Invalid(format!("at /{key}: must be array"))),
    }
}

/// `v`, the value of the required `key` in the object at `path`, as an integer of at least `min`.
fn int(v: Option<&Scalar<'_>>, key: &str, path: &str, min: u64) -> Result<u64, ParamsError> {
    match v {
        None => Err(ParamsError::Invalid(format!(
            "at {path}: must have required property '{key}'"
        ))),
        Some(v) => match v {
            Scalar::UInt(n) if *n >= min => Ok(*n),
            Scalar::UInt(_) => Err(ParamsError::Invalid(format!(
                "at {}/{key}: must be >= {min}",
                path.trim_start_matches("root")
            ))),
            _ => Err(ParamsError::Invalid(format!(
                "at {}/{key}: must be integer",
                path.trim_start_matches("root")
            ))),
        },
    }
}

/// Validate `connect` params given as a JSON tree (see [`connect_params`]).
pub fn parse_connect(params: &Value) -> Result<ConnectParams, ParamsError> {
    // Every JSON value reads as `ConnectFields`: reading a tree cannot fail.
    connect_params(&ConnectFields::deserialize(params).unwrap_or_default())
}

/// Validate `connect` params, read from the frame's text, as upstream's `ConnectParams`
/// schema does.
pub(crate) fn connect_params(params: &ConnectFields<'_>) -> Result<ConnectParams, ParamsError> {
    let root = strict_object(params, "root")?;
    let min_protocol = int(root.min_protocol.as_ref(), "minProtocol", "root", 1)?;
    let max_protocol = int(root.max_protocol.as_ref(), "maxProtocol", "root", 1)?;
    let c = match &root.client {
        None => {
            return Err(ParamsError::Invalid(
                "at root: must have required property 'client'".into(),
            ));
        }
        Some(v) => strict_object(v, "/client")?,
    };
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
        if let Some(s) = opt_str(c.get(key), key, "/client", false)?
            && s.chars().count() > limit
        {
            return Err(ParamsError::Invalid(format!(
                "at /client/{key}: must NOT have more than {limit} characters"
            )));
        }
    }
    let client_str = |key| opt_str(c.get(key), key, "/client", false);
    let client = ClientInfo {
        id,
        display_name: client_str("displayName")?,
        version,
        platform,
        device_family: client_str("deviceFamily")?,
        model_identifier: client_str("modelIdentifier")?,
        mode,
        instance_id: client_str("instanceId")?,
    };
    let caps = str_array(root.caps.as_ref(), "caps")?;
    let commands = str_array(root.commands.as_ref(), "commands")?;
    let scopes = str_array(root.scopes.as_ref(), "scopes")?;
    for (key, v) in [
        ("pathEnv", &root.path_env),
        ("locale", &root.locale),
        ("userAgent", &root.user_agent),
    ] {
        opt_str(v.as_ref(), key, "", true)?;
    }
    if let Some(m) = &root.model_catalog {
        // The Control UI's model-catalog scope: a session key, or a short session id.
        let (m, other) = object(m, "/modelCatalog")?;
        let keys: &[&str] = if m.get("shortId").is_some() {
            &["agentId", "shortId", "slugHint"]
        } else {
            &["agentId", "sessionKey"]
        };
        let outside_shape = CatalogKeys::KEYS
            .iter()
            .copied()
            .filter(|k| !keys.contains(k) && m.get(k).is_some());
        check_keys(
            other.into_iter().chain(outside_shape).min(),
            "/modelCatalog",
        )?;
        for key in keys {
            opt_str(m.get(key), key, "/modelCatalog", false)?;
        }
    }
    if let Some(p) = &root.permissions {
        let Permissions::Object(p) = p else {
            return Err(ParamsError::Invalid(
                "at /permissions: must be object".into(),
            ));
        };
        if let Some((k, _)) = p.iter().find(|(_, is_bool)| !**is_bool) {
            return Err(ParamsError::Invalid(format!(
                "at /permissions/{k}: must be boolean"
            )));
        }
    }
    let auth = match &root.auth {
        None => AuthParams::default(),
        Some(a) => {
            let a = strict_object(a, "/auth")?;
            for k in AuthKeys::KEYS {
                opt_str(a.get(k), k, "/auth", true)?;
            }
            let get = |k| match a.get(k) {
                Some(Scalar::Str(s)) => Some(s.to_string()),
                _ => None,
            };
            AuthParams {
                token: get("token"),
                password: get("password"),
                device_token: get("deviceToken"),
                bootstrap_token: get("bootstrapToken"),
            }
        }
    };
    let device = match &root.device {
        None => None,
        Some(d) => {
            let d = strict_object(d, "/device")?;
            let signed_at = int(d.get("signedAt"), "signedAt", "/device", 0)?;
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
                    Some(Scalar::Str(s)) => s.to_string(),
                    Some(_) => {
                        return Err(ParamsError::Invalid(
                            "at /device/nonce: must be string".into(),
                        ));
                    }
                },
            })
        }
    };
    let role = match &root.role {
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

    /// JSON texts of connect params: a valid base, then entries that may repeat or override
    /// any key (the last one counts), in any order, with values of every shape; nested
    /// objects alike.
    mod texts {
        use proptest::prelude::*;

        use crate::connect_fields::{AuthKeys, CatalogKeys, ClientKeys, DeviceKeys, KeyList};

        /// Leaf values: strings (empty, escaped, long, allowed and not), integers in and out
        /// of range, fractions, booleans, null, arrays and objects.
        const LEAVES: &[&str] = &[
            r#""cli""#,
            r#""test""#,
            r#""node""#,
            r#""operator""#,
            r#""probe""#,
            r#""""#,
            r#""x""#,
            r#""c\u006ci""#,
            r#""q\"7""#,
            "4",
            "3",
            "0",
            "-1",
            "4.0",
            "1e2",
            "18446744073709551616",
            "true",
            "false",
            "null",
            "[]",
            r#"["a"]"#,
            r#"["a",""]"#,
            "[1]",
            "{}",
            r#"{"a":true}"#,
        ];

        fn leaf() -> BoxedStrategy<String> {
            prop_oneof![
                proptest::sample::select(LEAVES).prop_map(str::to_string),
                (60usize..100).prop_map(|n| format!("\"{}\"", "é".repeat(n))),
            ]
            .boxed()
        }

        /// Keys no object allows, and keys of one `modelCatalog` shape that the other refuses.
        const STRAY_KEYS: &[&str] = &["aa", "zz", "Id", "shortId", "sessionKey"];

        /// A key of `keys` or a stray one, with a leaf value.
        fn entry(keys: &'static [&'static str]) -> BoxedStrategy<(String, String)> {
            let key = prop_oneof![
                4 => proptest::sample::select(keys),
                1 => proptest::sample::select(STRAY_KEYS),
            ];
            (key.prop_map(str::to_string), leaf()).boxed()
        }

        /// An object: `base` entries, then up to six `entries` (a key may repeat).
        fn object(
            base: &'static str,
            entries: BoxedStrategy<(String, String)>,
        ) -> BoxedStrategy<String> {
            proptest::collection::vec(entries, 0..6)
                .prop_map(move |entries| {
                    let mut text = format!("{{{base}");
                    for (k, v) in entries {
                        if text.len() > 1 {
                            text.push(',');
                        }
                        text.push_str(&format!("\"{k}\":{v}"));
                    }
                    text.push('}');
                    text
                })
                .boxed()
        }

        /// `key` with an object of `base` and `keys` as its value, or a leaf.
        fn nested(
            key: &'static str,
            base: &'static str,
            keys: &'static [&'static str],
        ) -> BoxedStrategy<(String, String)> {
            let value = prop_oneof![4 => object(base, entry(keys)), 1 => leaf()];
            (Just(key.to_string()), value).boxed()
        }

        /// Connect params.
        pub(super) fn params() -> impl Strategy<Value = String> {
            const ROOT_KEYS: &[&str] = &[
                "minProtocol",
                "maxProtocol",
                "caps",
                "commands",
                "computerUse",
                "workerRuns",
                "pathEnv",
                "role",
                "scopes",
                "locale",
                "userAgent",
            ];
            let client = r#""id":"cli","version":"1","platform":"linux","mode":"cli""#;
            let device = r#""id":"d","publicKey":"k","signature":"s","signedAt":1,"nonce":"n""#;
            let nested_entry = prop_oneof![
                nested("client", client, ClientKeys::KEYS),
                nested("auth", r#""token":"t""#, AuthKeys::KEYS),
                nested("device", device, DeviceKeys::KEYS),
                nested("modelCatalog", "", CatalogKeys::KEYS),
                nested("permissions", "", &["a", "b", "camera"]),
            ]
            .boxed();
            let base = r#""minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}"#;
            // Entries of plain values stop most params early: half the cases have none, so
            // the nested objects' checks are reached.
            let root = prop_oneof![
                object(
                    base,
                    prop_oneof![entry(ROOT_KEYS), nested_entry.clone()].boxed()
                ),
                object(base, nested_entry),
            ];
            prop_oneof![9 => root, 1 => leaf()]
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Read from the text, params decide what the validation over their JSON tree
        /// decided: the same params, or the same error word for word.
        #[test]
        fn the_text_reading_decides_as_the_tree_did(text in texts::params()) {
            let decided = crate::fuzzing::connect_params_read(text.as_bytes());
            proptest::prop_assert!(decided.is_some(), "{} is JSON", text);
        }
    }
}
