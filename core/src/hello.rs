//! The `hello-ok` answer to `connect`, written straight into one buffer in upstream's key
//! order. What changes only with the configuration (the server, features, session defaults,
//! paths, auth mode, policy, and the gateway's own presence entry but for its `ts`) is
//! rendered once per configuration into a [`HelloTemplate`]; each handshake splices its own
//! parts ([`HelloParts`]) in between: no serialiser runs and the buffer is sized once.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::frame::{PROTOCOL_VERSION, push_json_str};
use crate::methods::METHODS;
use crate::route::SelfPresence;
use crate::scopes::EVENTS;

/// Capabilities advertised in `features.capabilities`.
const CAPABILITIES: &[&str] = &["model-catalog-snapshot"];

/// Room for the per-connection numbers, phase, auth and keys around them, beyond the
/// template, the ids, the health payload and the scopes.
const PARTS_ROOM: usize = 256;

/// The text of a `hello-ok` frame between its per-connection parts, for one configuration.
pub(crate) struct HelloTemplate {
    /// `,"ok":true,"payload":{"type":"hello-ok","protocol":4,"server":{"version":…,"bootId":…,"connId":`
    server: String,
    /// `},"features":{…},"snapshot":{"suspension":{"phase":"`
    features: String,
    /// `"},"presence":[{"host":…,"text":…,"ts":`: the gateway's own entry up to its `ts`.
    own_presence: String,
    /// `,"version":…}`: the rest of that entry.
    own_presence_end: String,
    /// `,"sessionDefaults":{…}[,"configPath":…][,"stateDir":…],"authMode":…},"auth":`
    snapshot_end: String,
    /// `,"policy":{…}}}`
    policy: String,
}

/// The parts of a `hello-ok` that are the connection's own.
pub(crate) struct HelloParts<'a, S> {
    /// The `connect` request's id.
    pub(crate) req_id: &'a str,
    /// This connection's id (`server.connId`).
    pub(crate) conn_id: &'a str,
    /// Shutdown began (`snapshot.suspension.phase` is `draining`).
    pub(crate) draining: bool,
    /// Unix ms now: the gateway's own presence entry's `ts`.
    pub(crate) now_ms: u64,
    /// The presence entries of the sessions, after the gateway's own.
    pub(crate) sessions: S,
    /// The same object as the `health` method's result, serialised.
    pub(crate) health: &'a RawValue,
    /// `snapshot.stateVersion.presence`.
    pub(crate) presence_version: u64,
    /// `snapshot.stateVersion.health`.
    pub(crate) health_version: u64,
    /// Milliseconds since the gateway started.
    pub(crate) uptime_ms: u64,
    /// `auth`.
    pub(crate) auth: Auth<'a>,
}

/// `hello-ok.auth`.
pub(crate) struct Auth<'a> {
    /// How the connection authenticated.
    pub(crate) method: &'static str,
    /// `operator` or `node`.
    pub(crate) role: &'static str,
    /// Granted scopes (`[]` without a paired device).
    pub(crate) scopes: &'a [String],
    /// A device token issued on this connect, and when, Unix ms.
    pub(crate) device_token: Option<(&'a str, u64)>,
    /// `true` for an operator that was issued a device token.
    pub(crate) recovery_migration_allowed: bool,
}

