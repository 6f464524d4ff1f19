//! DM pairing for channel senders: pending requests (an 8-character code from upstream's
//! alphabet without `0 O 1 I`, one hour to live, at most three pending per account) and the
//! approved senders. It owns both and reports its row changes; the gateway stores them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::persist::{ChannelRowKind, RowText, StoreChange};

/// Upstream's code alphabet: uppercase letters and digits without `0`, `O`, `1`, `I`.
pub const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters in a code.
pub const CODE_LEN: usize = 8;
/// How long a request lives: one hour.
pub const REQUEST_TTL_MS: u64 = 3_600_000;
/// Pending requests per channel account at most.
pub const MAX_PENDING_PER_ACCOUNT: usize = 3;

/// A code from 8 random bytes (32 symbols: every byte maps without bias).
pub fn code(random: [u8; CODE_LEN]) -> String {
    random
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
        .collect()
}

/// A pending request from an unknown DM sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingRequest {
    /// The id approvals name.
    pub request_id: String,
    /// The code the sender was given.
    pub code: String,
    /// `telegram`.
    pub channel: String,
    /// The account.
    pub account_id: String,
    /// The sender's id.
    pub sender_id: String,
    /// The DM chat to notify on approval.
    pub chat_id: String,
    /// `{username, firstName}` as the transport gave them.
    #[serde(default)]
    pub metadata: Value,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms of the sender's latest message.
    pub last_seen_at: u64,
    /// Unix ms.
    pub expires_at: u64,
}

/// An approved sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// `telegram`.
    pub channel: String,
    /// The account.
    pub account_id: String,
    /// The sender's id.
    pub sender_id: String,
    /// Unix ms.
    pub approved_at: u64,
}

impl Approval {
    fn key(&self) -> String {
        approval_key(&self.channel, &self.account_id, &self.sender_id)
    }

    /// The row change that stores this approval (an import writes it as approving does).
    pub fn stored(&self) -> StoreChange {
        StoreChange::PutChannelRow {
            kind: ChannelRowKind::PairingApproval,
            key: self.key(),
            row: RowText::of_value(&json!(self)),
        }
    }
}

fn approval_key(channel: &str, account: &str, sender: &str) -> String {
    format!("{channel}:{account}:{sender}")
}

/// What an unknown sender's message does to the requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A new request: send its code.
    New(PairingRequest),
    /// The sender already has a live request (upstream answers once per request).
    Pending,
    /// The account has the most pending requests already.
    Full,
}

/// Channel pairing requests and approvals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelPairing {
    requests: BTreeMap<String, PairingRequest>,
    approvals: BTreeMap<String, Approval>,
}

impl ChannelPairing {
    /// Whether `sender` is approved on `channel`/`account`.
    pub fn is_approved(&self, channel: &str, account: &str, sender: &str) -> bool {
        self.approvals
            .contains_key(&approval_key(channel, account, sender))
    }

    /// Whether any sender has been approved on `channel` (the first owner bootstrap).
    pub fn has_approvals(&self, channel: &str) -> bool {
        self.approvals.values().any(|a| a.channel == channel)
    }

    /// Pending requests, oldest first.
    pub fn requests(&self) -> impl Iterator<Item = &PairingRequest> {
        let mut all: Vec<&PairingRequest> = self.requests.values().collect();
        crate::sorting::sort_by(&mut all, |a, b| {
            (a.created_at, &a.request_id).cmp(&(b.created_at, &b.request_id))
        });
        all.into_iter()
    }

    /// The pending request with `code` on `channel`, if any.
    pub fn by_code(&self, channel: &str, code: &str) -> Option<&PairingRequest> {
        self.requests
            .values()
            .find(|r| r.channel == channel && r.code.eq_ignore_ascii_case(code.trim()))
    }

    /// The pending request `id`.
    pub fn request(&self, id: &str) -> Option<&PairingRequest> {
        self.requests.get(id)
    }

    /// An unknown sender wrote: a new request (`request_id` and `code` fresh), or why not.
    pub fn ask(&mut self, mut new: PairingRequest, changes: &mut Vec<StoreChange>) -> Requested {
        if let Some(r) = self.requests.values_mut().find(|r| {
            r.channel == new.channel
                && r.account_id == new.account_id
                && r.sender_id == new.sender_id
        }) {
            r.last_seen_at = new.created_at;
            changes.push(put_request(r));
            return Requested::Pending;
        }
        let pending = self
            .requests
            .values()
            .filter(|r| r.channel == new.channel && r.account_id == new.account_id)
            .count();
        if pending >= MAX_PENDING_PER_ACCOUNT {
            return Requested::Full;
        }
        new.expires_at = new.created_at.saturating_add(REQUEST_TTL_MS);
        changes.push(put_request(&new));
        self.requests.insert(new.request_id.clone(), new.clone());
        Requested::New(new)
    }

