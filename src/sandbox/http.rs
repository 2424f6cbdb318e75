//! The sandbox's HTTP/1.1 layer, written by hand so that faults a real network produces (answers
//! that never come, resets mid-answer, truncated bodies) can be produced exactly.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The biggest request accepted (head and body).
const MAX_REQUEST: usize = 64 * 1024;

/// A request as read from the connection.
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) body: Vec<u8>,
}

pub(super) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(Request, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(buf) {
            let content_length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if head_len + content_length > MAX_REQUEST {
                return None;
            }
            if buf.len() >= head_len + content_length {
                let request = Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    path: parsed.path.unwrap_or("").to_string(),
                    body: buf[head_len..head_len + content_length].to_vec(),
                };
                return Some((request, head_len + content_length));
            }
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What to send back.
pub(super) enum Reply {
    Json(u16, String),
    Raw(u16, &'static str, String),
    /// Never answer.
    Hang,
    /// Send part of the head, then reset the connection.
    Reset,
    /// Announce the whole body, send half of it, close.
    Truncated(String),
    RateLimited(Option<u64>),
}

pub(super) async fn write_reply(stream: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Json(status, body) => {
            write_full(stream, status, "application/json", &body, None).await
        }
        Reply::Raw(status, content_type, body) => {
            write_full(stream, status, content_type, &body, None).await
        }
        Reply::RateLimited(retry_after) => {
            let body = json!({"message": "Too Many Requests"}).to_string();
            write_full(stream, 429, "application/json", &body, retry_after).await
        }
        Reply::Hang => {
            // Hold the connection open without answering until the client gives up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
        Reply::Reset => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                .await?;
            stream.set_zero_linger()?;
            Err(std::io::ErrorKind::ConnectionReset.into())
        }
        Reply::Truncated(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body.as_bytes()[..body.len() / 2]).await?;
            stream.flush().await?;
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }
    }
}

async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    retry_after: Option<u64>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        466 => "Quota Exceeded",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let retry = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}; charset=utf-8\r\nContent-Length: {}\r\n{retry}\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out).await
}
