//! The wire: `Content-Length` framed JSON-RPC messages on a byte stream.
//!
//! lsp-server's own stdio transport ends the session at the first malformed frame; this reader
//! skips what it cannot read and says so through a log callback instead, so a confused or
//! hostile client cannot take the server down: header lines that are not UTF-8 or longer than
//! [`MAX_HEADER_LINE`] are skipped without being kept in memory, a body longer than
//! [`MAX_BODY`] is read past without being kept, and a body that is not a JSON-RPC message is
//! skipped (answered with `InvalidRequest` when it has an id).

use lsp_server::{ErrorCode, Message, Request, RequestId, Response};
use serde_json::Value;
use std::io::{self, BufRead, Read, Write};

/// The longest header line kept (8 KiB); the headers a client sends are a few dozen bytes.
pub const MAX_HEADER_LINE: usize = 8 * 1024;

/// The largest body kept (64 MiB): 64 times the largest spec file the checker reads, so a
/// `didOpen` of any checkable spec fits even with JSON escapes.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

/// What one read from the stream gave.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed message.
    Message(Message),
    /// A body that is not a valid JSON-RPC message but has an id: the error to answer it with.
    Invalid(Response),
    /// The stream ended.
    End,
}

/// Reads frames from `reader` until one holds a message or an invalid request that has an id,
/// or the stream ends. Each thing skipped on the way is described to `log`.
pub fn read_message(
    reader: &mut impl BufRead,
    log: &mut impl FnMut(String),
) -> io::Result<Incoming> {
    loop {
        let Some(length) = read_headers(reader, log)? else {
            return Ok(Incoming::End);
        };
        if length > MAX_BODY {
            log(format!(
                "skipped a message of {length} bytes: the limit is {MAX_BODY} bytes"
            ));
            let skipped = io::copy(&mut reader.take(length), &mut io::sink())?;
            if skipped < length {
                return Ok(Incoming::End);
            }
            continue;
        }
        let mut body = Vec::new();
        reader.take(length).read_to_end(&mut body)?;
        if (body.len() as u64) < length {
            return Ok(Incoming::End);
        }
        match classify(&body) {
            Ok(message) => return Ok(Incoming::Message(message)),
            Err((answer, reason)) => {
                log(format!("skipped a malformed message: {reason}"));
                if let Some(id) = answer {
                    return Ok(Incoming::Invalid(Response::new_err(
                        id,
                        ErrorCode::InvalidRequest as i32,
                        format!("not a json-rpc request: {reason}"),
                    )));
                }
            }
        }
    }
}

/// Reads header lines up to the blank line that ends a frame's headers and returns its
/// `Content-Length`, or `None` at the end of the stream. Blank lines before a `Content-Length`
/// header, and lines that are not headers, are skipped.
fn read_headers(
    reader: &mut impl BufRead,
    log: &mut impl FnMut(String),
) -> io::Result<Option<u64>> {
    let mut content_length: Option<u64> = None;
    let mut line = Vec::new();
    loop {
        match read_line(reader, &mut line)? {
            Line::End => return Ok(None),
            Line::TooLong => {
                log(format!(
                    "skipped a header line longer than {MAX_HEADER_LINE} bytes"
                ));
                continue;
            }
            Line::Read => {}
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            log("skipped a header line that is not UTF-8".to_string());
            continue;
        };
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if content_length.is_some() {
                return Ok(content_length);
            }
            continue;
        }
        // The header is found anywhere in the line, so that a frame right after a body that
        // was shorter than its length (and so ran into the next header) is still read.
        let lower = text.to_ascii_lowercase();
        match lower.find("content-length:") {
            Some(at) => {
                let value = text[at + "content-length:".len()..].trim();
                content_length = value.parse().ok();
                if content_length.is_none() {
                    log(format!(
                        "skipped a frame whose Content-Length `{value}` is not a size"
                    ));
                }
            }
            None if text.contains(':') => {}
            None => log("skipped a line that is not a header".to_string()),
        }
    }
}

/// How reading one line ended.
enum Line {
    /// A line is in the buffer, with its `\n` unless the stream ended first.
    Read,
    /// The line was longer than [`MAX_HEADER_LINE`]; it was read past, not kept.
    TooLong,
    /// The stream ended before any byte.
    End,
}

/// Reads one line into `line` (cleared first), keeping at most [`MAX_HEADER_LINE`] bytes.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let limit = MAX_HEADER_LINE as u64 + 1;
    let n_read = reader.by_ref().take(limit).read_until(b'\n', line)?;
    if n_read == 0 {
        return Ok(Line::End);
    }
    if line.len() <= MAX_HEADER_LINE || line.last() == Some(&b'\n') {
        return Ok(Line::Read);
    }
    line.clear();
    skip_line(reader)?;
    Ok(Line::TooLong)
}

