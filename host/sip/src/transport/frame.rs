//! Content-Length framing for stream transports (RFC 3261 18.3), sans-IO.

use bytes::{Bytes, BytesMut};

/// Why a stream can no longer be framed; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Headers plus Content-Length exceed the limit, or the header section alone does.
    #[error("message exceeds the {max}-byte limit")]
    TooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// Content-Length is missing a number or is not one; on a stream we cannot find the next message.
    #[error("bad Content-Length on a stream")]
    BadContentLength,
}

/// Splits the next complete message off `buf`. Leading CRLFs (RFC 5626 keep-alives) are skipped.
/// `Ok(None)` means more bytes are needed. An absent Content-Length counts as 0 (RFC 3261 20.14
/// makes it mandatory on streams; an empty body is the only safe reading).
pub fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let _ = buf.split_to(skip);
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((head_end, body_start)) = crate::message::find_header_end(buf) else {
        return if buf.len() > max {
            Err(FrameError::TooLarge { max })
        } else {
            Ok(None)
        };
    };
    let mut len = None;
    for line in buf[..head_end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let n = crate::message::parse_u32(line[colon + 1..].trim_ascii())
                .ok_or(FrameError::BadContentLength)?;
            len = Some(n as usize);
        }
    }
    let total = body_start.saturating_add(len.unwrap_or(0));
    if total > max {
        return Err(FrameError::TooLarge { max });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}
