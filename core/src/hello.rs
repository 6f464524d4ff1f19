//! The `hello-ok` answer to `connect`, serialised straight from borrowed parts in upstream's key
//! order: no `Value` tree is built for the constant parts (method and event lists, policy,
//! session defaults), which would otherwise be rebuilt for every handshake.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::frame::PROTOCOL_VERSION;
use crate::methods::METHODS;
use crate::scopes::EVENTS;

/// Capabilities advertised in `features.capabilities`.
const CAPABILITIES: &[&str] = &["model-catalog-snapshot"];

/// A successful response frame around a payload that serialises itself, with the same keys and
/// order as [`crate::frame::OutFrame::ok`].
#[derive(Serialize)]
pub(crate) struct OkFrame<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    ok: bool,
    payload: &'a P,
}

impl<'a, P: Serialize> OkFrame<'a, P> {
    /// The response to request `id` carrying `payload`.
    pub(crate) fn new(id: &'a str, payload: &'a P) -> Self {
        OkFrame {
            kind: "res",
            id,
            ok: true,
            payload,
        }
    }

    /// The frame as JSON text.
    pub(crate) fn to_text(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `hello-ok` payload.
#[derive(Serialize)]
pub(crate) struct HelloOk<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u64,
    server: Server<'a>,
    features: Features,
    snapshot: Snapshot<'a, P>,
    auth: Auth<'a>,
    policy: Policy,
}

impl<'a, P: Serialize> HelloOk<'a, P> {
    /// A `hello-ok` from its per-connection parts.
    pub(crate) fn new(
        server: Server<'a>,
        snapshot: Snapshot<'a, P>,
        auth: Auth<'a>,
        policy: Policy,
    ) -> Self {
        HelloOk {
            kind: "hello-ok",
            protocol: PROTOCOL_VERSION,
            server,
            features: Features,
            snapshot,
            auth,
            policy,
        }
    }
}

/// `hello-ok.server`.
#[derive(Serialize)]
pub(crate) struct Server<'a> {
    /// The gateway's version.
    pub(crate) version: &'a str,
    /// Changes on every start.
    #[serde(rename = "bootId")]
    pub(crate) boot_id: &'a str,
    /// This connection's id.
    #[serde(rename = "connId")]
    pub(crate) conn_id: &'a str,
}

/// `hello-ok.features`: the same for every connection, so serialised once per process.
struct Features;

/// The method, event and capability lists of `features`.
struct FeatureLists;

impl Serialize for FeatureLists {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Features", 3)?;
        st.serialize_field("methods", METHODS)?;
        st.serialize_field("events", EVENTS)?;
        st.serialize_field("capabilities", CAPABILITIES)?;
        st.end()
    }
}

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static TEXT: OnceLock<Option<Box<RawValue>>> = OnceLock::new();
        // Serialising lists of strings cannot fail; were it to, they are serialised here.
        match TEXT.get_or_init(|| serde_json::value::to_raw_value(&FeatureLists).ok()) {
            Some(text) => text.serialize(s),
            None => FeatureLists.serialize(s),
        }
    }
}

/// `hello-ok.snapshot`.
#[derive(Serialize)]
pub(crate) struct Snapshot<'a, P: Serialize> {
    /// `{"phase": "accepting" | "draining"}`.
    pub(crate) suspension: Suspension,
    /// The presence list (the gateway's [`crate::route::PresenceSnapshot`]).
    pub(crate) presence: P,
    /// The same object as the `health` method's result, serialised.
    pub(crate) health: &'a RawValue,
    /// Versions of presence and health.
    #[serde(rename = "stateVersion")]
    pub(crate) state_version: StateVersion,
    /// Milliseconds since the gateway started.
    #[serde(rename = "uptimeMs")]
    pub(crate) uptime_ms: u64,
    /// Fixed session defaults.
    #[serde(rename = "sessionDefaults")]
    pub(crate) session_defaults: SessionDefaults,
    /// The configuration file, when there is one.
    #[serde(rename = "configPath", skip_serializing_if = "str::is_empty")]
    pub(crate) config_path: &'a str,
    /// The state directory, when known.
    #[serde(rename = "stateDir", skip_serializing_if = "str::is_empty")]
    pub(crate) state_dir: &'a str,
    /// `none`, `token` or `password`.
    #[serde(rename = "authMode")]
    pub(crate) auth_mode: &'static str,
}

/// `snapshot.suspension`.
#[derive(Serialize)]
pub(crate) struct Suspension {
    /// `accepting`, or `draining` once shutdown began.
    pub(crate) phase: &'static str,
}

/// `snapshot.stateVersion`.
#[derive(Serialize)]
pub(crate) struct StateVersion {
    /// Bumped on every presence change.
    pub(crate) presence: u64,
    /// Bumped on every health change.
    pub(crate) health: u64,
}

/// `snapshot.sessionDefaults`: one agent, `main`; whether a primary model is configured.
pub(crate) struct SessionDefaults {
    /// `agents.defaults.model.primary` is set (upstream's `modelConfigured`).
    pub(crate) model_configured: bool,
}

