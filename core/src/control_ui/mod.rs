//! The Control UI on the gateway's port: upstream's single-page app served from
//! `gateway.controlUi.root` (or an installed `openclaw` package the host found), under
//! `gateway.controlUi.basePath`, with upstream's routing, cache rules and security headers.
//!
//! The core decides everything ([`route`] maps the request to a file, [`negotiate`] reads the
//! request headers, [`response`] writes the heads, [`index_html`] prepares the app shell,
//! [`bootstrap`] answers `/control-ui-config.json`); the host only reads files ([`Work::ReadFile`], confined to the root). A file goes out in
//! pieces of `limits.ui_chunk_bytes`: the next piece is read only once the connection has
//! at most that many bytes unsent, so a large asset neither stalls the loop nor piles up in
//! memory behind a slow reader. Static files need no auth (the config needs the gateway's
//! secret) and every response closes its connection.

mod bootstrap;
mod index_html;
mod negotiate;
mod response;
mod route;

use std::collections::HashMap;
use std::time::Instant;

use crate::conn::{ConnId, State};
use crate::gateway::{Gateway, Output};
use crate::http::PlainRequest;
use crate::log::Level;
use crate::work::{FileChunk, FileError, FileRead, Work, WorkId};

use negotiate::{Coding, RangeAsk};
use response::Head;
use route::{FilePlan, INDEX, Route};

/// The Control UI's responses in progress: one owner for every transfer and its reads.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    transfers: HashMap<ConnId, Transfer>,
    /// Reads in flight and the connection each is for.
    reads: HashMap<WorkId, ConnId>,
}

impl Serving {
    /// The connection went away: its transfer ends (a read still in flight is dropped when
    /// it comes back).
    pub(crate) fn conn_gone(&mut self, id: ConnId) {
        self.transfers.remove(&id);
    }

    /// Whether the transfer on `id` handed out bytes since the last check (an idle one is
    /// cut off at the handshake timeout).
    pub(crate) fn progressed(&mut self, id: ConnId) -> bool {
        self.transfers.get_mut(&id).is_some_and(|t| {
            let moved = t.sent != t.sent_at_check;
            t.sent_at_check = t.sent;
            moved
        })
    }
}

/// One response being prepared or sent.
#[derive(Debug)]
struct Transfer {
    req: PlainRequest,
    plan: FilePlan,
    /// The coding of each candidate of the opening read (`None`: the file itself).
    codings: Vec<Option<Coding>>,
    stage: Stage,
    /// Bytes handed to the shell so far, and at the last idle check.
    sent: u64,
    sent_at_check: u64,
}

#[derive(Debug)]
enum Stage {
    /// The first read is in flight.
    Opening,
    /// The app shell is being read whole.
    Html(Vec<u8>),
    /// The head is sent; the body follows piece by piece.
    Body(Body),
}

#[derive(Debug)]
struct Body {
    /// The file being sent (the chosen variant).
    rel: String,
    size: u64,
    modified_ms: u64,
    /// The next byte to read, and the end of the part to send (exclusive).
    next: u64,
    end: u64,
    reading: bool,
}

impl Transfer {
    fn head_only(&self) -> bool {
        self.req.method == "HEAD"
    }
}

impl Gateway {
    /// Answer `req` if it is the Control UI's (`false`: the plain routes answer it).
    pub(crate) fn serve_control_ui(&mut self, now: Instant, id: ConnId, req: PlainRequest) -> bool {
        let head_only = req.method == "HEAD";
        if bootstrap::is_config_request(&self.config.control_ui, &req) {
            if let Some(ip) = self.conns.get(&id).map(|c| c.peer.ip()) {
                self.serve_bootstrap_config(now, id, ip, &req);
            }
            return true;
        }
        let plan = match route::classify(&self.config.control_ui, &req) {
            Route::Elsewhere => return false,
            Route::NotFound => {
                self.answer_http(now, id, response::not_found(head_only));
                return true;
            }
            Route::Redirect(location) => {
                self.answer_http(now, id, response::redirect(&location));
                return true;
            }
            Route::File(plan) => plan,
        };
        if self.config.control_ui.root.path().is_none() {
            let page = response::missing_page(&self.config.control_ui.root, head_only);
            self.answer_http(now, id, page);
            return true;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Static;
        }
        let transfer = Transfer {
            req,
            plan,
            codings: Vec::new(),
            stage: Stage::Opening,
            sent: 0,
            sent_at_check: 0,
        };
        self.open_file(id, transfer);
        true
    }

    /// Send a whole response and close.
    fn answer_http(&mut self, now: Instant, id: ConnId, bytes: Vec<u8>) {
        self.transmit(id, bytes);
        self.forget(now, id);
    }

