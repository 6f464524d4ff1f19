//! The connect phase: the first request must be a `connect`; it is admitted (the `hello-ok`
//! and the session) or refused (an error, then a close), a refusal held back while the local
//! failed-auth penalty runs.

use core::net::IpAddr;
use core::time::Duration;
use std::time::Instant;

use serde_json::Value;

use crate::admission::{Admitted, Refusal};
use crate::close::CloseReason;
use crate::conn::{ConnId, Phase, Session, State};
use crate::connect_fields::ConnectFields;
use crate::frame::{ErrorShape, FrameError, InvalidFrame, OutFrame, parse_request_as};
use crate::gateway::{Gateway, Timer};
use crate::handshake::{self, ConnectParams};
use crate::log::Level;
use crate::scopes::Role;

/// A connection whose `connect` is answered later; its frames are ignored meanwhile.
pub(crate) enum Held {
    /// A refusal waiting for its penalty to pass.
    Refusal {
        req_id: String,
        error: ErrorShape,
        close: Option<CloseReason>,
    },
    /// An admission waiting for the store to keep what it changed (see `durable`).
    Admission,
    /// A `connect` waiting for the held refusal of another attempt from its address.
    Queued {
        /// The `connect` frame, decided when its turn comes.
        text: String,
    },
}

impl Gateway {
    /// A text frame before `hello-ok`: it must be a valid `connect`, which is admitted or refused.
    pub(crate) fn on_connect_text(&mut self, now: Instant, id: ConnId, text: &str) {
        let req = match parse_request_as::<ConnectFields<'_>>(text) {
            Ok(r) => r,
            Err(FrameError::NotJson) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    "handshake frame is not JSON".into(),
                );
                self.close_ws(now, id, CloseReason::HandshakeNotJson);
                return;
            }
            Err(FrameError::Invalid { id: rid, problem }) => {
                let unexpected = matches!(problem, InvalidFrame::UnexpectedProperty(_));
                let msg = if unexpected || rid == "invalid" {
                    "invalid handshake: first request must be connect".to_string()
                } else {
                    format!("invalid request frame: {problem}")
                };
                self.reject(now, id, &rid, ErrorShape::invalid(msg), None);
                return;
            }
        };
        if req.method != "connect" {
            self.reject(
                now,
                id,
                &req.id,
                ErrorShape::invalid("invalid handshake: first request must be connect"),
                None,
            );
            return;
        }
        let params = match handshake::connect_params(&req.params) {
            Ok(p) => p,
            Err(e) => {
                self.reject(now, id, &req.id, e.to_error(), None);
                return;
            }
        };
        if !handshake::protocol_ok(&params) {
            self.send(
                now,
                id,
                &OutFrame::err(&*req.id, handshake::protocol_mismatch(&params)),
            );
            self.log(
                now,
                Level::Warn,
                Some(id),
                "rejected: protocol mismatch".into(),
            );
            self.close_ws(now, id, CloseReason::ProtocolMismatch);
            return;
        }
        if let Some(turn) = self.queued_behind(now, id) {
            self.log(
                now,
                Level::Debug,
                Some(id),
                "connect waits for a held refusal of its address".into(),
            );
            self.held.insert(id, Held::Queued { text: text.into() });
            self.schedule(turn, Timer::Refusal(id));
            return;
        }
        match self.admit(now, id, &params) {
            Ok(hello) => self.admit_when_durable(now, id, &req.id, params, hello),
            Err(err) => match err.delay {
                Some(delay) => self.hold(now, id, req.id.into_owned(), err, delay),
                None => self.reject(now, id, &req.id, err.error, err.close),
            },
        }
    }

    /// A held refusal's penalty passed: answer it now; a queued `connect`'s turn came: decide it.
    pub(crate) fn refusal_due(&mut self, now: Instant, id: ConnId) {
        match self.held.remove(&id) {
            Some(Held::Refusal {
                req_id,
                error,
                close,
            }) => self.reject(now, id, &req_id, error, close),
            Some(Held::Queued { text }) => self.on_connect_text(now, id, &text),
            Some(held @ Held::Admission) => {
                self.held.insert(id, held);
            }
            None => {}
        }
    }

    /// When a `connect` on `id` may be decided, if another attempt from its address is
    /// still waiting out its failed-auth penalty.
    fn queued_behind(&self, now: Instant, id: ConnId) -> Option<Instant> {
        let Some(State::Ws(ws)) = self.conns.get(&id).map(|c| &c.state) else {
            return None;
        };
        self.guard.answering(now, ws.client_ip)
    }

    /// Hold an admitted connection until the store has what admitting it changed.
    pub(crate) fn hold_admission(&mut self, id: ConnId) {
        self.held.insert(id, Held::Admission);
    }

    /// The store answered for a held admission.
    pub(crate) fn admission_released(&mut self, id: ConnId) {
        self.held.remove(&id);
    }

    /// Whether a `connect` is held for this connection (its frames are ignored meanwhile).
    pub(crate) fn is_held(&self, id: ConnId) -> bool {
        self.held.contains_key(&id)
    }

    /// Hold a refusal back for `delay` (the local failed-auth penalty); frames meanwhile are ignored.
    fn hold(&mut self, now: Instant, id: ConnId, req_id: String, err: Refusal, delay: Duration) {
        self.log(
            now,
            Level::Debug,
            Some(id),
            format!("refusal held {} ms", delay.as_millis()),
        );
        self.held.insert(
            id,
            Held::Refusal {
                req_id,
                error: err.error,
                close: err.close,
            },
        );
        self.schedule(now + delay, Timer::Refusal(id));
    }

    /// Answer a failed `connect` and close with `close`, by default 1008 with the message.
    pub(crate) fn reject(
        &mut self,
        now: Instant,
        id: ConnId,
        req_id: &str,
        err: ErrorShape,
        close: Option<CloseReason>,
    ) {
        let close = close.unwrap_or_else(|| CloseReason::Refused(err.message.as_str().into()));
        let detail = err
            .details
            .as_ref()
            .and_then(|d| d.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.log(
            now,
            Level::Warn,
            Some(id),
            format!("rejected: {} {detail}", err.message),
        );
        self.send(now, id, &OutFrame::err(req_id, err));
        self.close_ws(now, id, close);
    }

    pub(crate) fn finish_hello(
        &mut self,
        now: Instant,
        id: ConnId,
        req_id: &str,
        params: ConnectParams,
        hello: Admitted,
    ) {
        // Before this client is a session: a new snapshot's `health` event goes to the others,
        // and this one has it in its `hello-ok`.
        self.refresh_health(now);
        let conn_uuid = self.uuid();
        let now_ms = self.unix_ms(now);
        let max_payload = self.config.limits.max_payload;
        let Some(ip) = self.conns.get(&id).and_then(|c| match &c.state {
            State::Ws(ws) => Some(ws.client_ip),
            _ => None,
        }) else {
            return;
        };
        let role = params.role;
        // Written before the client's fields move into the session (its text goes out after
        // the `hello-ok`, as before).
        let line = self.logs_at(Level::Info).then(|| {
            let client = (params.client.id.as_str(), params.client.mode.as_str());
            hello_line(
                ip,
                client,
                &hello.scopes,
                (role.as_str(), hello.method.as_str()),
            )
        });
        let ephemeral = crate::route::is_ephemeral_mode(&params.client.mode);
        let session = Session {
            role,
            scopes: hello.scopes.as_slice().into(),
            client: params.client,
            conn_uuid: conn_uuid.clone(),
            device_id: hello.device_id.clone(),
            auth: hello.method,
            device_token: hello.used_device_token.clone(),
            caps: params.caps,
            commands: params.commands,
            seq: 0,
            unauthorized_calls: 0,
            connected_at_ms: now_ms,
        };
        if let Some(c) = self.conns.get_mut(&id)
            && let State::Ws(ws) = &mut c.state
        {
            ws.ctx.set_config(|cfg| {
                cfg.max_message_size = Some(max_payload);
                cfg.max_frame_size = Some(max_payload);
            });
            ws.phase = Phase::Authed(Box::new(session));
        }
        self.preauth.release(ip);
        if !ephemeral {
            self.router.presence.insert(id);
        }
        let text = self.hello_text(now, req_id, &conn_uuid, role, &hello);
        self.send_text(now, id, text);
        if let Some(line) = line {
            self.log(now, Level::Info, Some(id), line);
        }
        for (event, payload) in hello.events {
            self.broadcast(now, event, &payload, None);
        }
        if role == Role::Node
            && let Some(dev) = hello.device_id
        {
            self.node_connected(now, id, &dev);
        }
    }

    /// The `hello-ok` response frame for request `req_id`, as JSON text.
    fn hello_text(
        &self,
        now: Instant,
        req_id: &str,
        conn_uuid: &str,
        role: Role,
        hello: &Admitted,
    ) -> String {
        use crate::hello::{Auth, HelloParts};
        let token = hello.device_token.as_ref();
        self.hello.render(HelloParts {
            req_id,
            conn_id: conn_uuid,
            draining: self.is_draining(),
            now_ms: self.unix_ms(now),
            sessions: self.session_presence(),
            health: self.health_cache.payload(),
            presence_version: self.presence_version,
            health_version: self.health_cache.version(),
            uptime_ms: self.uptime_ms(now),
            auth: Auth {
                method: hello.method.as_str(),
                role: role.as_str(),
                scopes: &hello.scopes,
                device_token: token.map(|(t, at)| (t.as_str(), *at)),
                recovery_migration_allowed: token.is_some() && role == Role::Operator,
            },
        })
    }
}