impl Serialize for SessionDefaults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SessionDefaults", 5)?;
        st.serialize_field("defaultAgentId", "main")?;
        st.serialize_field("modelConfigured", &self.model_configured)?;
        st.serialize_field("mainKey", "main")?;
        st.serialize_field("mainSessionKey", "agent:main:main")?;
        st.serialize_field("scope", "per-sender")?;
        st.end()
    }
}

/// `hello-ok.auth`.
#[derive(Serialize)]
pub(crate) struct Auth<'a> {
    /// How the connection authenticated.
    pub(crate) method: &'static str,
    /// `operator` or `node`.
    pub(crate) role: &'static str,
    /// Granted scopes (`[]` without a paired device).
    pub(crate) scopes: &'a [String],
    /// A device token issued on this connect.
    #[serde(rename = "deviceToken", skip_serializing_if = "Option::is_none")]
    pub(crate) device_token: Option<&'a str>,
    /// When that token was issued, Unix ms.
    #[serde(rename = "issuedAtMs", skip_serializing_if = "Option::is_none")]
    pub(crate) issued_at_ms: Option<u64>,
    /// `true` for an operator that was issued a device token.
    #[serde(
        rename = "recoveryMigrationAllowed",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub(crate) recovery_migration_allowed: bool,
}

/// `hello-ok.policy`.
#[derive(Serialize)]
pub(crate) struct Policy {
    /// Largest inbound frame, bytes.
    #[serde(rename = "maxPayload")]
    pub(crate) max_payload: usize,
    /// Most bytes queued to a client before it is closed as a slow consumer.
    #[serde(rename = "maxBufferedBytes")]
    pub(crate) max_buffered_bytes: usize,
    /// Interval of `tick` events, ms.
    #[serde(rename = "tickIntervalMs")]
    pub(crate) tick_interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sample(device_token: Option<&str>) -> String {
        let scopes = vec!["operator.read".to_string()];
        let health = RawValue::from_string(r#"{"ok":true}"#.into()).unwrap();
        let payload = HelloOk::new(
            Server {
                version: "0.1.0",
                boot_id: "b",
                conn_id: "c",
            },
            Snapshot {
                suspension: Suspension { phase: "accepting" },
                presence: Value::Array(vec![]),
                health: &health,
                state_version: StateVersion {
                    presence: 1,
                    health: 2,
                },
                uptime_ms: 3,
                session_defaults: SessionDefaults {
                    model_configured: false,
                },
                config_path: "",
                state_dir: "/s",
                auth_mode: "token",
            },
            Auth {
                method: "token",
                role: "operator",
                scopes: &scopes,
                device_token,
                issued_at_ms: device_token.map(|_| 5),
                recovery_migration_allowed: device_token.is_some(),
            },
            Policy {
                max_payload: 6,
                max_buffered_bytes: 7,
                tick_interval_ms: 8,
            },
        );
        OkFrame::new("r1", &payload).to_text()
    }

    /// Where each needle first occurs; panics when one is missing.
    fn positions(text: &str, needles: &[&str]) -> Vec<usize> {
        needles
            .iter()
            .map(|n| {
                text.find(n)
                    .unwrap_or_else(|| panic!("{n} missing in {text}"))
            })
            .collect()
    }

    #[test]
    fn keys_come_in_upstreams_order() {
        let text = sample(None);
        let top = [
            r#"{"type":"res","id":"r1","ok":true,"payload":{"type":"hello-ok","protocol":4,"server":{"version":"0.1.0","bootId":"b","connId":"c"},"features":{"methods":["health","#,
            r#""snapshot":{"suspension":{"phase":"accepting"},"presence":[],"health":{"ok":true},"stateVersion":{"presence":1,"health":2},"uptimeMs":3,"sessionDefaults":{"defaultAgentId":"main","modelConfigured":false,"mainKey":"main","mainSessionKey":"agent:main:main","scope":"per-sender"},"stateDir":"/s","authMode":"token"}"#,
            r#""auth":{"method":"token","role":"operator","scopes":["operator.read"]}"#,
            r#""policy":{"maxPayload":6,"maxBufferedBytes":7,"tickIntervalMs":8}}}"#,
        ];
        let at = positions(&text, &top);
        assert_eq!(at[0], 0);
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            !text.contains("configPath"),
            "an empty config path is left out"
        );
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["payload"]["features"]["events"][0], "connect.challenge");
        assert_eq!(
            v["payload"]["features"]["capabilities"],
            serde_json::json!(CAPABILITIES)
        );
    }

    #[test]
    fn an_issued_device_token_is_announced() {
        let text = sample(Some("tok"));
        let needle = r#""auth":{"method":"token","role":"operator","scopes":["operator.read"],"deviceToken":"tok","issuedAtMs":5,"recoveryMigrationAllowed":true}"#;
        assert!(text.contains(needle), "{text}");
    }
}
