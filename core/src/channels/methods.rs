//! The operator methods of channels, with upstream's params and payloads:
//! `channels.status`, `channels.start|stop`, `channels.pairing.list|approve|dismiss`, `send`.

use std::time::Instant;

use serde_json::{Value, json};

use super::account::{Account, Kind};
use super::config::TokenSource;
use super::pairing::{APPROVED_MESSAGE, MAX_PENDING_PER_ACCOUNT, REQUEST_TTL_MS};
use super::{Purpose, send_key};
use crate::config::edit::{ConfigEdit, Edited};
use crate::frame::{ErrorCode, ErrorShape};
use crate::gateway::Gateway;
use crate::gateway::Output;
use crate::methods::params::{self, FromParams, NonEmpty, optional, required};
use crate::methods::{Call, Reply};
use crate::work::{Work, WorkId};

/// `channels.status` params.
pub(crate) struct ChannelsStatus {
    channel: Option<String>,
}

impl FromParams for ChannelsStatus {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("probe", params::Kind::Ignored),
            optional("timeoutMs", params::Kind::Ignored),
            optional("channel", params::Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            channel: p.string("channel"),
        })
    }
}

/// `channels.start|stop|logout` params.
pub(crate) struct ChannelAccount {
    channel: NonEmpty,
    account_id: Option<String>,
}

impl FromParams for ChannelAccount {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("channel", params::Kind::NonEmpty),
            optional("accountId", params::Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            channel: p.required_non_empty("channel"),
            account_id: p.string("accountId"),
        })
    }
}

/// A `channels.logout` waiting for its edit of `openclaw.json`.
#[derive(Debug)]
pub(crate) struct Logout {
    conn: crate::ConnId,
    req_id: String,
    /// The account's key.
    key: String,
    /// Where its token came from before.
    source: Option<TokenSource>,
}

/// `channels.pairing.list` params.
pub(crate) struct PairingList {
    channel: Option<String>,
    account_id: Option<String>,
}

impl FromParams for PairingList {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            optional("channel", params::Kind::Str),
            optional("accountId", params::Kind::Str),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            channel: p.string("channel"),
            account_id: p.string("accountId"),
        })
    }
}

/// `channels.pairing.approve|dismiss` params.
pub(crate) struct PairingDecision {
    channel: NonEmpty,
    account_id: Option<String>,
    request_id: NonEmpty,
    notify: Option<bool>,
    bootstrap_command_owner: Option<bool>,
}

impl FromParams for PairingDecision {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("channel", params::Kind::NonEmpty),
            optional("accountId", params::Kind::Str),
            required("requestId", params::Kind::NonEmpty),
            optional("notify", params::Kind::Bool),
            optional("bootstrapCommandOwner", params::Kind::Bool),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            channel: p.required_non_empty("channel"),
            account_id: p.string("accountId"),
            request_id: p.required_non_empty("requestId"),
            notify: p.bool("notify"),
            bootstrap_command_owner: p.bool("bootstrapCommandOwner"),
        })
    }
}

/// `send` params (upstream's `SendParams`; text messages only).
pub(crate) struct Send {
    to: NonEmpty,
    message: Option<String>,
    channel: Option<String>,
    account_id: Option<String>,
    thread_id: Option<Value>,
    idempotency_key: NonEmpty,
}

impl FromParams for Send {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[
            required("to", params::Kind::NonEmpty),
            optional("message", params::Kind::Str),
            optional("channel", params::Kind::Str),
            optional("accountId", params::Kind::Str),
            optional("threadId", params::Kind::Any),
            required("idempotencyKey", params::Kind::NonEmpty),
            optional("mediaUrl", params::Kind::Ignored),
            optional("mediaUrls", params::Kind::Ignored),
            optional("buffer", params::Kind::Ignored),
            optional("filename", params::Kind::Ignored),
            optional("contentType", params::Kind::Ignored),
            optional("asVoice", params::Kind::Ignored),
            optional("gifPlayback", params::Kind::Ignored),
            optional("agentId", params::Kind::Ignored),
            optional("replyToId", params::Kind::Ignored),
            optional("forceDocument", params::Kind::Ignored),
            optional("silent", params::Kind::Ignored),
            optional("parseMode", params::Kind::Ignored),
            optional("sessionKey", params::Kind::Ignored),
        ];
        let mut p = params::read(params, FIELDS)?;
        Ok(Self {
            to: p.required_non_empty("to"),
            message: p.string("message"),
            channel: p.string("channel"),
            account_id: p.string("accountId"),
            thread_id: p.take("threadId"),
            idempotency_key: p.required_non_empty("idempotencyKey"),
        })
    }
}