    /// Approve request `id`: the sender is let in from now on.
    pub fn approve(
        &mut self,
        id: &str,
        now_ms: u64,
        changes: &mut Vec<StoreChange>,
    ) -> Option<PairingRequest> {
        let r = self.requests.remove(id)?;
        changes.push(StoreChange::DeleteChannelRow {
            kind: ChannelRowKind::PairingRequest,
            key: id.to_string(),
        });
        let a = Approval {
            channel: r.channel.clone(),
            account_id: r.account_id.clone(),
            sender_id: r.sender_id.clone(),
            approved_at: now_ms,
        };
        changes.push(a.stored());
        self.approvals.insert(a.key(), a);
        Some(r)
    }

    /// Drop request `id` (not a block: the sender may ask again).
    pub fn dismiss(&mut self, id: &str, changes: &mut Vec<StoreChange>) -> Option<PairingRequest> {
        let r = self.requests.remove(id)?;
        changes.push(StoreChange::DeleteChannelRow {
            kind: ChannelRowKind::PairingRequest,
            key: id.to_string(),
        });
        Some(r)
    }

    /// Drop requests that expired by `now_ms`.
    pub fn expire(&mut self, now_ms: u64, changes: &mut Vec<StoreChange>) {
        let expired: Vec<String> = self
            .requests
            .values()
            .filter(|r| r.expires_at <= now_ms)
            .map(|r| r.request_id.clone())
            .collect();
        for id in expired {
            self.dismiss(&id, changes);
        }
    }

    /// Load a stored row; `false` when it does not decode.
    pub fn restore(&mut self, kind: ChannelRowKind, row: Value) -> bool {
        match kind {
            ChannelRowKind::PairingRequest => serde_json::from_value::<PairingRequest>(row)
                .map(|r| self.requests.insert(r.request_id.clone(), r))
                .is_ok(),
            ChannelRowKind::PairingApproval => serde_json::from_value::<Approval>(row)
                .map(|a| self.approvals.insert(a.key(), a))
                .is_ok(),
            _ => false,
        }
    }
}

fn put_request(r: &PairingRequest) -> StoreChange {
    StoreChange::PutChannelRow {
        kind: ChannelRowKind::PairingRequest,
        key: r.request_id.clone(),
        row: RowText::of_value(&json!(r)),
    }
}

/// The message an unknown DM sender gets, upstream's wording with clawgate's command, in
/// Markdown (each transport renders it as it renders replies).
pub fn pairing_message(channel_label: &str, sender_id: &str, code: &str, channel: &str) -> String {
    format!(
        "OpenClaw: access not configured.\n\nYour {channel_label} user id: {sender_id}\nPairing code:\n\n```\n{code}\n```\nAsk the bot owner to approve with:\n\n```\nclawgate pairing approve {channel} {code}\n```"
    )
}

/// The message an approved sender gets with `notify`.
pub const APPROVED_MESSAGE: &str = "✅ OpenClaw access approved. Send a message to start chatting.";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, sender: &str, at: u64) -> PairingRequest {
        PairingRequest {
            request_id: id.into(),
            code: code([id.len() as u8; 8]),
            channel: "telegram".into(),
            account_id: "default".into(),
            sender_id: sender.into(),
            chat_id: sender.into(),
            metadata: Value::Null,
            created_at: at,
            last_seen_at: at,
            expires_at: 0,
        }
    }

    #[test]
    fn codes_avoid_ambiguous_characters() {
        let all: Vec<u8> = (0..=255).collect();
        for c in all.chunks(8) {
            let c = code(c.try_into().unwrap());
            assert_eq!(c.len(), 8);
            assert!(!c.contains(['0', 'O', '1', 'I']), "{c}");
        }
    }

    #[test]
    fn one_request_per_sender_three_per_account_an_hour_each() {
        let mut p = ChannelPairing::default();
        let mut ch = Vec::new();
        assert!(
            matches!(p.ask(req("a", "1", 0), &mut ch), Requested::New(r) if r.expires_at == REQUEST_TTL_MS)
        );
        assert_eq!(p.ask(req("b", "1", 5), &mut ch), Requested::Pending);
        assert!(matches!(
            p.ask(req("c", "2", 5), &mut ch),
            Requested::New(_)
        ));
        assert!(matches!(
            p.ask(req("d", "3", 5), &mut ch),
            Requested::New(_)
        ));
        assert_eq!(p.ask(req("e", "4", 5), &mut ch), Requested::Full);
        let code = p.request("a").unwrap().code.clone();
        assert_eq!(
            p.by_code("telegram", &code.to_lowercase())
                .unwrap()
                .request_id,
            "a"
        );
        assert!(p.approve("a", 9, &mut ch).is_some());
        assert!(p.is_approved("telegram", "default", "1"));
        assert!(!p.is_approved("telegram", "other", "1"));
        p.expire(REQUEST_TTL_MS + 5, &mut ch);
        assert_eq!(p.requests().count(), 0);
        let mut back = ChannelPairing::default();
        for (kind, row) in crate::channels::latest_rows(&ch) {
            assert!(back.restore(kind, row));
        }
        assert_eq!(back, p);
    }
}
