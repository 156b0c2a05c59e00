//! The wire: `Content-Length` framed JSON-RPC messages on a byte stream.
//!
//! lsp-server's own stdio transport ends the session at the first malformed frame; this reader
//! skips a frame it cannot read and reports it instead, so a confused client cannot take the
//! server down.

use lsp_server::{ErrorCode, Message, RequestId, Response};
use std::io::{self, BufRead, Read, Write};

/// What one read from the stream gave.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed message.
    Message(Message),
    /// A frame whose body is not a JSON-RPC message; the answer to send, if it had an id.
    Malformed(Option<Response>),
    /// The stream ended.
    End,
}

/// Reads the next frame from `reader`.
pub fn read_message(reader: &mut impl BufRead) -> io::Result<Incoming> {
    let mut content_length: Option<u64> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(Incoming::End);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if content_length.is_some() {
                break;
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok();
            }
        }
    }
    let length = content_length.unwrap_or(0);
    let mut body = Vec::new();
    reader.take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Ok(Incoming::End);
    }
    Ok(match serde_json::from_slice::<Message>(&body) {
        Ok(message) => Incoming::Message(message),
        Err(err) => Incoming::Malformed(malformed_answer(&body, &err.to_string())),
    })
}

/// The error response for a body that does not parse as a message, when it carries an id.
fn malformed_answer(body: &[u8], error: &str) -> Option<Response> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id: RequestId = serde_json::from_value(value.get("id")?.clone()).ok()?;
    Some(Response::new_err(
        id,
        ErrorCode::InvalidRequest as i32,
        format!("not a json-rpc request: {error}"),
    ))
}

/// Writes one framed message to `writer` and flushes it.
pub fn write_message(writer: &mut impl Write, message: Message) -> io::Result<()> {
    message.write(writer)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_malformed_frames_and_reads_the_next() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#;
        let bad = r#"{"jsonrpc":"2.0","id":3,"error":"boom"}"#;
        let junk = "{{{{{";
        let stream = format!(
            "Content-Length: 5\r\n\r\n{junk}Content-Length: {}\r\n\r\n{bad}Content-Length: {}\r\n\r\n{good}",
            bad.len(),
            good.len()
        );
        let mut reader = io::Cursor::new(stream.into_bytes());
        assert!(matches!(
            read_message(&mut reader),
            Ok(Incoming::Malformed(None))
        ));
        assert!(matches!(
            read_message(&mut reader),
            Ok(Incoming::Malformed(Some(_)))
        ));
        assert!(matches!(
            read_message(&mut reader),
            Ok(Incoming::Message(_))
        ));
        assert!(matches!(read_message(&mut reader), Ok(Incoming::End)));
    }
}