fn invalid(message: impl Into<String>) -> Reply {
    Reply::Now(Err(ErrorShape::invalid(message)))
}

/// The largest of a numeric field over account snapshots, else the first value.
fn merged(snapshots: &[Value], field: &str) -> Value {
    let numbers = snapshots
        .iter()
        .filter_map(|s| s.get(field)?.as_u64())
        .max();
    match numbers {
        Some(n) => json!(n),
        None => snapshots
            .iter()
            .find_map(|s| s.get(field).filter(|v| !v.is_null()).cloned())
            .unwrap_or(Value::Null),
    }
}

impl Gateway {
    /// The default account of a channel.
    fn default_account(&self, kind: Kind) -> Option<String> {
        match kind {
            Kind::Telegram => self.config.channels.telegram_default.clone(),
            Kind::Discord => self.config.channels.discord_default.clone(),
            Kind::Slack => self.config.channels.slack_default.clone(),
        }
    }

    /// The account key a request names, when that account is configured.
    fn named_account(&self, channel: &str, account: Option<&str>) -> Option<String> {
        let kind = Kind::from_id(channel)?;
        let id = account
            .map(str::to_string)
            .or_else(|| self.default_account(kind))?;
        let key = kind.key(&id);
        self.channels.accounts.contains_key(&key).then_some(key)
    }

