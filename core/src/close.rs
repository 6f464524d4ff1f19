//! Why the gateway closes a WebSocket: every close code and reason text in one place.

use std::borrow::Cow;

/// The message of the `NOT_PAIRED` refusal; its close reason adds the request id.
pub(crate) const PAIRING_REQUIRED: &str = "pairing required: device is not approved yet";

/// Why a live device connection is invalidated (closed 4001).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// `node.pair.remove` removed the node's approval.
    NodeRemoved,
    /// `device.pair.remove` removed the device.
    DeviceRemoved,
    /// `device.token.rotate` replaced the token the connection used.
    TokenRotated,
    /// `device.token.revoke` revoked the token the connection used.
    TokenRevoked,
}

/// Why a WebSocket is closed; owns its close code and reason text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// No `hello-ok` within the handshake timeout (1000, no reason).
    HandshakeTimeout,
    /// A handshake frame that is not JSON (1000, no reason).
    HandshakeNotJson,
    /// A `connect` refused: 1008 with the refusal's message.
    Refused(Box<str>),
    /// A `connect` refused because the device awaits pairing (1008).
    PairingRequired {
        /// The pending pairing request.
        request_id: Box<str>,
    },
    /// The client speaks another protocol version (1002).
    ProtocolMismatch,
    /// More frames before `hello-ok` than allowed (1008).
    TooManyHandshakeFrames,
    /// An upgrade to the worker protocol, which clawgate does not speak (1008).
    WorkerProtocol,
    /// Too many unauthorized-role calls in a row (1008).
    RepeatedUnauthorized,
    /// The connection's unsent bytes passed `maxBufferedBytes` (1008).
    SlowConsumer,
    /// A frame or message over the size limit (1009); no reason before `hello-ok`.
    TooBig {
        /// Whether the connection had not finished its handshake.
        preauth: bool,
    },
    /// A text frame that is not UTF-8 (1007).
    InvalidUtf8,
    /// A WebSocket protocol violation (1002).
    ProtocolError,
    /// The gateway is stopping (1012).
    ServiceRestart,
    /// The store could not keep what admitting the connection changed (1011).
    StoreUnavailable,
    /// The shared secret or auth mode changed under a connection that rests on it (4001).
    AuthChanged,
    /// The device, node approval or token the connection rests on is gone (4001).
    Invalidated(Invalidation),
}

impl CloseReason {
    /// The WebSocket close code.
    pub(crate) fn code(&self) -> u16 {
        match self {
            CloseReason::HandshakeTimeout | CloseReason::HandshakeNotJson => 1000,
            CloseReason::ProtocolMismatch | CloseReason::ProtocolError => 1002,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::Refused(_)
            | CloseReason::PairingRequired { .. }
            | CloseReason::TooManyHandshakeFrames
            | CloseReason::WorkerProtocol
            | CloseReason::RepeatedUnauthorized
            | CloseReason::SlowConsumer => 1008,
            CloseReason::TooBig { .. } => 1009,
            CloseReason::StoreUnavailable => 1011,
            CloseReason::ServiceRestart => 1012,
            CloseReason::AuthChanged | CloseReason::Invalidated(_) => 4001,
        }
    }

    /// The close reason text (before truncation to the frame's limit).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            CloseReason::HandshakeTimeout
            | CloseReason::HandshakeNotJson
            | CloseReason::TooBig { preauth: true } => "",
            CloseReason::Refused(message) => message,
            CloseReason::PairingRequired { request_id } => {
                return Cow::Owned(format!("{PAIRING_REQUIRED} (requestId: {request_id})"));
            }
            CloseReason::ProtocolMismatch => "protocol mismatch",
            CloseReason::TooManyHandshakeFrames => "too many pending handshake frames",
            CloseReason::WorkerProtocol => "invalid-handshake",
            CloseReason::RepeatedUnauthorized => "repeated unauthorized calls",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::TooBig { preauth: false } => "message too big",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::ServiceRestart => "service restart",
            CloseReason::StoreUnavailable => "store unavailable",
            CloseReason::AuthChanged => "gateway auth changed",
            CloseReason::Invalidated(Invalidation::NodeRemoved) => {
                "client invalidated: node removed"
            }
            CloseReason::Invalidated(Invalidation::DeviceRemoved) => {
                "client invalidated: device removed"
            }
            CloseReason::Invalidated(Invalidation::TokenRotated) => {
                "client invalidated: token rotated"
            }
            CloseReason::Invalidated(Invalidation::TokenRevoked) => {
                "client invalidated: token revoked"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts() {
        let pairing = CloseReason::PairingRequired {
            request_id: "r1".into(),
        };
        assert_eq!(pairing.code(), 1008);
        assert_eq!(
            pairing.text(),
            "pairing required: device is not approved yet (requestId: r1)"
        );
        assert_eq!(CloseReason::TooBig { preauth: true }.text(), "");
        assert_eq!(CloseReason::TooBig { preauth: false }.code(), 1009);
        assert_eq!(
            CloseReason::Invalidated(Invalidation::TokenRevoked).code(),
            4001
        );
    }
}
