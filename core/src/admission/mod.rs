//! Admission: whether a `connect` is let in, in upstream's order of checks (origin, lockout,
//! device identity, signature, secret or device token, then pairing of the device), and the
//! failed-auth state that decision owns (lockouts and the local penalty).

mod device;
mod secret;

use core::net::IpAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::auth::{self, CredentialKind, RateLimiter};
use crate::close::CloseReason;
use crate::config::AuthMode;
use crate::conn::{AuthMethod, ConnId, Phase, State};
use crate::frame::ErrorShape;
use crate::gateway::Gateway;
use crate::handshake::{self, ConnectParams};
use crate::scopes::Role;

/// The result of an admission: who the connection is and what it may do.
pub(crate) struct Admitted {
    pub(crate) method: AuthMethod,
    pub(crate) scopes: Vec<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) device_token: Option<(String, u64)>,
    pub(crate) used_device_token: Option<String>,
    pub(crate) events: Vec<(&'static str, Value)>,
}

/// A refused `connect`: the error, the close reason when it is not the message, and
/// how long to hold the answer back (the local failed-auth penalty).
pub(crate) struct Refusal {
    pub(crate) error: ErrorShape,
    pub(crate) close: Option<CloseReason>,
    pub(crate) delay: Option<Duration>,
}

impl From<ErrorShape> for Refusal {
    fn from(error: ErrorShape) -> Self {
        Refusal {
            error,
            close: None,
            delay: None,
        }
    }
}

/// Failed-auth state: lockouts by address and credential kind, and the local penalty.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    pub(crate) limiter: RateLimiter,
    /// Failed shared-secret attempts by local address: (count in window, window start).
    local_failures: HashMap<IpAddr, (u32, Instant)>,
    /// When the latest held refusal of a local address is answered: the next `connect` from
    /// that address waits until then, so parallel guesses are no faster than sequential ones.
    answering: HashMap<IpAddr, Instant>,
}

impl Guard {
    /// Forget failures older than `window`.
    pub(crate) fn prune(&mut self, now: Instant, window: Duration) {
        self.limiter.prune(now, window);
        self.local_failures
            .retain(|_, (_, start)| now.saturating_duration_since(*start) <= window);
        self.answering.retain(|_, at| *at > now);
    }

    /// If a refusal of `ip` is still held at `now`, when it will be answered.
    pub(crate) fn answering(&self, now: Instant, ip: IpAddr) -> Option<Instant> {
        self.answering.get(&ip).copied().filter(|at| *at > now)
    }

    /// The delay before answering a failed shared secret from a local address (exempt from the
    /// lockout): 250 ms doubling per failure in the window, at most `max`; success does not reset
    /// it. Until it has passed, further attempts from the address wait ([`Guard::answering`]).
    fn local_penalty(
        &mut self,
        now: Instant,
        ip: IpAddr,
        window: Duration,
        max: Duration,
    ) -> Duration {
        let entry = self.local_failures.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        let ms = 250u64.saturating_mul(1u64 << (entry.0 - 1).min(10));
        let delay = Duration::from_millis(ms.min(max.as_millis() as u64));
        self.answering.insert(ip, now + delay);
        delay
    }
}

impl Gateway {
    /// Decide whether a `connect` is admitted, in upstream's order of checks.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        id: ConnId,
        p: &ConnectParams,
    ) -> Result<Admitted, Refusal> {
        let (client_ip, local, origin, host, nonce, scope_cap) = {
            let Some(State::Ws(ws)) = self.conns.get(&id).map(|c| &c.state) else {
                return Err(ErrorShape::invalid("connection gone").into());
            };
            let Phase::PreHello { nonce, .. } = &ws.phase else {
                return Err(
                    ErrorShape::invalid("connect is only valid as the first request").into(),
                );
            };
            let host = ws.host.clone();
            (
                ws.client_ip,
                ws.local,
                ws.origin.clone(),
                host,
                nonce.clone(),
                ws.scope_cap.clone(),
            )
        };
        let limits = self.config.limits.clone();
        let now_ms = self.unix_ms(now);
        if let Some(o) = &origin
            && !auth::origin_allowed(o, host.as_deref(), &self.config.allowed_origins)
        {
            return Err(handshake::origin_not_allowed(o).into());
        }
        let exempt = local && limits.auth_exempt_loopback;
        if !exempt
            && let Some(left) =
                self.guard
                    .limiter
                    .locked(now, client_ip, CredentialKind::SharedSecret)
        {
            return Err(handshake::rate_limited(left.as_millis() as u64).into());
        }
        // Upstream decides a missing device identity before the secret: a Control UI needs a
        // secure context, and a node always needs a device.
        if p.device.is_none() && self.config.auth_mode != AuthMode::None {
            if p.client.id == "openclaw-control-ui" && !self.config.allow_insecure_control_ui {
                return Err(handshake::control_ui_device_required().into());
            }
            if p.role == Role::Node {
                return Err(handshake::device_identity_required().into());
            }
        }
        if let Some(dev) = &p.device {
            let fields = crate::device::SignedFields {
                client_id: &p.client.id,
                client_mode: &p.client.mode,
                role: p.role.as_str(),
                scopes: &p.scopes,
                token: p.auth.signed_token(),
                platform: &p.client.platform,
                device_family: p.client.device_family.as_deref().unwrap_or(""),
            };
            let skew = limits.device_signature_skew.as_millis() as i64;
            if let Err(e) = crate::device::verify(dev, &fields, &nonce, now_ms as i64, skew) {
                return Err(ErrorShape::invalid(e.to_string())
                    .with_details(json!({"code": e.code(), "reason": e.reason()}))
                    .into());
            }
        }
        let method = self.check_secret(now, p, client_ip, local, exempt)?;
        let used_device_token = match method {
            AuthMethod::DeviceToken => p.auth.device_token.clone().or_else(|| p.auth.token.clone()),
            _ => None,
        };
        let Some(dev) = &p.device else {
            if p.role == Role::Node {
                return Err(handshake::device_identity_required().into());
            }
            let keeps_scopes = local
                && origin.is_none()
                && ((p.client.id == "cli" && p.client.mode == "cli")
                    || (p.client.id == "gateway-client" && p.client.mode == "backend"));
            let scopes = if keeps_scopes {
                crate::scopes::normalize(&p.scopes)
            } else {
                Vec::new()
            };
            return Ok(Admitted {
                method,
                scopes: crate::scopes::cap(scopes, scope_cap.as_deref()),
                device_id: None,
                device_token: None,
                used_device_token,
                events: Vec::new(),
            });
        };
        let mut admitted =
            self.admit_device(now, p, dev, client_ip, local, method, used_device_token)?;
        admitted.scopes = crate::scopes::cap(admitted.scopes, scope_cap.as_deref());
        Ok(admitted)
    }
}