    /// Ask for the first piece of the plan's file: its precompressed variants the request
    /// accepts first, then the file itself.
    fn open_file(&mut self, id: ConnId, mut t: Transfer) {
        let rel = t.plan.rel.clone();
        let mut codings: Vec<Option<Coding>> = Vec::new();
        if !t.plan.is_index() && response::is_compressible(&rel) {
            let accepted = negotiate::codings(t.req.accept_encoding.as_deref());
            codings.extend(accepted.into_iter().map(Some));
        }
        codings.push(None);
        let candidates = codings
            .iter()
            .map(|c| format!("{rel}{}", c.map_or("", Coding::suffix)))
            .collect();
        t.codings = codings;
        t.stage = Stage::Opening;
        self.serving.transfers.insert(id, t);
        let max_len = self.config.limits.ui_chunk_bytes;
        self.read_file(id, candidates, 0, max_len);
    }

    /// Ask the host for `max_len` bytes from `offset` of the first of `candidates` (paths
    /// under the root) that exists.
    fn read_file(&mut self, id: ConnId, candidates: Vec<String>, offset: u64, max_len: usize) {
        let root = self
            .config
            .control_ui
            .root
            .path()
            .unwrap_or_default()
            .to_string();
        let work = self.next_work_id();
        self.serving.reads.insert(work, id);
        self.out.push_back(Output::Work {
            id: work,
            work: Work::ReadFile(FileRead {
                root,
                candidates,
                offset,
                max_len,
            }),
        });
    }

    /// Hand out bytes of a transfer.
    fn send_piece(&mut self, id: ConnId, t: &mut Transfer, bytes: Vec<u8>) {
        t.sent += bytes.len() as u64;
        self.transmit(id, bytes);
    }

