//! Server-to-client WebSocket frames (RFC 6455 §5.2) built as bytes ready for the socket: a
//! server's frames are unmasked, so a text frame is a 2–10-byte header and the JSON. Building
//! them here, once per delivery and straight into one buffer per delivery batch, lets the
//! delivery path write a frame without a task, a message type or a copy in between.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Opcode of a text frame.
const TEXT: u8 = 0x1;
/// The FIN bit: each frame here is a whole message.
const FIN: u8 = 0x80;

/// Appends a frame header for a payload of `len` bytes.
fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(FIN | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(len);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// Builds frames into one growing buffer; each frame taken out is a view of that buffer (no
/// allocation per frame once the buffer has room).
#[derive(Debug, Default)]
pub struct FrameBuilder {
    buf: BytesMut,
    /// The JSON of the frame being built (its length is needed before the header).
    scratch: Vec<u8>,
}

impl FrameBuilder {
    /// A builder whose first buffer holds about `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(bytes),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Makes room for about `bytes` more (reusing the buffer once every frame taken from it is
    /// gone).
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// The text frame carrying `value` as JSON.
    pub fn text<T: Serialize + ?Sized>(&mut self, value: &T) -> Bytes {
        self.scratch.clear();
        // Serializing our own frame types into memory cannot fail (no maps with non-string
        // keys, no I/O).
        serde_json::to_writer(&mut self.scratch, value).expect("frames serialize");
        let len = self.scratch.len();
        self.buf.reserve(len + 10);
        put_header(&mut self.buf, TEXT, len);
        self.buf.put_slice(&self.scratch);
        self.buf.split().freeze()
    }
}

/// One text frame carrying `value` as JSON (for frames built one at a time: replies, pages).
pub fn text<T: Serialize + ?Sized>(value: &T) -> Bytes {
    FrameBuilder::default().text(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn decode(frame: &[u8]) -> (FrameHeader, &[u8]) {
        let mut cursor = std::io::Cursor::new(frame);
        let (header, len) = FrameHeader::parse(&mut cursor)
            .expect("parses")
            .expect("complete");
        let start = cursor.position() as usize;
        assert_eq!(frame.len() - start, len as usize, "the payload is the rest");
        (header, &frame[start..])
    }

    #[test]
    fn frames_of_each_length_class_parse_back_as_unmasked_text() {
        let mut b = FrameBuilder::with_capacity(16);
        for n in [0usize, 10, 125, 126, 1_000, 65_535, 65_536, 70_000] {
            let s = "x".repeat(n);
            let frame = b.text(&s);
            let (header, payload) = decode(&frame);
            assert!(header.is_final);
            assert_eq!(header.mask, None);
            assert_eq!(
                header.opcode,
                tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                    tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text
                )
            );
            assert_eq!(payload, serde_json::to_vec(&s).unwrap().as_slice());
        }
    }
}
