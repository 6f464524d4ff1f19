//! Which WebSocket frames a peer's bytes held, counted as they are handed to tungstenite, so
//! the core can tell when tungstenite has nothing left to read. Asking it anyway costs a
//! zero-filled read step (tungstenite clears up to its read buffer size before every read,
//! `conn::READ_STEP`) only to hear `WouldBlock`: once per request without this count.

/// The longest frame header: two bytes, a 64-bit length and a mask key.
const MAX_HEADER: usize = 14;

/// The frames in the bytes handed out so far, and the messages read from them.
#[derive(Debug, Default)]
pub(crate) struct FrameTally {
    /// The current frame's header bytes received so far (`have` of them).
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come, once its header is complete.
    left: u64,
    /// Frames handed out whole.
    complete: u64,
    /// Messages read from them.
    taken: u64,
    /// A frame that is not a whole message (FIN clear, or a continuation) was seen: a message
    /// may then span frames, and the count no longer says what is left.
    fragmented: bool,
}

impl FrameTally {
    /// Count the frames that `bytes`, the next ones handed out, end or begin.
    pub(crate) fn handed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.left > 0 {
                let k = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.left -= k as u64;
                bytes = bytes.get(k..).unwrap_or_default();
                if self.left == 0 {
                    self.complete += 1;
                }
                continue;
            }
            if let Some(slot) = self.header.get_mut(self.have) {
                *slot = first;
            }
            self.have += 1;
            bytes = rest;
            self.header_read();
        }
    }

    /// A whole frame was handed out at once, while [`FrameTally::all_taken`] held: what
    /// [`FrameTally::handed`] counts for its bytes.
    pub(crate) fn handed_whole_frame(&mut self) {
        self.complete += 1;
    }

    /// If the header is now complete: start its payload (or count a frame without one).
    fn header_read(&mut self) {
        let (b0, b1) = match self.header.get(..self.have) {
            Some([b0, b1, ..]) => (*b0, *b1),
            _ => return,
        };
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        if self.have < 2 + ext + mask {
            return;
        }
        let len = match self.header.get(2..2 + ext) {
            Some(&[a, b]) => u64::from(u16::from_be_bytes([a, b])),
            Some(&[a, b, c, d, e, f, g, h]) => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            _ => u64::from(b1 & 0x7f),
        };
        let fin = b0 & 0x80 != 0;
        let continuation = b0 & 0x0f == 0;
        if !fin || continuation {
            self.fragmented = true;
        }
        self.have = 0;
        self.left = len;
        if len == 0 {
            self.complete += 1;
        }
    }

    /// A message was read from the bytes handed out.
    pub(crate) fn took(&mut self) {
        self.taken += 1;
    }

    /// Whether every byte handed out belonged to a whole frame and every such frame was read
    /// as a message of its own: tungstenite then holds no byte it has not read.
    pub(crate) fn all_taken(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.fragmented && self.complete == self.taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame (mask key 0) with this first byte and payload.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        crate::fuzzing::stream::client_frame(b0, payload, [0; 4], false)
    }

    #[test]
    fn whole_frames_in_any_split_are_counted() {
        let mut stream = frame(0x81, b"{\"type\":\"req\"}");
        stream.extend(frame(0x89, b""));
        stream.extend(frame(0x81, &[b'x'; 300]));
        stream.extend(frame(0x82, &[7; 70_000]));
        for step in [1, 2, 3, 13, 14, 64, 4096, stream.len()] {
            let mut t = FrameTally::default();
            for chunk in stream.chunks(step) {
                t.handed(chunk);
            }
            assert_eq!(t.complete, 4, "step {step}");
            assert!(!t.all_taken(), "nothing read yet");
            for _ in 0..4 {
                t.took();
            }
            assert!(t.all_taken(), "step {step}");
        }
    }

    #[test]
    fn a_partial_frame_or_a_fragment_keeps_the_read() {
        let whole = frame(0x81, b"hello");
        let mut t = FrameTally::default();
        t.handed(whole.get(..whole.len() - 1).unwrap_or_default());
        t.took();
        assert!(!t.all_taken(), "the payload's last byte is still to come");
        t.handed(whole.get(whole.len() - 1..).unwrap_or_default());
        assert!(t.all_taken());

        let mut t = FrameTally::default();
        t.handed(&frame(0x01, b"he"));
        t.handed(&frame(0x80, b"llo"));
        t.took();
        assert!(!t.all_taken(), "two frames, one message: not counted");

        let mut t = FrameTally::default();
        t.handed(&[0x81]);
        assert!(!t.all_taken(), "half a header");
    }
}