    /// The outcome of a [`Work::ReadFile`] the Control UI asked for.
    pub(crate) fn on_file_read(
        &mut self,
        now: Instant,
        work: WorkId,
        result: Result<FileChunk, FileError>,
    ) {
        let Some(id) = self.serving.reads.remove(&work) else {
            return;
        };
        let Some(mut t) = self.serving.transfers.remove(&id) else {
            return;
        };
        let stage = std::mem::replace(&mut t.stage, Stage::Opening);
        match (stage, result) {
            (Stage::Opening, Err(FileError::NotFound)) => self.not_there(now, id, t),
            (Stage::Opening | Stage::Html(_), Err(FileError::Io(e))) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    format!("control ui: reading {} failed: {e}", t.plan.rel),
                );
                self.answer_http(
                    now,
                    id,
                    response::text(500, "Internal Server Error", t.head_only()),
                );
            }
            (Stage::Opening, Ok(chunk)) if t.plan.is_index() => {
                self.shell_piece(now, id, t, Vec::new(), chunk)
            }
            (Stage::Opening, Ok(chunk)) => self.start_body(now, id, t, chunk),
            (Stage::Html(buf), Ok(chunk)) => self.shell_piece(now, id, t, buf, chunk),
            (Stage::Body(body), Ok(chunk)) => self.body_piece(now, id, t, body, chunk),
            (Stage::Html(_) | Stage::Body(_), Err(e)) => {
                self.log(
                    now,
                    Level::Warn,
                    Some(id),
                    format!("control ui: {} cut off: {e}", t.plan.rel),
                );
                self.forget(now, id);
            }
        }
    }

    /// No variant of the planned file exists: the app shell for a page the browser
    /// navigated to, the built-in page when the shell itself is missing, else 404.
    fn not_there(&mut self, now: Instant, id: ConnId, t: Transfer) {
        if t.plan.rel != INDEX && t.plan.spa_fallback && !response::is_static_asset(&t.plan.rel) {
            let shell = t.plan.shell();
            self.open_file(id, Transfer { plan: shell, ..t });
        } else if t.plan.rel == INDEX {
            let page = response::missing_page(&self.config.control_ui.root, t.head_only());
            self.answer_http(now, id, page);
        } else {
            self.answer_http(now, id, response::not_found(t.head_only()));
        }
    }

    /// A piece of `index.html`: read on until it is whole, then send it prepared.
    fn shell_piece(
        &mut self,
        now: Instant,
        id: ConnId,
        mut t: Transfer,
        mut buf: Vec<u8>,
        chunk: FileChunk,
    ) {
        if chunk.size > self.config.limits.ui_max_html_bytes as u64 {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("control ui: {} is larger than uiMaxHtmlBytes", t.plan.rel),
            );
            self.answer_http(
                now,
                id,
                response::text(500, "Internal Server Error", t.head_only()),
            );
            return;
        }
        buf.extend_from_slice(&chunk.data);
        if (buf.len() as u64) < chunk.size && !chunk.data.is_empty() {
            let (rel, offset) = (t.plan.rel.clone(), buf.len() as u64);
            t.stage = Stage::Html(buf);
            self.serving.transfers.insert(id, t);
            let max_len = self.config.limits.ui_chunk_bytes;
            self.read_file(id, vec![rel], offset, max_len);
            return;
        }
        let html = String::from_utf8_lossy(&buf);
        let shell = index_html::prepare(&html, &self.config.control_ui.base_path);
        let csp = response::csp(&shell.script_hashes, t.req.host.as_deref());
        let bytes = Head::new(200, &csp)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", response::NO_CACHE)
            .header("Vary", "Accept-Encoding")
            .with_body(shell.html.as_bytes(), t.head_only());
        self.answer_http(now, id, bytes);
    }

    /// The first piece of an asset: answer 304, 416, a HEAD, or send the head and start the
    /// body.
    fn start_body(&mut self, now: Instant, id: ConnId, mut t: Transfer, chunk: FileChunk) {
        let coding = t.codings.get(chunk.index).copied().flatten();
        let size = chunk.size;
        let etag = format!(
            "\"{size:x}-{:x}{}\"",
            chunk.modified_ms,
            coding.map_or(String::new(), |c| format!("-{}", c.name()))
        );
        let cache = if t.plan.immutable {
            response::IMMUTABLE
        } else {
            response::NO_CACHE
        };
        let last_modified = crate::dates::http_date(chunk.modified_ms);
        let csp = response::csp(&[], None);
        let validators = |status: u16| {
            Head::new(status, &csp)
                .header("Cache-Control", cache)
                .header("ETag", &etag)
                .header("Last-Modified", &last_modified)
                .header("Vary", "Accept-Encoding")
        };
        if t.req
            .if_none_match
            .as_deref()
            .is_some_and(|inm| negotiate::none_match(inm, &etag))
        {
            self.answer_http(now, id, validators(304).no_length());
            return;
        }
        // Ranges of the file itself only, and only unconditionally.
        let ask = if coding.is_none() && t.req.if_range.is_none() {
            negotiate::range(t.req.range.as_deref(), size)
        } else {
            RangeAsk::Whole
        };
        let (status, start, end) = match ask {
            RangeAsk::Whole => (200, 0, size),
            RangeAsk::Part(start, end) => (206, start, end),
            RangeAsk::Unsatisfiable => {
                let head = Head::new(416, &csp).header("Content-Range", &format!("bytes */{size}"));
                self.answer_http(now, id, head.finish(0));
                return;
            }
        };
        let mut head =
            validators(status).header("Content-Type", response::content_type(&t.plan.rel));
        head = match coding {
            Some(c) => head.header("Content-Encoding", c.name()),
            None => head.header("Accept-Ranges", "bytes"),
        };
        if status == 206 {
            head = head.header(
                "Content-Range",
                &format!("bytes {start}-{}/{size}", end.saturating_sub(1)),
            );
        }
        let head = head.finish(end - start);
        if t.head_only() {
            self.answer_http(now, id, head);
            return;
        }
        self.send_piece(id, &mut t, head);
        let mut body = Body {
            rel: t.plan.rel.clone() + coding.map_or("", Coding::suffix),
            size,
            modified_ms: chunk.modified_ms,
            next: start,
            end,
            reading: false,
        };
        if start == 0 {
            let n = (chunk.data.len() as u64).min(end);
            let piece = chunk.data.get(..n as usize).unwrap_or_default().to_vec();
            self.send_piece(id, &mut t, piece);
            body.next = n;
        }
        t.stage = Stage::Body(body);
        self.serving.transfers.insert(id, t);
        self.pump(now, id);
    }

    /// A later piece of an asset's body.
    fn body_piece(
        &mut self,
        now: Instant,
        id: ConnId,
        mut t: Transfer,
        mut body: Body,
        chunk: FileChunk,
    ) {
        if chunk.size != body.size || chunk.modified_ms != body.modified_ms || chunk.data.is_empty()
        {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!(
                    "control ui: {} changed while it was sent; cut off",
                    body.rel
                ),
            );
            self.forget(now, id);
            return;
        }
        let n = (chunk.data.len() as u64).min(body.end - body.next);
        let piece = chunk.data.get(..n as usize).unwrap_or_default().to_vec();
        self.send_piece(id, &mut t, piece);
        body.next += n;
        body.reading = false;
        t.stage = Stage::Body(body);
        self.serving.transfers.insert(id, t);
        self.pump(now, id);
    }

    /// Move a body on: close once it is all handed out, else read the next piece when the
    /// connection has at most a piece unsent.
    pub(crate) fn pump(&mut self, now: Instant, id: ConnId) {
        let chunk = self.config.limits.ui_chunk_bytes;
        let unsent = self.conns.get(&id).map_or(0, |c| c.unsent);
        let Some(t) = self.serving.transfers.get_mut(&id) else {
            return;
        };
        let Stage::Body(body) = &mut t.stage else {
            return;
        };
        if body.next >= body.end {
            self.forget(now, id);
            return;
        }
        if body.reading || unsent > chunk {
            return;
        }
        body.reading = true;
        let max_len = usize::try_from(body.end - body.next).map_or(chunk, |left| left.min(chunk));
        let (rel, offset) = (body.rel.clone(), body.next);
        self.read_file(id, vec![rel], offset, max_len);
    }
}
