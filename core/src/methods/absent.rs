//! Methods of upstream features clawgate does not have, which the Control UI calls whatever
//! `hello-ok.features.methods` lists: each answers what upstream answers when the feature
//! holds nothing (no cron jobs, plugins, questions, tasks, progress cards, companion
//! exchanges, talk providers, pending update), in upstream's shape, so the UI shows an
//! empty panel rather than an error. Nothing here is made up: an empty list is the truth
//! for a feature clawgate lacks.

use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::params::{self, Bounded, FromParams, Kind, optional};
use super::{AnyParams, Call, Reply};
use crate::frame::ErrorShape;
use crate::gateway::Gateway;

/// `cron.list` params: the page size asked for; the filters, sorting and offset of
/// upstream's `CronListParams` select from no jobs and are not read.
pub(crate) struct CronList {
    limit: Option<Bounded<1, 200>>,
}

impl FromParams for CronList {
    fn from_params(params: Value) -> Result<Self, ErrorShape> {
        const FIELDS: &[params::Field] = &[optional("limit", Kind::Bounded(1, 200))];
        let mut p = params::read_open(params, FIELDS)?;
        Ok(Self {
            limit: p.bounded("limit"),
        })
    }
}

/// upstream's `resolveCronListSnapshotRevision` of a job list: `sha256:` and the
/// base64url SHA-256 of its JSON.
fn snapshot_revision(jobs: &[Value]) -> String {
    let text = Value::from(jobs.to_vec()).to_string();
    let digest = Sha256::digest(text.as_bytes());
    format!("sha256:{}", data_encoding::BASE64URL_NOPAD.encode(&digest))
}

impl Gateway {
    /// `update.status`: clawgate does not update itself: no restart sentinel, no update.
    pub(crate) fn update_status(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({"sentinel": null, "updateAvailable": null})))
    }

    /// `plugin.approval.list` and `openclaw.approval.list`: no plugins and no system agent
    /// ask for approvals here.
    pub(crate) fn no_approvals(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!([])))
    }

    /// `question.list`: no agent tool asks the operator questions.
    pub(crate) fn question_list(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({"questions": []})))
    }

    /// `sessions.observer.visibility`: accepted; clawgate has no session observer whose
    /// digests it would pause.
    pub(crate) fn observer_visibility(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({"ok": true})))
    }

    /// `talk.catalog`: no voice modes, transports or providers.
    pub(crate) fn talk_catalog(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({
            "modes": [], "transports": [], "brains": [],
            "speech": {"providers": []},
            "transcription": {"providers": []},
            "realtime": {"providers": []},
        })))
    }

    /// `cron.list`: upstream's page of no jobs (an offset past none is 0; the limit is
    /// 1 to 200, 50 by default).
    pub(crate) fn cron_list(&mut self, _: Instant, _: &Call<'_>, p: CronList) -> Reply {
        let limit = p.limit.map_or(50, |b| b.0);
        Reply::Now(Ok(json!({
            "jobs": [],
            "snapshotRevision": snapshot_revision(&[]),
            "total": 0,
            "offset": 0,
            "limit": limit,
            "hasMore": false,
            "nextOffset": null,
        })))
    }

    /// `cron.status`: the scheduler is off and holds no jobs.
    pub(crate) fn cron_status(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({
            "enabled": false,
            "triggersEnabled": false,
            "jobs": 0,
            "nextWakeAtMs": null,
        })))
    }

    /// `progressCard.get`: no agent keeps a progress card.
    pub(crate) fn progress_card_get(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({"card": null})))
    }

    /// `sessions.branches.list`: clawgate's transcripts are never rewound, so no branches.
    pub(crate) fn sessions_branches_list(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        _: AnyParams,
    ) -> Reply {
        Reply::Now(Ok(json!({"branches": []})))
    }

    /// `sessions.companion.state`: no companion exchanges.
    pub(crate) fn sessions_companion_state(
        &mut self,
        _: Instant,
        _: &Call<'_>,
        _: AnyParams,
    ) -> Reply {
        Reply::Now(Ok(json!({"exchanges": []})))
    }

    /// `tasks.list`: no background tasks (sub-agents, cron runs).
    pub(crate) fn tasks_list(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(json!({"tasks": []})))
    }

    /// `plugins.list`: no plugins, and none can be installed.
    pub(crate) fn plugins_list(&mut self, _: Instant, _: &Call<'_>, _: AnyParams) -> Reply {
        Reply::Now(Ok(
            json!({"plugins": [], "diagnostics": [], "mutationAllowed": false}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_job_list_has_upstreams_revision() {
        // sha256("[]") in base64url, as upstream's `sha256Base64Url(stableStringify([]))`.
        assert_eq!(
            snapshot_revision(&[]),
            "sha256:T1PNoYwrqgwDVLtfmj7L5e0Sq02OEbqHPC8RFhICuUU"
        );
    }
}