impl HelloTemplate {
    /// The template for `config`, on the gateway started as `boot_id`.
    pub(crate) fn new(config: &Config, boot_id: &str) -> Self {
        let own = SelfPresence::new(config, boot_id, 0);
        let mut server = format!(
            r#","ok":true,"payload":{{"type":"hello-ok","protocol":{PROTOCOL_VERSION},"server":{{"version":"#
        );
        push_json_str(&mut server, &config.version);
        server.push_str(r#","bootId":"#);
        push_json_str(&mut server, boot_id);
        server.push_str(r#","connId":"#);
        let features = format!(
            r#"}},"features":{},"snapshot":{{"suspension":{{"phase":""#,
            to_json(&FeatureLists)
        );
        let mut own_presence = String::from(r#""},"presence":[{"host":"#);
        for (key, value) in [
            ("", own.host),
            ("instanceId", own.instance_id),
            ("mode", own.mode),
            ("platform", own.platform),
            ("reason", own.reason),
            ("text", &own.text),
        ] {
            if !key.is_empty() {
                let _ = write!(own_presence, r#","{key}":"#);
            }
            push_json_str(&mut own_presence, value);
        }
        own_presence.push_str(r#","ts":"#);
        let mut own_presence_end = String::from(r#","version":"#);
        push_json_str(&mut own_presence_end, own.version);
        own_presence_end.push('}');
        let session_defaults = SessionDefaults {
            model_configured: config.model.is_some(),
        };
        let mut snapshot_end = format!(r#","sessionDefaults":{}"#, to_json(&session_defaults));
        for (key, value) in [
            ("configPath", &config.config_path),
            ("stateDir", &config.state_dir),
        ] {
            if !value.is_empty() {
                let _ = write!(snapshot_end, r#","{key}":"#);
                push_json_str(&mut snapshot_end, value);
            }
        }
        snapshot_end.push_str(r#","authMode":"#);
        push_json_str(&mut snapshot_end, config.auth_mode.as_str());
        snapshot_end.push_str(r#"},"auth":"#);
        let limits = &config.limits;
        let policy = Policy {
            max_payload: limits.max_payload,
            max_buffered_bytes: limits.max_buffered_bytes,
            tick_interval_ms: limits.tick_interval.as_millis() as u64,
        };
        let policy = format!(r#","policy":{}}}}}"#, to_json(&policy));
        HelloTemplate {
            server,
            features,
            own_presence,
            own_presence_end,
            snapshot_end,
            policy,
        }
    }

    /// The `hello-ok` response frame, as JSON text.
    pub(crate) fn render(&self, p: HelloParts<'_, impl Iterator<Item = Value>>) -> String {
        let fixed = self.server.len()
            + self.features.len()
            + self.own_presence.len()
            + self.own_presence_end.len()
            + self.snapshot_end.len()
            + self.policy.len();
        let scopes: usize = p.auth.scopes.iter().map(|s| s.len() + 3).sum();
        let token = p.auth.device_token.map_or(0, |(t, _)| t.len());
        let mut out = String::with_capacity(
            fixed
                + p.req_id.len()
                + p.conn_id.len()
                + p.health.get().len()
                + scopes
                + token
                + PARTS_ROOM,
        );
        out.push_str(r#"{"type":"res","id":"#);
        push_json_str(&mut out, p.req_id);
        out.push_str(&self.server);
        push_json_str(&mut out, p.conn_id);
        out.push_str(&self.features);
        out.push_str(if p.draining { "draining" } else { "accepting" });
        out.push_str(&self.own_presence);
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{}", p.now_ms);
        out.push_str(&self.own_presence_end);
        for session in p.sessions {
            let _ = write!(out, ",{session}");
        }
        out.push_str(r#"],"health":"#);
        out.push_str(p.health.get());
        let _ = write!(
            out,
            r#","stateVersion":{{"presence":{},"health":{}}},"uptimeMs":{}"#,
            p.presence_version, p.health_version, p.uptime_ms
        );
        out.push_str(&self.snapshot_end);
        p.auth.write(&mut out);
        out.push_str(&self.policy);
        out
    }
}

impl Auth<'_> {
    /// Append the object.
    fn write(&self, out: &mut String) {
        out.push_str(r#"{"method":"#);
        push_json_str(out, self.method);
        out.push_str(r#","role":"#);
        push_json_str(out, self.role);
        out.push_str(r#","scopes":["#);
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(out, scope);
        }
        out.push(']');
        if let Some((token, issued_at_ms)) = self.device_token {
            out.push_str(r#","deviceToken":"#);
            push_json_str(out, token);
            let _ = write!(out, r#","issuedAtMs":{issued_at_ms}"#);
        }
        if self.recovery_migration_allowed {
            out.push_str(r#","recoveryMigrationAllowed":true"#);
        }
        out.push('}');
    }
}

/// `value` as JSON text.
fn to_json(value: &impl Serialize) -> String {
    // Serialising these types cannot fail: every map key is a string.
    serde_json::to_string(value).unwrap_or_default()
}

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

/// `snapshot.sessionDefaults`: one agent, `main`; whether a primary model is configured.
struct SessionDefaults {
    /// `agents.defaults.model.primary` is set (upstream's `modelConfigured`).
    model_configured: bool,
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

/// `hello-ok.policy`.
#[derive(Serialize)]
struct Policy {
    /// Largest inbound frame, bytes.
    #[serde(rename = "maxPayload")]
    max_payload: usize,
    /// Most bytes queued to a client before it is closed as a slow consumer.
    #[serde(rename = "maxBufferedBytes")]
    max_buffered_bytes: usize,
    /// Interval of `tick` events, ms.
    #[serde(rename = "tickIntervalMs")]
    tick_interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `hello-ok` as serde writes it from typed parts (the way it was built before the
    /// template): what the template is held to, byte for byte.
    mod reference {
        use super::*;

        #[derive(Serialize)]
        pub(super) struct OkFrame<'a, P: Serialize> {
            #[serde(rename = "type")]
            pub(super) kind: &'static str,
            pub(super) id: &'a str,
            pub(super) ok: bool,
            pub(super) payload: P,
        }

        #[derive(Serialize)]
        pub(super) struct HelloOk<'a> {
            #[serde(rename = "type")]
            pub(super) kind: &'static str,
            pub(super) protocol: u64,
            pub(super) server: Server<'a>,
            pub(super) features: FeatureLists,
            pub(super) snapshot: Snapshot<'a>,
            pub(super) auth: Auth<'a>,
            pub(super) policy: Policy,
        }

        #[derive(Serialize)]
        pub(super) struct Server<'a> {
            pub(super) version: &'a str,
            #[serde(rename = "bootId")]
            pub(super) boot_id: &'a str,
            #[serde(rename = "connId")]
            pub(super) conn_id: &'a str,
        }

        #[derive(Serialize)]
        pub(super) struct Snapshot<'a> {
            pub(super) suspension: Value,
            pub(super) presence: Vec<Value>,
            pub(super) health: &'a RawValue,
            #[serde(rename = "stateVersion")]
            pub(super) state_version: StateVersion,
            #[serde(rename = "uptimeMs")]
            pub(super) uptime_ms: u64,
            #[serde(rename = "sessionDefaults")]
            pub(super) session_defaults: SessionDefaults,
            #[serde(rename = "configPath", skip_serializing_if = "str::is_empty")]
            pub(super) config_path: &'a str,
            #[serde(rename = "stateDir", skip_serializing_if = "str::is_empty")]
            pub(super) state_dir: &'a str,
            #[serde(rename = "authMode")]
            pub(super) auth_mode: &'static str,
        }

        #[derive(Serialize)]
        pub(super) struct StateVersion {
            pub(super) presence: u64,
            pub(super) health: u64,
        }

        #[derive(Serialize)]
        pub(super) struct Auth<'a> {
            pub(super) method: &'static str,
            pub(super) role: &'static str,
            pub(super) scopes: &'a [String],
            #[serde(rename = "deviceToken", skip_serializing_if = "Option::is_none")]
            pub(super) device_token: Option<&'a str>,
            #[serde(rename = "issuedAtMs", skip_serializing_if = "Option::is_none")]
            pub(super) issued_at_ms: Option<u64>,
            #[serde(
                rename = "recoveryMigrationAllowed",
                skip_serializing_if = "std::ops::Not::not"
            )]
            pub(super) recovery_migration_allowed: bool,
        }
    }

    /// A connection's case: how it authenticated and what it was granted.
    struct Case {
        method: &'static str,
        role: &'static str,
        scopes: Vec<String>,
        device_token: Option<(&'static str, u64)>,
        draining: bool,
        sessions: Vec<Value>,
    }

    fn config(config_path: &str, version: &str, auth_mode: crate::config::AuthMode) -> Config {
        let mut c = Config {
            config_path: config_path.into(),
            state_dir: "/var/lib/claw \"gw\"".into(),
            host_name: "pi\\5".into(),
            version: version.into(),
            auth_mode,
            ..Config::local_default()
        };
        c.limits.max_payload = 6;
        c.limits.max_buffered_bytes = 7;
        c.limits.tick_interval = core::time::Duration::from_millis(8);
        c
    }

    /// The frame from the template, and from serde.
    fn both(config: &Config, case: &Case) -> (String, String) {
        let boot_id = "b\u{1}";
        let own = SelfPresence::new(config, boot_id, 1_764_979_200_123);
        let health = RawValue::from_string(r#"{"ok":true,"ts":5}"#.into()).unwrap();
        let (req_id, conn_id) = ("connect \"1\"", "0f4e8f0c-4a7b-4c1e-9d8e-2b1f3a4c5d6e");
        let auth = Auth {
            method: case.method,
            role: case.role,
            scopes: &case.scopes,
            device_token: case.device_token,
            recovery_migration_allowed: case.device_token.is_some() && case.role == "operator",
        };
        let ours = HelloTemplate::new(config, boot_id).render(HelloParts {
            req_id,
            conn_id,
            draining: case.draining,
            now_ms: own.ts,
            sessions: case.sessions.iter().cloned(),
            health: &health,
            presence_version: 3,
            health_version: 9,
            uptime_ms: 42,
            auth,
        });
        let mut presence = vec![serde_json::to_value(&own).unwrap()];
        presence.extend(case.sessions.iter().cloned());
        let payload = reference::HelloOk {
            kind: "hello-ok",
            protocol: PROTOCOL_VERSION,
            server: reference::Server {
                version: &config.version,
                boot_id,
                conn_id,
            },
            features: FeatureLists,
            snapshot: reference::Snapshot {
                suspension: json!({"phase": if case.draining { "draining" } else { "accepting" }}),
                presence,
                health: &health,
                state_version: reference::StateVersion {
                    presence: 3,
                    health: 9,
                },
                uptime_ms: 42,
                session_defaults: SessionDefaults {
                    model_configured: config.model.is_some(),
                },
                config_path: &config.config_path,
                state_dir: &config.state_dir,
                auth_mode: config.auth_mode.as_str(),
            },
            auth: reference::Auth {
                method: case.method,
                role: case.role,
                scopes: &case.scopes,
                device_token: case.device_token.map(|(t, _)| t),
                issued_at_ms: case.device_token.map(|(_, at)| at),
                recovery_migration_allowed: case.device_token.is_some() && case.role == "operator",
            },
            policy: Policy {
                max_payload: 6,
                max_buffered_bytes: 7,
                tick_interval_ms: 8,
            },
        };
        let theirs = serde_json::to_string(&reference::OkFrame {
            kind: "res",
            id: req_id,
            ok: true,
            payload,
        })
        .unwrap();
        (ours, theirs)
    }

    fn cases() -> Vec<Case> {
        let session = json!({"host": "laptop", "mode": "ui", "roles": ["operator"], "scopes": [], "text": "Client: laptop · mode ui", "ts": 1});
        vec![
            // A paired device, issued a device token.
            Case {
                method: "device-token",
                role: "operator",
                scopes: vec!["operator.admin".into(), "operator.read".into()],
                device_token: Some(("tok_-1", 1_764_979_200_000)),
                draining: false,
                sessions: vec![],
            },
            // A shared token, no device: no scopes.
            Case {
                method: "token",
                role: "operator",
                scopes: vec![],
                device_token: None,
                draining: false,
                sessions: vec![session.clone()],
            },
            // A password, while draining, with two sessions in presence.
            Case {
                method: "password",
                role: "operator",
                scopes: vec!["operator.read".into()],
                device_token: None,
                draining: true,
                sessions: vec![session.clone(), session],
            },
            // A node issued a token: no recovery migration.
            Case {
                method: "none",
                role: "node",
                scopes: vec!["we\"ird\n".into()],
                device_token: Some(("t", 0)),
                draining: false,
                sessions: vec![],
            },
        ]
    }

    #[test]
    fn the_template_writes_what_serde_writes() {
        use crate::config::AuthMode;
        for config in [
            config("", "0.1.0", AuthMode::Token),
            config("/etc/openclaw.json", "2026.1.2-é", AuthMode::Password),
            config("", "v", AuthMode::None),
        ] {
            for case in cases() {
                let (ours, theirs) = both(&config, &case);
                assert_eq!(ours, theirs);
                // Sessions' entries are not known ahead; without them it is sized once.
                assert!(
                    !case.sessions.is_empty() || ours.capacity() - ours.len() <= PARTS_ROOM,
                    "sized once: {} of {}",
                    ours.len(),
                    ours.capacity()
                );
            }
        }
    }

    #[test]
    fn keys_come_in_upstreams_order() {
        let c = config("", "0.1.0", crate::config::AuthMode::Token);
        let (text, _) = both(&c, &cases().remove(1));
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        let payload_prefix = r#"{"type":"res","id":"connect \"1\"","ok":true,"payload":{"type":"hello-ok","protocol":4,"server":{"version":"0.1.0","bootId":"b\u0001","connId":"0f4e8f0c-4a7b-4c1e-9d8e-2b1f3a4c5d6e"},"features":{"methods":["health","#;
        assert!(text.starts_with(payload_prefix), "{text}");
        let snapshot =
            r#""snapshot":{"suspension":{"phase":"accepting"},"presence":[{"host":"pi\\5","#;
        let tail = r#""uptimeMs":42,"sessionDefaults":{"defaultAgentId":"main","modelConfigured":false,"mainKey":"main","mainSessionKey":"agent:main:main","scope":"per-sender"},"stateDir":"/var/lib/claw \"gw\"","authMode":"token"},"auth":{"method":"token","role":"operator","scopes":[]},"policy":{"maxPayload":6,"maxBufferedBytes":7,"tickIntervalMs":8}}}"#;
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at(r#""features":"#) < at(snapshot), "{text}");
        assert!(text.ends_with(tail), "{text}");
        assert!(
            !text.contains("configPath"),
            "an empty config path is left out"
        );
        assert_eq!(v["payload"]["features"]["events"][0], "connect.challenge");
        assert_eq!(
            v["payload"]["features"]["capabilities"],
            json!(CAPABILITIES)
        );
    }

    #[test]
    fn an_issued_device_token_is_announced() {
        let c = config("", "0.1.0", crate::config::AuthMode::Token);
        let (text, _) = both(&c, &cases().remove(0));
        let needle = r#""auth":{"method":"device-token","role":"operator","scopes":["operator.admin","operator.read"],"deviceToken":"tok_-1","issuedAtMs":1764979200000,"recoveryMigrationAllowed":true}"#;
        assert!(text.contains(needle), "{text}");
    }
}
