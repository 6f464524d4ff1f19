//! The frames phase of a WebSocket: reading frames (with the limits on size, UTF-8 and
//! pre-hello frame counts), sending frames and broadcasts within each connection's unsent-byte
//! budget, and closing with a [`CloseReason`].

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::Value;
use tungstenite::Message;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::close::CloseReason;
use crate::conn::{Conn, ConnId, Framed, Phase, State};
use crate::frame::{OutFrame, SeqEvent, truncate_reason};
use crate::gateway::{Gateway, MAX_CLOSE_REASON, Output};
use crate::log::Level;

impl Gateway {
    /// Read and act on the frames `id` has buffered, up to its quota for this turn (a number
    /// of frames, and of bytes of answers they queued).
    pub(crate) fn read_frames(&mut self, now: Instant, id: ConnId) {
        let mut quota = self.config.limits.max_frames_per_turn;
        let output_quota = self.config.limits.max_turn_output_bytes;
        let Some(unsent_before) = self.conns.get(&id).map(|c| c.unsent) else {
            return;
        };
        // The last frame read was a data message: no pong or close is waiting to go out.
        let mut after_data = false;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            // A client that does not read its answers gets no more work done until it does.
            let stalled = c.unsent > self.config.limits.slow_consumer_bytes;
            if stalled || quota == 0 || c.unsent.saturating_sub(unsent_before) > output_quota {
                self.defer_input(now, id, stalled);
                return;
            }
            let State::Ws(ws) = &mut c.state else { return };
            let res = if after_data && ws.io.is_drained() && ws.ctx.can_write() {
                // Everything received was read: tungstenite would zero a read step only to
                // say `WouldBlock`.
                Err(tungstenite::Error::Io(
                    std::io::ErrorKind::WouldBlock.into(),
                ))
            } else {
                ws.read_message()
            };
            if res.is_ok() {
                ws.io.took_message();
            }
            after_data = matches!(res, Ok(Message::Text(_) | Message::Binary(_)));
            let pending = std::mem::take(&mut ws.io.wr);
            let preauth = matches!(ws.phase, Phase::PreHello { .. });
            self.transmit(id, pending);
            if res.is_ok() {
                quota -= 1;
            }
            match res {
                Ok(Message::Text(t)) => self.on_text(now, id, t.as_str()),
                Ok(Message::Binary(_)) => self.on_other_frame(now, id),
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {
                    self.on_other_frame(now, id)
                }
                Ok(Message::Close(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    self.log(now, Level::Info, Some(id), "closed by client".into());
                    self.forget(now, id);
                    return;
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    self.log(now, Level::Warn, Some(id), format!("frame too large: {e}"));
                    self.close_ws(now, id, CloseReason::TooBig { preauth });
                    return;
                }
                Err(tungstenite::Error::Utf8(_)) => {
                    self.close_ws(now, id, CloseReason::InvalidUtf8);
                    return;
                }
                Err(e) => {
                    self.log(
                        now,
                        Level::Warn,
                        Some(id),
                        format!("websocket protocol error: {e}"),
                    );
                    self.close_ws(now, id, CloseReason::ProtocolError);
                    return;
                }
            }
        }
    }

    /// Count a pre-hello frame; closes on the 16th.
    fn count_preauth_frame(&mut self, now: Instant, id: ConnId) -> bool {
        let max = self.config.limits.max_pending_handshake_frames;
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let State::Ws(ws) = &mut c.state else {
            return false;
        };
        if let Phase::PreHello { frames, .. } = &mut ws.phase {
            *frames += 1;
            if *frames > max {
                self.close_ws(now, id, CloseReason::TooManyHandshakeFrames);
                return false;
            }
        }
        true
    }

    fn on_other_frame(&mut self, now: Instant, id: ConnId) {
        let preauth = self.conns.get(&id).is_some_and(Conn::is_preauth_ws);
        if preauth {
            self.count_preauth_frame(now, id);
        }
    }

    fn on_text(&mut self, now: Instant, id: ConnId, text: &str) {
        let preauth = self.conns.get(&id).is_some_and(Conn::is_preauth_ws);
        if self.config.log_frames {
            self.log(
                now,
                Level::Trace,
                Some(id),
                format!("frame in: {}", crate::mask::mask_secrets(text)),
            );
        }
        if !preauth {
            self.on_request_text(now, id, text);
            return;
        }
        if !self.count_preauth_frame(now, id) || self.is_held(id) {
            return;
        }
        self.on_connect_text(now, id, text);
    }

