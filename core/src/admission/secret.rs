//! The shared secret or device token of a `connect`, and the counting of failures.

use core::net::IpAddr;
use std::time::Instant;

use super::Refusal;
use crate::auth::CredentialKind;
use crate::config::AuthMode;
use crate::conn::AuthMethod;
use crate::gateway::Gateway;
use crate::handshake::{self, ConnectParams};
use crate::log::Level;

impl Gateway {
    /// Check the shared secret or device token; count failures.
    pub(super) fn check_secret(
        &mut self,
        now: Instant,
        p: &ConnectParams,
        client_ip: IpAddr,
        local: bool,
        exempt: bool,
    ) -> Result<AuthMethod, Refusal> {
        let mode = self.config.auth_mode;
        let Some(secret) = self
            .config
            .secret
            .clone()
            .filter(|_| mode != AuthMode::None)
        else {
            return if local {
                Ok(AuthMethod::None)
            } else {
                Err(handshake::auth_required().into())
            };
        };
        let password = mode == AuthMode::Password;
        let shared = p.auth.token.as_deref().or(p.auth.password.as_deref());
        let fields = [p.auth.token.as_deref(), p.auth.password.as_deref()];
        if fields.iter().flatten().any(|s| secret.matches(s)) {
            return Ok(if password {
                AuthMethod::Password
            } else {
                AuthMethod::Token
            });
        }
        let role = p.role.as_str();
        if let Some(dev) = &p.device {
            if let Some(dt) = &p.auth.device_token {
                if !exempt
                    && let Some(left) =
                        self.guard
                            .limiter
                            .locked(now, client_ip, CredentialKind::DeviceToken)
                {
                    return Err(handshake::rate_limited(left.as_millis() as u64).into());
                }
                if self.store.token_matches(&dev.id, role, dt) {
                    return Ok(AuthMethod::DeviceToken);
                }
                self.count_failure(now, client_ip, CredentialKind::DeviceToken, exempt);
                return Err(handshake::auth_failure(
                    "unauthorized: device token mismatch (rotate/reissue device token)".into(),
                    "AUTH_DEVICE_TOKEN_MISMATCH",
                    "device_token_mismatch",
                    "update_auth_credentials",
                    false,
                )
                .into());
            }
            if let Some(t) = &p.auth.token
                && self.store.token_matches(&dev.id, role, t)
            {
                return Ok(AuthMethod::DeviceToken);
            }
        }
        let hint = handshake::auth_hint(&p.client, local, password);
        let (what, key) = if password {
            ("password", "PASSWORD")
        } else {
            ("token", "TOKEN")
        };
        if shared.is_none() {
            if p.device.is_none() {
                return Err(handshake::device_identity_required().into());
            }
            return Err(handshake::auth_failure(
                format!("unauthorized: gateway {what} missing ({hint})"),
                &format!("AUTH_{key}_MISSING"),
                &format!("{what}_missing"),
                "update_auth_configuration",
                false,
            )
            .into());
        }
        self.count_failure(now, client_ip, CredentialKind::SharedSecret, exempt);
        let paired = p
            .device
            .as_ref()
            .is_some_and(|d| self.store.devices.contains_key(&d.id));
        let error = handshake::auth_failure(
            format!("unauthorized: gateway {what} mismatch ({hint})"),
            &format!("AUTH_{key}_MISMATCH"),
            &format!("{what}_mismatch"),
            if paired {
                "retry_with_device_token"
            } else {
                "update_auth_credentials"
            },
            paired,
        );
        let delay = if exempt {
            Some(self.guard.local_penalty(
                now,
                client_ip,
                self.config.limits.auth_window,
                self.config.limits.local_auth_penalty_max,
            ))
        } else {
            None
        };
        Err(Refusal {
            error,
            close: None,
            delay,
        })
    }

    /// Count a failed attempt of `ip` (not when `exempt`), and log a lockout it starts.
    pub(crate) fn count_failure(
        &mut self,
        now: Instant,
        ip: IpAddr,
        kind: CredentialKind,
        exempt: bool,
    ) {
        if exempt {
            return;
        }
        let l = &self.config.limits;
        let (max, window, lockout) = (l.auth_max_attempts, l.auth_window, l.auth_lockout);
        if self
            .guard
            .limiter
            .fail(now, ip, kind, max, window, lockout)
            .is_some()
        {
            self.log(
                now,
                Level::Warn,
                None,
                format!(
                    "{ip} locked out for {}s after {max} failed attempts",
                    lockout.as_secs()
                ),
            );
        }
    }
}
