//! Methods that read the gateway's state: health, status, presence, config, logs and nodes.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Value, json};

use super::params::{self, Bounded, FromParams, Kind, NonEmpty, optional, required};
use super::{AnyParams, Call, NoParams, Reply};
use crate::frame::{ErrorShape, OutFrame};
use crate::gateway::Gateway;

/// What `logs.tail` names as its file: the lines are the gateway's, kept in memory.
const LOG_FILE: &str = "memory:clawgate";

/// `logs.tail` params.
pub(crate) struct LogsTail {
    cursor: Option<Bounded<0, { u64::MAX }>>,
    limit: Option<Bounded<1, 5000>>,
    max_bytes: Option<Bounded<1, 1_000_000>>,
}

impl FromParams for LogsTail {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("cursor", Kind::Bounded(0, u64::MAX)),
            optional("limit", Kind::Bounded(1, 5000)),
            optional("maxBytes", Kind::Bounded(1, 1_000_000)),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            cursor: p.bounded("cursor"),
            limit: p.bounded("limit"),
            max_bytes: p.bounded("maxBytes"),
        })
    }
}

/// `node.describe` params.
pub(crate) struct NodeDescribe {
    node_id: NonEmpty,
}

impl FromParams for NodeDescribe {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[required("nodeId", Kind::NonEmpty)];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            node_id: p.required_non_empty("nodeId"),
        })
    }
}

impl Gateway {
    /// The health summary (`health` result and `snapshot.health`).
    fn health_payload(&self, now: Instant) -> Value {
        let (channels, order, labels) = self.channel_summary();
        json!({
            "ok": true,
            "ts": self.unix_ms(now),
            "durationMs": 0,
            "plugins": {"loaded": [], "errors": self.tool_problems()},
            "configReload": {"hotReloadStatus": "active"},
            "channels": channels,
            "channelOrder": order,
            "channelLabels": labels,
            "heartbeatSeconds": 1800,
            "defaultAgentId": "main",
            "agents": [],
            "sessions": {"path": format!("{}/agents/main/sessions/sessions.json", self.config.state_dir), "count": 0, "recent": []},
        })
    }

    fn status_payload(&self, now: Instant) -> Value {
        let counts = self.counts();
        json!({
            "ok": true,
            "ts": self.unix_ms(now),
            "version": self.config.version,
            "uptimeMs": self.uptime_ms(now),
            "authMode": self.config.auth_mode.as_str(),
            "bind": self.config.bind_label,
            "port": self.config.port,
            "connections": {"open": counts.connections, "authenticated": counts.authenticated},
            "nodes": {"connected": counts.nodes, "paired": self.store.devices.values().filter(|d| d.node.is_some()).count()},
            "devices": {"paired": self.store.devices.len(), "pending": self.store.pending.len()},
            "heartbeatSeconds": 1800,
            "sessions": {"count": 0, "recent": []},
        })
    }

    fn config_payload(&self) -> Value {
        json!({
            "path": self.config.config_path,
            "exists": !self.config.file.is_null(),
            "valid": true,
            "config": crate::mask::redact(&self.config.file),
            "issues": [],
        })
    }

    /// Take the health summary anew unless the cached one is fresh
    /// (`self.health_cache.payload()` is then current). A snapshot that says something new
    /// moves `stateVersion.health` and goes to every client as a `health` event, as upstream
    /// broadcasts each snapshot it takes.
    pub(crate) fn refresh_health(&mut self, now: Instant) {
        let now_ms = self.unix_ms(now);
        if !self.health_cache.is_fresh(now_ms) {
            let payload = self.health_payload(now);
            if self.health_cache.store(now_ms, &payload) {
                let sv = self.state_version();
                self.broadcast(now, "health", &payload, Some(&sv));
            }
        }
    }

    pub(super) fn health(&mut self, now: Instant, call: &Call<'_>, _: AnyParams) -> Reply {
        self.refresh_health(now);
        let payload = self.health_cache.payload().get();
        Reply::Frame(OutFrame::ok_text(call.req_id, payload.len(), |out| {
            out.push_str(payload)
        }))
    }

    pub(super) fn status(&mut self, now: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(self.status_payload(now)))
    }

    pub(super) fn system_presence(&mut self, now: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(Value::Array(self.presence_list(now))))
    }

    pub(super) fn last_heartbeat(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(Value::Null))
    }

    pub(super) fn gateway_identity_get(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(match &self.identity {
            Some(key) => Ok(json!({
                "deviceId": key.id(),
                "publicKey": crate::device::b64url(&key.public_raw()),
            })),
            None => Err(ErrorShape::new(
                crate::frame::ErrorCode::Unavailable,
                "gateway identity unavailable",
            )),
        })
    }

    pub(super) fn config_get(&mut self, _: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        Reply::Now(Ok(self.config_payload()))
    }

    /// Upstream's `logs.tail` over the ring of JSON lines: its defaults (500 lines, 250 kB),
    /// its answer assembled from the lines as the ring keeps them, escaped once.
    pub(super) fn logs_tail(&mut self, _: Instant, call: &Call<'_>, p: LogsTail) -> Reply {
        let limit = p.limit.map_or(500, |b| b.0) as usize;
        let max_bytes = p.max_bytes.map_or(250_000, |b| b.0);
        let t = self.logs.tail(p.cursor.map(|b| b.0), limit, max_bytes);
        let bytes: usize = t.quoted.iter().map(|q| q.len() + 1).sum();
        Reply::Frame(OutFrame::ok_text(call.req_id, bytes + 120, |out| {
            let _ = write!(
                out,
                r#"{{"file":"{LOG_FILE}","cursor":{},"size":{},"lines":["#,
                t.cursor, t.cursor
            );
            for (i, q) in t.quoted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(q);
            }
            let _ = write!(out, r#"],"truncated":{},"reset":{}"#, t.truncated, t.reset);
            if let Some(skipped) = t.skipped {
                let _ = write!(out, r#","skippedBytes":{skipped}"#);
            }
            out.push('}');
        }))
    }

    pub(super) fn node_list_method(&mut self, now: Instant, _: &Call<'_>, _: NoParams) -> Reply {
        Reply::Now(Ok(self.node_list(now)))
    }

    pub(super) fn node_describe(&mut self, _: Instant, _: &Call<'_>, p: NodeDescribe) -> Reply {
        let nid = p.node_id.0;
        Reply::Now(
            self.node_entry(&nid)
                .ok_or_else(|| ErrorShape::invalid(format!("unknown nodeId: {nid}"))),
        )
    }
}