    /// Close a WebSocket with a code and reason (truncated to 123 bytes), then forget it.
    pub(crate) fn close_ws(&mut self, now: Instant, id: ConnId, why: CloseReason) {
        let code = why.code();
        let text = why.text();
        let reason = truncate_reason(&text, MAX_CLOSE_REASON).to_string();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut bytes = Vec::new();
        if let State::Ws(ws) = &mut c.state {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.clone().into(),
            };
            let _ = ws.ctx.close(&mut ws.io, Some(frame));
            bytes = std::mem::take(&mut ws.io.wr);
        }
        self.transmit(id, bytes);
        self.log(
            now,
            Level::Info,
            Some(id),
            format!("closed {code} {reason:?}"),
        );
        self.forget(now, id);
    }

    /// Send a frame on a WebSocket connection; closes it as a slow consumer when its unsent
    /// bytes pass `maxBufferedBytes`.
    pub(crate) fn send(&mut self, now: Instant, id: ConnId, frame: &OutFrame) {
        let text = frame.to_text();
        self.send_text(now, id, text);
    }

    pub(crate) fn send_text(&mut self, now: Instant, id: ConnId, text: String) {
        let text_for_log = if self.config.log_frames {
            text.clone()
        } else {
            String::new()
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.frame_text(text, self.config.limits.max_buffered_bytes) {
            Framed::Bytes(data) => {
                self.count_unsent(data.len());
                self.out.push_back(Output::Transmit { conn: id, data });
                self.log_frame_out(now, id, &text_for_log);
                self.enforce_budget(now);
            }
            Framed::SlowConsumer => self.slow_consumer(now, id),
            Framed::NotWebSocket => {}
        }
    }

    fn slow_consumer(&mut self, now: Instant, id: ConnId) {
        self.log(now, Level::Warn, Some(id), "slow consumer".into());
        self.cut_slow_consumer(now, id);
    }

    /// With `--verbose`, the text of a frame sent (secrets masked).
    fn log_frame_out(&mut self, now: Instant, id: ConnId, text: &str) {
        if self.config.log_frames {
            self.log(
                now,
                Level::Trace,
                Some(id),
                format!("frame out: {}", crate::mask::mask_secrets(text)),
            );
        }
    }

    /// Send an event to every authenticated connection allowed to see it, each with its own
    /// `seq`: one pass over the connections, the frame serialised once. A droppable event
    /// skips slow consumers (their `seq` still advances), as upstream's `dropIfSlow`.
    pub(crate) fn broadcast(
        &mut self,
        now: Instant,
        event: &str,
        payload: &Value,
        state_version: Option<&Value>,
    ) {
        self.broadcast_where(now, event, payload, state_version, |_| true);
    }

    /// [`Gateway::broadcast`] to the connections of `audience` only (those allowed to see it).
    pub(crate) fn broadcast_to(
        &mut self,
        now: Instant,
        event: &str,
        payload: &Value,
        audience: &BTreeSet<ConnId>,
    ) {
        self.broadcast_where(now, event, payload, None, |id| audience.contains(&id));
    }

    fn broadcast_where(
        &mut self,
        now: Instant,
        event: &str,
        payload: &Value,
        state_version: Option<&Value>,
        wanted: impl Fn(ConnId) -> bool,
    ) {
        let frame = SeqEvent::new(event, payload, state_version);
        let max_unsent = self.config.limits.max_buffered_bytes;
        let droppable = crate::backpressure::drop_if_slow(event, payload);
        let slow_bytes = self.config.limits.slow_consumer_bytes;
        let mut slow = Vec::new();
        let mut sent = Vec::new();
        let mut queued = 0;
        for (&id, c) in &mut self.conns {
            if !wanted(id) {
                continue;
            }
            let unsent = c.unsent;
            let Some(s) = c.session_mut() else { continue };
            if !crate::scopes::may_receive(s.role, &s.scopes, event) {
                continue;
            }
            s.seq += 1;
            let seq = s.seq;
            if droppable && unsent > slow_bytes {
                continue;
            }
            match c.frame_text(frame.with_seq(seq), max_unsent) {
                Framed::Bytes(data) => {
                    queued += data.len();
                    self.out.push_back(Output::Transmit { conn: id, data });
                    if self.config.log_frames {
                        sent.push((id, seq));
                    }
                }
                Framed::SlowConsumer => slow.push(id),
                // A session is only ever on a WebSocket.
                Framed::NotWebSocket => {}
            }
        }
        for (id, seq) in sent {
            self.log_frame_out(now, id, &frame.with_seq(seq));
        }
        self.count_unsent(queued);
        for id in slow {
            self.slow_consumer(now, id);
        }
        self.enforce_budget(now);
    }
}
