//! A minimal HTTP/1.1 client for the project's own ports (admin ports, the client API in tools):
//! one request per connection, so every call is what a fresh client sends. Enough for JSON and
//! text answers of our axum servers; not a general client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Sends `method path` (with a bearer `token` and a JSON `body`, if any) to `addr` and reads the
/// whole answer: its status (0 if the connection closed without one) and its body. Connecting
/// and the exchange each have `timeout`; running out is an `io::ErrorKind::TimedOut` error.
pub async fn request(
    addr: impl ToSocketAddrs,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let answer = exchange(addr, &request_text(method, path, token, body), timeout).await?;
    Ok(parse_response(&answer))
}

/// The text of the request [`request`] sends: `method path` with a bearer `token` and a JSON
/// `body`, if any, on a connection of its own (`Connection: close`).
pub fn request_text(method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends the whole request `req` (as [`request_text`] writes it) to `addr` and returns the whole
/// answer as it came: status line, headers and body, for a caller that reads the headers too
/// ([`parse_headers`]). Connecting and the exchange each have `timeout`, as in [`request`].
pub async fn exchange(
    addr: impl ToSocketAddrs,
    req: &str,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    exchange_on(s, req, timeout).await
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")
}

/// [`exchange`] on a connection the caller opened (from a source address of its choosing).
pub async fn exchange_on(
    mut s: TcpStream,
    req: &str,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        s.read_to_end(&mut buf).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out())??;
    Ok(buf)
}

/// The headers of a whole HTTP/1.1 response, in order: names lower-cased, values trimmed.
pub fn parse_headers(buf: &[u8]) -> Vec<(String, String)> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..split])
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// Status and body of a whole HTTP/1.1 response (a chunked body is decoded).
pub fn parse_response(buf: &[u8]) -> (u16, String) {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let mut rest = buf.get(split + 4..).unwrap_or_default();
    if !chunked {
        return (status, String::from_utf8_lossy(rest).into_owned());
    }
    // <size in hex>\r\n<data>\r\n ... 0\r\n\r\n
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        let data = &rest[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 24\r\n\r\ndraining, 3 connections";
        assert_eq!(
            parse_response(plain),
            (503, "draining, 3 connections".to_owned())
        );
        let chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), (202, "{\"a\":1}".to_owned()));
        assert_eq!(
            parse_headers(chunked),
            [("transfer-encoding".to_owned(), "chunked".to_owned())]
        );
        assert_eq!(parse_response(b""), (0, String::new()));
    }
}