/// The info line of an admitted connection, `hello <address> <client id>/<mode> role=<role>
/// scopes=<scopes as Debug> auth=<method>`, written with pushes (one a handshake).
fn hello_line(
    ip: IpAddr,
    (client_id, mode): (&str, &str),
    scopes: &[String],
    (role, method): (&str, &str),
) -> String {
    let mut out = String::with_capacity(64 + client_id.len() + mode.len() + 24 * scopes.len());
    out.push_str("hello ");
    crate::log::push_ip(&mut out, ip);
    out.push(' ');
    out.push_str(client_id);
    out.push('/');
    out.push_str(mode);
    out.push_str(" role=");
    out.push_str(role);
    out.push_str(" scopes=");
    crate::log::push_debug_strs(&mut out, scopes);
    out.push_str(" auth=");
    out.push_str(method);
    out
}

#[cfg(test)]
mod tests {
    use core::net::IpAddr;

    #[test]
    fn hello_line_is_the_formatted_line() {
        let scope_lists: [&[&str]; 4] = [
            &[],
            &["operator.read"],
            &["operator.admin", "operator.read", "operator.write"],
            &["quote\"d", "back\\slash", "tab\t", "é", "\u{7f}", ""],
        ];
        for ip in ["127.0.0.1", "203.0.113.77", "::1"] {
            let ip: IpAddr = ip.parse().expect("an address");
            for scopes in scope_lists {
                let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    super::hello_line(ip, ("cli", "cli"), &scopes, ("operator", "token")),
                    format!("hello {ip} cli/cli role=operator scopes={scopes:?} auth=token")
                );
            }
        }
    }
}
