//! `/control-ui-config.json`: the settings the Control UI reads before it connects (upstream's
//! bootstrap config): its base path, the assistant's name and avatar, the server's version
//! and the switches of features clawgate does not have (terminal, CLI agents, plugin frames),
//! off. Like upstream it needs the gateway's secret or a paired device's operator token as a
//! `Bearer` token (nothing with
//! `auth.mode: none`, from a loopback client), is never cached (`no-cache`) and answers
//! under the Control UI's security headers.

use core::net::IpAddr;
use std::time::Instant;

use serde_json::{Value, json};

use super::response::{self, Head};
use crate::auth::{self, CredentialKind};
use crate::config::{AuthMode, ControlUi};
use crate::conn::ConnId;
use crate::gateway::Gateway;
use crate::http::PlainRequest;
use crate::scopes::Role;

/// The file name the UI asks for under its base path.
const CONFIG_FILE: &str = "/control-ui-config.json";
/// The older name under the base path that upstream still answers.
const LEGACY_PREFIX: &str = "/__openclaw";
/// The default namespace, answered too when there is no base path.
const NAMESPACE_PREFIX: &str = "/__openclaw__";

/// Whether `req` asks for the bootstrap config (upstream's
/// `matchesControlUiBootstrapConfigPath`, for `GET` and `HEAD`).
pub(crate) fn is_config_request(ui: &ControlUi, req: &PlainRequest) -> bool {
    if !ui.enabled || !(req.method == "GET" || req.method == "HEAD") {
        return false;
    }
    let Some(rest) = req.path.strip_prefix(ui.base_path.as_str()) else {
        return false;
    };
    rest == CONFIG_FILE
        || rest.strip_prefix(LEGACY_PREFIX) == Some(CONFIG_FILE)
        || (ui.base_path.is_empty() && rest.strip_prefix(NAMESPACE_PREFIX) == Some(CONFIG_FILE))
}

/// Why a request for the config is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// No or a wrong secret (`401`).
    Unauthorized,
    /// Too many wrong secrets from this address (`429`, seconds left).
    RateLimited(u64),
}

/// The `Bearer` token of an `Authorization` value.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Gateway {
    /// Answer a request for `/control-ui-config.json` from client `ip` on `id`.
    pub(crate) fn serve_bootstrap_config(
        &mut self,
        now: Instant,
        id: ConnId,
        ip: IpAddr,
        req: &PlainRequest,
    ) {
        let head_only = req.method == "HEAD";
        let bytes = match self.authorize_ui_read(now, ip, req) {
            Ok(()) => {
                let body = if head_only {
                    Vec::new()
                } else {
                    self.bootstrap_config().to_string().into_bytes()
                };
                json_head(200).with_body(&body, false)
            }
            Err(Refused::Unauthorized) => json_head(401).with_body(
                br#"{"error":{"message":"Unauthorized","type":"unauthorized"}}"#,
                head_only,
            ),
            Err(Refused::RateLimited(secs)) => json_head(429)
                .header("Retry-After", &secs.to_string())
                .with_body(
                    br#"{"error":{"message":"Too many failed authentication attempts. Please try again later.","type":"rate_limited"}}"#,
                    head_only,
                ),
        };
        self.answer_http(now, id, bytes);
    }

    /// upstream's `authorizeControlUiReadRequestOrReply`: the `Bearer` token must be the
    /// gateway's token or password, or a paired device's operator token; wrong ones count
    /// towards the lockout.
    fn authorize_ui_read(
        &mut self,
        now: Instant,
        ip: IpAddr,
        req: &PlainRequest,
    ) -> Result<(), Refused> {
        let exempt = auth::is_loopback(ip) && self.config.limits.auth_exempt_loopback;
        let secret = match (&self.config.secret, self.config.auth_mode) {
            (Some(secret), AuthMode::Token | AuthMode::Password) => secret.clone(),
            _ if auth::is_loopback(ip) => return Ok(()),
            _ => return Err(Refused::Unauthorized),
        };
        if !exempt
            && let Some(left) = self
                .guard
                .limiter
                .locked(now, ip, CredentialKind::SharedSecret)
        {
            return Err(Refused::RateLimited(left.as_secs_f64().ceil() as u64));
        }
        match bearer(req.authorization.as_deref()) {
            Some(token)
                if secret.matches(token)
                    || self.store.any_token_matches(Role::Operator.as_str(), token) =>
            {
                Ok(())
            }
            Some(_) => {
                self.count_failure(now, ip, CredentialKind::SharedSecret, exempt);
                Err(Refused::Unauthorized)
            }
            None => Err(Refused::Unauthorized),
        }
    }

    /// The payload: upstream's fields, from clawgate's config.
    fn bootstrap_config(&self) -> Value {
        let identity = self.assistant_identity();
        json!({
            "basePath": self.config.control_ui.base_path,
            "assistantName": identity.name,
            "assistantAvatar": identity.avatar,
            "assistantAvatarSource": null,
            "assistantAvatarStatus": null,
            "assistantAvatarReason": null,
            "assistantAgentId": crate::agent::AGENT_ID,
            "serverVersion": self.config.version,
            "embedSandbox": "scripts",
            "allowExternalEmbedUrls": false,
            "automaticallyFetchFavicons": true,
            "communityInvite": true,
            "terminalEnabled": false,
            "cliAgentsEnabled": false,
            "pluginAssetsRequireAuth": self.config.auth_mode != AuthMode::None,
            "pluginFrameGrants": [],
        })
    }
}

/// A JSON head under the security headers, never cached.
fn json_head(status: u16) -> Head {
    Head::new(status, &response::csp(&[], None))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Cache-Control", "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> PlainRequest {
        PlainRequest {
            method: "GET".into(),
            path: path.into(),
            ..PlainRequest::default()
        }
    }

    #[test]
    fn the_config_paths_follow_the_base_path() {
        let mut ui = ControlUi::default();
        for p in [
            "/control-ui-config.json",
            "/__openclaw/control-ui-config.json",
            "/__openclaw__/control-ui-config.json",
        ] {
            assert!(is_config_request(&ui, &get(p)), "{p}");
        }
        assert!(!is_config_request(&ui, &get("/x/control-ui-config.json")));
        ui.base_path = "/ui2".into();
        assert!(is_config_request(&ui, &get("/ui2/control-ui-config.json")));
        assert!(is_config_request(
            &ui,
            &get("/ui2/__openclaw/control-ui-config.json")
        ));
        assert!(!is_config_request(&ui, &get("/control-ui-config.json")));
        assert!(!is_config_request(
            &ui,
            &get("/ui2/__openclaw__/control-ui-config.json")
        ));
        let mut post = get("/ui2/control-ui-config.json");
        post.method = "POST".into();
        assert!(!is_config_request(&ui, &post));
        ui.enabled = false;
        assert!(!is_config_request(&ui, &get("/ui2/control-ui-config.json")));
    }

    #[test]
    fn only_a_bearer_token_counts() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