    /// The channels that have accounts, in `channelOrder` order.
    fn configured_kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.channels.accounts.values().any(|a| a.kind() == *k))
            .collect()
    }

    /// The channel summary `health` and `channels.status` share.
    pub(crate) fn channel_summary(&self) -> (Value, Value, Value) {
        let mut summary = serde_json::Map::new();
        let mut labels = serde_json::Map::new();
        let kinds = self.configured_kinds();
        for kind in &kinds {
            let accounts: Vec<&Account> = self
                .channels
                .accounts
                .values()
                .filter(|a| a.kind() == *kind)
                .collect();
            let last = |f: fn(&Account) -> Option<u64>| accounts.iter().filter_map(|a| f(a)).max();
            let own: Vec<Value> = accounts.iter().map(|a| a.snapshot(Vec::new(), 0)).collect();
            let mut entry = json!({
                "configured": accounts.iter().any(|a| a.configured()),
                "running": accounts.iter().any(|a| a.running()),
                "lastStartAt": last(|a| a.status.last_start_at),
                "lastStopAt": last(|a| a.status.last_stop_at),
                "lastError": accounts.iter().find_map(|a| a.status.last_error.clone()),
                "tokenSource": merged(&own, "tokenSource"),
                "lastProbeAt": null,
                "mode": merged(&own, "mode"),
            });
            if let Some(o) = entry.as_object_mut() {
                for field in kind.summary_fields() {
                    o.insert((*field).to_string(), merged(&own, field));
                }
            }
            summary.insert(kind.id().into(), entry);
            labels.insert(kind.id().into(), json!(kind.label()));
        }
        let order: Vec<&str> = kinds.iter().map(|k| k.id()).collect();
        (Value::Object(summary), json!(order), Value::Object(labels))
    }

    pub(crate) fn channels_status(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        p: ChannelsStatus,
    ) -> Reply {
        if let Some(c) = p.channel.as_deref().filter(|c| Kind::from_id(c).is_none()) {
            return invalid(format!("unknown channel: {c}"));
        }
        let (channels, order, labels) = self.channel_summary();
        // (upstream's schema closes the result: no `statusIssues`; each account says its own)
        let mut accounts = serde_json::Map::new();
        let mut details = serde_json::Map::new();
        let mut images = serde_json::Map::new();
        let mut meta = Vec::new();
        let mut defaults = serde_json::Map::new();
        for kind in self.configured_kinds() {
            let list: Vec<Value> = self
                .channels
                .accounts
                .values()
                .filter(|a| a.kind() == kind)
                .map(|a| {
                    let account = a.account_id();
                    let mine = |d: &&super::outbox::Delivery| {
                        d.target.channel == kind.id() && d.target.account == account
                    };
                    let undelivered: Vec<Value> = self
                        .channels
                        .outbox
                        .undelivered()
                        .filter(mine)
                        .take(20)
                        .map(|d| json!({"to": d.target.to, "createdAt": d.created_at, "error": d.last_error}))
                        .collect();
                    a.snapshot(undelivered, self.channels.outbox.pending())
                })
                .collect();
            let id = kind.id().to_string();
            accounts.insert(id.clone(), json!(list));
            details.insert(id.clone(), json!(kind.detail_label()));
            images.insert(id.clone(), json!(kind.system_image()));
            meta.push(json!({"id": id, "label": kind.label(), "detailLabel": kind.detail_label(), "systemImage": kind.system_image()}));
            if let Some(d) = self.default_account(kind) {
                defaults.insert(id, json!(d));
            }
        }
        Reply::Now(Ok(json!({
            "ts": self.unix_ms(now),
            "channelOrder": order,
            "channelLabels": labels,
            "channelDetailLabels": details,
            "channelSystemImages": images,
            "channelMeta": meta,
            "channels": channels,
            "channelAccounts": accounts,
            "channelDefaultAccountId": defaults,
        })))
    }

    pub(crate) fn channels_start(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        p: ChannelAccount,
    ) -> Reply {
        let Some(key) = self.named_account(&p.channel.0, p.account_id.as_deref()) else {
            return invalid("invalid channels.start channel");
        };
        let running = self
            .channels
            .accounts
            .get(&key)
            .is_some_and(|a| a.running());
        if !running {
            self.start_account(now, &key);
        }
        let (channel, account) = key.split_once(':').unwrap_or_default();
        Reply::Now(Ok(json!({
            "channel": channel, "accountId": account, "started": true,
            "outcome": {"status": if running { "already-running" } else { "handed-off" }},
        })))
    }

    pub(crate) fn channels_stop(&mut self, now: Instant, _: &Call<'_>, p: ChannelAccount) -> Reply {
        let Some(key) = self.named_account(&p.channel.0, p.account_id.as_deref()) else {
            return invalid("invalid channels.stop channel");
        };
        self.stop_account(now, &key);
        if let Some(a) = self.channels.accounts.get_mut(&key) {
            a.status.stopped_by_operator = true;
        }
        let (channel, account) = key.split_once(':').unwrap_or_default();
        Reply::Now(Ok(
            json!({"channel": channel, "accountId": account, "stopped": true}),
        ))
    }

    /// `channels.logout`: the account stops and its token leaves `openclaw.json` (upstream's
    /// `clearAccountFieldsFromConfigSection`, Telegram's `botToken`); answered once the file
    /// is written. Slack's and Discord's plugins have no logout: upstream refuses those before
    /// it looks at the account, so the account runs on and the file is left as it is.
    pub(crate) fn channels_logout(
        &mut self,
        now: Instant,
        call: &Call<'_>,
        p: ChannelAccount,
    ) -> Reply {
        let configured = Kind::from_id(&p.channel.0)
            .filter(|k| self.channels.accounts.values().any(|a| a.kind() == *k));
        if let Some(kind) = configured.filter(|k| *k != Kind::Telegram) {
            return invalid(format!("channel {} does not support logout", kind.id()));
        }
        let Some(key) = self.named_account(&p.channel.0, p.account_id.as_deref()) else {
            return invalid("invalid channels.logout channel");
        };
        let Some(a) = self.channels.accounts.get(&key) else {
            return invalid("invalid channels.logout channel");
        };
        let (kind, account_id) = (a.kind(), a.account_id().to_string());
        let source = a.common().token.as_ref().ok().map(|(_, s)| *s);
        self.stop_account(now, &key);
        let edit = ConfigEdit::ClearAccountFields {
            section: kind.id().to_string(),
            account_id,
            fields: vec!["botToken".into()],
        };
        let id = self.next_work_id();
        self.channels.logouts.insert(
            id,
            Logout {
                conn: call.conn,
                req_id: call.req_id.to_string(),
                key,
                source,
            },
        );
        self.out.push_back(Output::Work {
            id,
            work: Work::EditConfig(edit),
        });
        Reply::Later
    }

    /// Whether work `id` is a `channels.logout`'s edit.
    pub(crate) fn is_logout(&self, id: WorkId) -> bool {
        self.channels.logouts.contains_key(&id)
    }

    /// A `channels.logout`'s edit is written (or failed): answer it.
    pub(crate) fn logout_edited(
        &mut self,
        now: Instant,
        id: WorkId,
        result: Result<Edited, String>,
    ) {
        let Some(l) = self.channels.logouts.remove(&id) else {
            return;
        };
        let (channel, account) = l.key.split_once(':').unwrap_or_default();
        let answer = match result {
            Ok(edited) => {
                // The token the account ran with came from the file: it is gone now.
                let logged_out = l.source.is_none_or(|s| s == TokenSource::Config);
                if let Some(a) = self.channels.accounts.get_mut(&l.key) {
                    if logged_out {
                        let key = a.kind().token_key();
                        a.forget_token(format!("{key} is not set (logged out)"));
                    }
                    a.status.stopped_by_operator = true;
                }
                self.log(
                    now,
                    crate::log::Level::Info,
                    None,
                    format!("{}: logged out (token cleared: {})", l.key, edited.cleared),
                );
                Ok(json!({
                    "channel": channel, "accountId": account, "cleared": edited.cleared,
                    "envToken": l.source == Some(TokenSource::Env), "loggedOut": logged_out,
                }))
            }
            Err(e) => Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("channels.logout could not write openclaw.json: {e}"),
            )),
        };
        self.answer(now, l.conn, &l.req_id, answer);
    }

    pub(crate) fn channels_pairing_list(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        p: PairingList,
    ) -> Reply {
        let accounts: Vec<Value> = self
            .channels
            .accounts
            .values()
            .filter(|a| p.account_id.as_ref().is_none_or(|id| id == a.account_id()))
            .filter(|a| p.channel.as_deref().is_none_or(|c| c == a.kind().id()))
            .map(|a| json!({"channel": a.kind().id(), "channelLabel": a.kind().label(), "accountId": a.account_id(), "notifySupported": true}))
            .collect();
        let iso = crate::dates::iso_time;
        let requests: Vec<Value> = self
            .channels
            .pairing
            .requests()
            .filter(|r| p.channel.as_ref().is_none_or(|c| *c == r.channel))
            .filter(|r| p.account_id.as_ref().is_none_or(|a| *a == r.account_id))
            .map(|r| {
                let kind = Kind::from_id(&r.channel);
                json!({
                    "requestId": r.request_id, "channel": r.channel, "channelLabel": kind.map_or(r.channel.clone(), |k| k.label().to_string()),
                    "accountId": r.account_id, "senderId": r.sender_id, "senderLabel": kind.map_or("userId", Kind::sender_label),
                    "metadata": r.metadata, "createdAt": iso(r.created_at), "lastSeenAt": iso(r.last_seen_at),
                    "expiresAt": iso(r.expires_at), "notifySupported": true,
                })
            })
            .collect();
        Reply::Now(Ok(json!({
            "accounts": accounts,
            "requests": requests,
            "commandOwnerConfigured": !self.config.channels.owner_allow_from.is_empty(),
            "limits": {"pendingPerAccount": MAX_PENDING_PER_ACCOUNT, "ttlMs": REQUEST_TTL_MS},
        })))
    }

    pub(crate) fn channels_pairing_approve(
        &mut self,
        now: Instant,
        _: &Call<'_>,
        p: PairingDecision,
    ) -> Reply {
        let Some(r) = self.channels.pairing.request(&p.request_id.0).cloned() else {
            return invalid(format!("unknown pairing request: {}", p.request_id.0));
        };
        if r.channel != p.channel.0 || p.account_id.as_ref().is_some_and(|a| *a != r.account_id) {
            return invalid(format!("unknown pairing request: {}", p.request_id.0));
        }
        let ts = self.unix_ms(now);
        let mut changes = Vec::new();
        self.channels
            .pairing
            .approve(&r.request_id, ts, &mut changes);
        let notification = if p.notify == Some(true) {
            let target = super::inbound::Target {
                channel: r.channel.clone(),
                account: r.account_id.clone(),
                to: r.chat_id.clone(),
                thread: None,
            };
            self.channels.outbox.push(
                target,
                vec![APPROVED_MESSAGE.into()],
                None,
                ts,
                &mut changes,
            );
            "sent"
        } else {
            "not-requested"
        };
        self.channels.unsaved.extend(changes);
        self.persist();
        self.after_commit(now, super::Step::Committed);
        self.log(
            now,
            crate::log::Level::Info,
            None,
            format!(
                "{}:{}: sender {} approved",
                r.channel, r.account_id, r.sender_id
            ),
        );
        let bootstrap = match p.bootstrap_command_owner {
            Some(true) if !self.config.channels.owner_allow_from.is_empty() => "already-configured",
            // The core writes no files: `clawgate pairing approve` writes the owner.
            Some(true) => "unavailable",
            _ => "not-requested",
        };
        Reply::Now(Ok(json!({
            "requestId": r.request_id, "senderId": r.sender_id,
            "notification": notification, "commandOwnerBootstrap": bootstrap,
        })))
    }

    pub(crate) fn channels_pairing_dismiss(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        p: PairingDecision,
    ) -> Reply {
        let mut changes = Vec::new();
        let Some(r) = self.channels.pairing.dismiss(&p.request_id.0, &mut changes) else {
            return invalid(format!("unknown pairing request: {}", p.request_id.0));
        };
        self.channels.unsaved.extend(changes);
        self.persist();
        Reply::Now(Ok(
            json!({"requestId": r.request_id, "senderId": r.sender_id}),
        ))
    }

    /// `send`: one `sendMessage`, answered with its message id; a repeated idempotency key
    /// gets the first call's answer (waiting for it while it runs) and sends nothing.
    pub(crate) fn send_method(&mut self, now: Instant, call: &Call<'_>, p: Send) -> Reply {
        let key = p.idempotency_key.0.clone();
        let ttl = self.config.limits.dedupe_ttl;
        if let Some(result) = self.router.cached(now, &send_key(&key), ttl) {
            return Reply::Now(result);
        }
        if let Some(waiters) = self.channels.sends.get_mut(&key) {
            waiters.push((call.conn, call.req_id.to_string()));
            return Reply::Later;
        }
        let (hint, to) = match p.to.0.split_once(':').map(|(h, to)| (Kind::parse(h), to)) {
            Some((Some(kind), rest)) => (Some(kind), rest.to_string()),
            _ => (None, p.to.0.clone()),
        };
        let named = p.channel.as_deref().map(|c| (c, Kind::from_id(c)));
        let kind = match (named, hint) {
            (Some((_, Some(k))), None) => k,
            (Some((_, Some(k))), Some(h)) if k == h => k,
            (None, Some(h)) => h,
            (None, None) => Kind::Telegram,
            (Some((c, _)), _) => return invalid(format!("unsupported channel: {c}")),
        };
        let channel = kind.id();
        let Some(account) = self.named_account(channel, p.account_id.as_deref()) else {
            return Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("{channel} is not configured (channels.{channel})"),
            )));
        };
        let Some(text) = p.message.filter(|m| !m.is_empty()) else {
            return invalid("send needs a message (media is not supported by clawgate)");
        };
        let thread = p.thread_id.as_ref().map(|t| match t {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let target = super::inbound::Target {
            channel: channel.to_string(),
            account: account.split_once(':').map_or("", |(_, a)| a).to_string(),
            to,
            thread,
        };
        let text = self
            .channels
            .accounts
            .get(&account)
            .map(|a| a.plain(&text))
            .unwrap_or_default();
        let purpose = Purpose::Send(key.clone());
        if !self.deliver_chunk(now, &account, purpose, &target, &text) {
            return Reply::Now(Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("{channel} has no bot token ({})", kind.token_key()),
            )));
        }
        self.channels
            .sends
            .insert(key, vec![(call.conn, call.req_id.to_string())]);
        Reply::Later
    }
}
