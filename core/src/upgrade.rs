//! The upgrade phase: a socket's HTTP head, answered as a plain route or upgraded to a
//! WebSocket that is sent its `connect.challenge`; and the per-address count of sockets not
//! yet past `hello-ok`, which this phase owns.

use core::net::IpAddr;
use std::collections::HashMap;
use std::time::Instant;

use tungstenite::protocol::Role as WsRole;

use crate::auth;
use crate::close::CloseReason;
use crate::conn::{ConnId, MemIo, Phase, State, Ws, ws_context};
use crate::gateway::Gateway;
use crate::http::{self, Head};
use crate::log::Level;

/// Unauthenticated WebSockets by client address (`maxPreauthPerIp`).
#[derive(Debug, Default)]
pub(crate) struct Preauth {
    by_ip: HashMap<IpAddr, usize>,
}

impl Preauth {
    fn count(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&ip).copied().unwrap_or(0)
    }

    fn add(&mut self, ip: IpAddr) {
        *self.by_ip.entry(ip).or_default() += 1;
    }

    /// A socket of `ip` passed `hello-ok` or went away.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

impl Gateway {
    pub(crate) fn on_head(&mut self, now: Instant, id: ConnId, buf: Vec<u8>) {
        let max_head = self.config.limits.max_head_bytes;
        match http::parse_head(&buf, max_head) {
            Ok(None) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.state = State::Http(buf);
                }
            }
            Err(e) => {
                self.log(now, Level::Warn, Some(id), format!("refused request: {e}"));
                self.transmit(id, http::bad_head(e));
                self.forget(now, id);
            }
            Ok(Some((Head::Plain(req), len))) => {
                if let Some(route) = self.post_route(&req.path) {
                    let rest = buf.get(len..).unwrap_or_default();
                    self.on_post_head(now, id, *req, route, rest);
                    return;
                }
                let (method, path) = (req.method.clone(), req.path.clone());
                if !http::is_probe(&path) && self.serve_control_ui(now, id, *req) {
                    self.log_with(now, Level::Debug, Some(id), || {
                        format!("http {method} {path}")
                    });
                    return;
                }
                let phase = if self.is_draining() {
                    http::Phase::Draining
                } else {
                    http::Phase::Ready
                };
                let body = http::plain_response(
                    &method,
                    &path,
                    phase,
                    self.uptime_ms(now),
                    &self.config.version,
                );
                self.log_with(now, Level::Debug, Some(id), || {
                    format!("http {method} {path}")
                });
                self.transmit(id, body);
                self.forget(now, id);
            }
            Ok(Some((Head::Upgrade(up), len))) => {
                self.on_upgrade(now, id, *up, buf.get(len..).unwrap_or(&[]).to_vec())
            }
        }
    }

    fn on_upgrade(&mut self, now: Instant, id: ConnId, up: http::Upgrade, rest: Vec<u8>) {
        let Some(peer) = self.conns.get(&id).map(|c| c.peer.ip()) else {
            return;
        };
        let fwd = auth::parse_forwarded(
            up.forwarded.as_deref(),
            up.x_forwarded_for.as_deref(),
            up.x_real_ip.as_deref(),
        );
        let client_ip = match auth::client_address(
            peer,
            &fwd,
            &self.config.trusted_proxies,
            self.config.allow_real_ip_fallback,
        ) {
            Ok(ip) => ip,
            Err(e) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    format!("refused upgrade from {peer}: {e}"),
                );
                self.transmit(id, http::proxy_refused());
                self.forget(now, id);
                return;
            }
        };
        if up.path == "/__openclaw__/worker" {
            self.log(
                now,
                Level::Warn,
                Some(id),
                "refused worker protocol upgrade".into(),
            );
        }
        if self.preauth.count(client_ip) >= self.config.limits.max_preauth_per_ip {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("refused {client_ip}: too many unauthenticated sockets"),
            );
            self.transmit(id, http::too_many_preauth());
            self.forget(now, id);
            return;
        }
        if self.is_draining() {
            self.transmit(
                id,
                http::plain_response(
                    "GET",
                    "/ready",
                    http::Phase::Draining,
                    self.uptime_ms(now),
                    &self.config.version,
                ),
            );
            self.forget(now, id);
            return;
        }
        self.preauth.add(client_ip);
        let local = auth::is_local(client_ip, up.origin.as_deref());
        let nonce = self.uuid();
        let challenge = challenge_text(&nonce, self.unix_ms(now));
        let worker = up.path == "/__openclaw__/worker";
        let mut ws = Box::new(Ws {
            ctx: ws_context(WsRole::Server, self.config.limits.max_preauth_payload),
            io: MemIo::default(),
            client_ip,
            local,
            origin: up.origin,
            host: up.host,
            scope_cap: up.scope_cap,
            phase: Phase::PreHello { nonce, frames: 0 },
        });
        let mut bytes = crate::upgrade_request::switching_protocols(&up.key);
        bytes.append(&mut ws.text_frame(&challenge));
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Ws(ws);
        }
        self.transmit(id, bytes);
        self.log_with(now, Level::Info, Some(id), || open_line(client_ip, local));
        if worker {
            self.close_ws(now, id, CloseReason::WorkerProtocol);
            return;
        }
        if !rest.is_empty() {
            self.handle_input(now, id, &rest);
        }
    }
}

/// The `connect.challenge` event carrying `nonce` (a UUID: nothing to escape): the text
/// `OutFrame::direct` writes for it, payload keys sorted, without building a `Value`.
fn challenge_text(nonce: &str, ts_ms: u64) -> String {
    const HEAD: &str = r#"{"type":"event","event":"connect.challenge","payload":{"capabilities":["model-catalog-snapshot"],"nonce":""#;
    let mut out = String::with_capacity(HEAD.len() + nonce.len() + 32);
    out.push_str(HEAD);
    out.push_str(nonce);
    out.push_str(r#"","ts":"#);
    crate::dates::push_padded(&mut out, ts_ms, 1);
    out.push_str("}}");
    out
}

/// The info line of an upgraded socket: `websocket open from <address> (local: <bool>)`,
/// written with pushes (one a handshake).
fn open_line(client_ip: IpAddr, local: bool) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("websocket open from ");
    crate::log::push_ip(&mut out, client_ip);
    out.push_str(if local {
        " (local: true)"
    } else {
        " (local: false)"
    });
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::frame::OutFrame;

    #[test]
    fn challenge_is_the_event_frame() {
        let nonce = "0f4e8f0c-4a7b-4c1e-9d8e-2b1f3a4c5d6e";
        let frame = OutFrame::direct(
            "connect.challenge",
            json!({"nonce": nonce, "ts": 1_764_979_200_123u64, "capabilities": ["model-catalog-snapshot"]}),
        );
        assert_eq!(
            super::challenge_text(nonce, 1_764_979_200_123),
            frame.to_text()
        );
        assert_eq!(
            super::challenge_text(nonce, 0),
            OutFrame::direct(
                "connect.challenge",
                json!({"nonce": nonce, "ts": 0, "capabilities": ["model-catalog-snapshot"]}),
            )
            .to_text()
        );
    }

    #[test]
    fn open_line_is_the_formatted_line() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "10.20.3.255",
            "192.168.100.9",
            "::1",
            "fe80::1:2",
        ] {
            let ip: core::net::IpAddr = ip.parse().expect("an address");
            for local in [true, false] {
                assert_eq!(
                    super::open_line(ip, local),
                    format!("websocket open from {ip} (local: {local})")
                );
            }
        }
    }
}