/// Reads past the rest of a line without keeping it.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&byte| byte == b'\n') {
            Some(idx) => {
                reader.consume(idx + 1);
                return Ok(());
            }
            None => {
                let n = buffer.len();
                reader.consume(n);
            }
        }
    }
}

/// A body as a message, or why it is not one and the id to answer, if it has a usable one.
///
/// lsp-server's `Message` reads `{"id": 7, "method": 5}` as a response without a result, so
/// the shape is checked here first: a message with a `method` must name it with a string, and
/// one without must be a response with a `result` or an `error`.
fn classify(body: &[u8]) -> Result<Message, (Option<RequestId>, String)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|err| (None, format!("not JSON: {err}")))?;
    let Value::Object(object) = &value else {
        return Err((None, "not a JSON object".to_string()));
    };
    let id = object
        .get("id")
        .filter(|id| !id.is_null())
        .map(|id| serde_json::from_value::<RequestId>(id.clone()));
    let usable_id = match &id {
        Some(Ok(id)) => Some(id.clone()),
        _ => None,
    };
    let invalid = |reason: String| Err((usable_id.clone(), reason));
    if let Some(Err(_)) = id {
        return Err((
            None,
            "the id is neither a whole number nor a string".to_string(),
        ));
    }
    match object.get("method") {
        Some(Value::String(_)) if id.is_some() => serde_json::from_value::<Request>(value)
            .map(Message::Request)
            .or_else(|err| invalid(err.to_string())),
        Some(Value::String(_)) => serde_json::from_value(value)
            .map(Message::Notification)
            .map_err(|err| (None, err.to_string())),
        Some(_) => invalid("the method is not a string".to_string()),
        None if id.is_some() && (object.contains_key("result") || object.contains_key("error")) => {
            serde_json::from_value::<Response>(value)
                .map(Message::Response)
                .or_else(|err| invalid(err.to_string()))
        }
        None if id.is_some() => invalid("no method, result or error".to_string()),
        None => Err((None, "no method and no id".to_string())),
    }
}

/// Writes one framed message to `writer` and flushes it.
pub fn write_message(writer: &mut impl Write, message: Message) -> io::Result<()> {
    message.write(writer)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: Vec<u8>) -> (Vec<Incoming>, Vec<String>) {
        let mut reader = io::Cursor::new(stream);
        let mut notes = Vec::new();
        let mut found = Vec::new();
        loop {
            let incoming = read_message(&mut reader, &mut |note| notes.push(note));
            match incoming {
                Ok(Incoming::End) | Err(_) => return (found, notes),
                Ok(incoming) => found.push(incoming),
            }
        }
    }

    fn frame(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn skips_malformed_frames_and_reads_the_next() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#;
        let bad = r#"{"jsonrpc":"2.0","id":3,"error":"boom"}"#;
        let stream = format!("{}{}{}", frame("{{{{{"), frame(bad), frame(good));
        let (found, notes) = read_all(stream.into_bytes());
        assert!(matches!(found[0], Incoming::Invalid(_)), "{found:?}");
        assert!(matches!(found[1], Incoming::Message(_)), "{found:?}");
        assert_eq!(found.len(), 2);
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn a_method_that_is_not_a_string_is_an_invalid_request() {
        let (found, _) = read_all(frame(r#"{"id":77,"method":5}"#).into_bytes());
        let [Incoming::Invalid(response)] = found.as_slice() else {
            panic!("{found:?}");
        };
        assert_eq!(response.id, RequestId::from(77));
        let error = response.error.as_ref().map(|error| error.code);
        assert_eq!(error, Some(ErrorCode::InvalidRequest as i32));
    }

    #[test]
    fn bad_header_lines_are_skipped_and_the_frame_is_still_read() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized"}"#;
        let mut stream = b"\xff\xfe garbage\r\n".to_vec();
        stream.extend(vec![b'x'; MAX_HEADER_LINE * 3]);
        stream.extend(b"\r\n");
        stream.extend(frame(good).into_bytes());
        let (found, notes) = read_all(stream);
        assert!(
            matches!(found.as_slice(), [Incoming::Message(_)]),
            "{found:?}"
        );
        assert!(notes[0].contains("not UTF-8"), "{notes:?}");
        assert!(notes[1].contains("longer than"), "{notes:?}");
    }

    #[test]
    fn a_body_over_the_limit_is_read_past() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized"}"#;
        let length = MAX_BODY + 1;
        let mut stream = format!("Content-Length: {length}\r\n\r\n").into_bytes();
        stream.resize(stream.len() + length as usize, b' ');
        stream.extend(frame(good).into_bytes());
        let (found, notes) = read_all(stream);
        assert!(
            matches!(found.as_slice(), [Incoming::Message(_)]),
            "{found:?}"
        );
        assert!(notes[0].contains("limit"), "{notes:?}");
    }
}
