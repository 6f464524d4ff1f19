//! The operator check of the plain HTTP routes that act for an operator (`POST
//! /tools/invoke`), as upstream's gateway HTTP auth: the client address attributed as for a
//! WebSocket (forwarding headers believed from trusted proxies only), the failed-auth lockout
//! shared with `connect`, and the gateway's token or password as an `Authorization: Bearer`
//! credential, compared in constant time. A gateway without a secret serves local callers
//! only (a loopback address, and a loopback `Origin` if a browser sent one).

use core::net::IpAddr;
use std::time::Instant;

use serde_json::json;

use crate::auth::{self, CredentialKind};
use crate::config::AuthMode;
use crate::conn::ConnId;
use crate::gateway::Gateway;
use crate::http::PlainRequest;

/// Why an HTTP request is refused before its body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpRefusal {
    /// The status.
    pub(crate) status: u16,
    /// Extra response headers (`Retry-After`).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub(crate) body: serde_json::Value,
}

impl HttpRefusal {
    fn new(status: u16, kind: &str, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json!({"error": {"message": message, "type": kind}}),
        }
    }

    fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "Unauthorized")
    }
}

/// The credential of an `Authorization: Bearer <credential>` header (scheme matched without
/// regard to case), if one was sent.
fn bearer(req: &PlainRequest) -> Option<&str> {
    let value = req.header("authorization")?.trim();
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

impl Gateway {
    /// The address request `id` is attributed to, or the refusal of forwarding headers that
    /// are not believed.
    fn http_client_ip(&self, id: ConnId, req: &PlainRequest) -> Result<IpAddr, HttpRefusal> {
        let peer = self
            .conns
            .get(&id)
            .map(|c| c.peer.ip())
            .ok_or_else(HttpRefusal::unauthorized)?;
        let fwd = auth::parse_forwarded(
            req.header("forwarded"),
            req.header("x-forwarded-for"),
            req.header("x-real-ip"),
        );
        auth::client_address(
            peer,
            &fwd,
            &self.config.trusted_proxies,
            self.config.allow_real_ip_fallback,
        )
        .map_err(|e| HttpRefusal::new(403, "proxy_attribution_required", &e.to_string()))
    }

    /// Whether request `id` carries operator authority: `Ok` with the gateway's secret as a
    /// bearer credential (or, without a secret, from a local caller); a mismatch counts
    /// toward the address's lockout, during which every attempt is answered 429.
    pub(crate) fn http_operator_auth(
        &mut self,
        now: Instant,
        id: ConnId,
        req: &PlainRequest,
    ) -> Result<(), HttpRefusal> {
        let client_ip = self.http_client_ip(id, req)?;
        let local = auth::is_local(client_ip, req.header("origin"));
        let Some(secret) = self
            .config
            .secret
            .clone()
            .filter(|_| self.config.auth_mode != AuthMode::None)
        else {
            return if local {
                Ok(())
            } else {
                Err(HttpRefusal::unauthorized())
            };
        };
        let exempt = local && self.config.limits.auth_exempt_loopback;
        if !exempt
            && let Some(left) =
                self.guard
                    .limiter
                    .locked(now, client_ip, CredentialKind::SharedSecret)
        {
            let mut refusal = HttpRefusal::new(
                429,
                "rate_limited",
                "Too many failed authentication attempts. Please try again later.",
            );
            let secs = left.as_millis().div_ceil(1000).max(1);
            refusal.headers.push(("Retry-After", secs.to_string()));
            return Err(refusal);
        }
        match bearer(req) {
            Some(credential) if secret.matches(credential) => Ok(()),
            Some(_) => {
                self.count_failure(now, client_ip, CredentialKind::SharedSecret, exempt);
                Err(HttpRefusal::unauthorized())
            }
            None => Err(HttpRefusal::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> PlainRequest {
        PlainRequest {
            headers: vec![("authorization".into(), value.into())],
            ..Default::default()
        }
    }

    #[test]
    fn bearer_credentials() {
        assert_eq!(bearer(&with_auth("Bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&with_auth("bearer  s3cret ")), Some("s3cret"));
        assert_eq!(bearer(&with_auth("Basic czNjcmV0")), None);
        assert_eq!(bearer(&with_auth("Bearer ")), None);
        assert_eq!(bearer(&PlainRequest::default()), None);
    }
}
