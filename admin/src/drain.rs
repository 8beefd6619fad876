//! `nearby-admin drain`: takes a gateway out of service through its admin port (`POST /drain`),
//! prints what the gateway answered, and with `--wait` follows it (`GET /readyz`) until the
//! gateway has stopped: its admin port no longer answers.
//!
//! The gateway's admin port speaks plain HTTP/1.1; one request per connection over a Tokio
//! socket is all this needs, so no HTTP client library is pulled in.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long connecting to, and then hearing from, the admin port may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--wait` asks `/readyz`.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often `--wait` prints the connections left (and whenever the state changes).
const PRINT_EVERY: Duration = Duration::from_secs(5);

/// `drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The gateway's admin port, `host:port` (its `NEARBY_GATEWAY_ADMIN_LISTEN`, 9080 by default).
    #[arg(long, value_name = "ADDR")]
    pub gateway_admin: String,

    /// Spread the clients' `reconnect` over this long, e.g. `30s`, `2m` (at most 1h); the
    /// gateway's `NEARBY_DRAIN_WINDOW` when not given.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,

    /// Wait until the gateway has stopped (its admin port no longer answers), printing the
    /// connections left every few seconds.
    #[arg(long)]
    pub wait: bool,

    /// With `--wait`: give up (and fail) after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What the gateway answered to `POST /drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainAnswer {
    /// Sockets open when the drain was asked.
    pub connections: u64,
    /// The window the `reconnect` frames are spread over (a drain already under way keeps its
    /// first window).
    pub window: Duration,
    /// How long a session still takes its client's reports after the `reconnect`.
    pub grace: Duration,
}

/// What `GET /readyz` showed while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// 503 `draining, N connections`.
    Draining(u64),
    /// 503 `stopping`: the sockets are gone, the gateway is closing down.
    Stopping,
    /// The port no longer takes connections: the gateway has exited.
    Gone,
    /// Anything else (a 200 means a gateway that is not draining answers there).
    Other(u16, String),
}

/// Runs `drain`.
pub async fn run(args: &DrainArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let addr = args
        .gateway_admin
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let answer = start(addr, args.window).await?;
    writeln!(
        out,
        "gateway at {addr} is draining: {} connections, reconnects spread over {}, then up to {} each for the client to close",
        answer.connections,
        humantime::format_duration(answer.window),
        humantime::format_duration(answer.grace),
    )?;
    if !args.wait {
        writeln!(
            out,
            "it stops by itself once its sockets are gone (at the latest {} from now); follow it with --wait",
            humantime::format_duration(answer.window + answer.grace + Duration::from_secs(1)),
        )?;
        return Ok(());
    }
    out.flush()?;
    wait(addr, args.timeout, out).await
}

/// `POST /drain` (with the window, if given) and its answer.
pub async fn start(addr: &str, window: Option<Duration>) -> anyhow::Result<DrainAnswer> {
    let path = match window {
        // Milliseconds: exact, and a single token that needs no escaping in a query.
        Some(w) => format!("/drain?window={}ms", w.as_millis()),
        None => "/drain".to_owned(),
    };
    let (status, body) = match call(addr, "POST", &path).await? {
        Some(answer) => answer,
        None => bail!("no gateway admin port at {addr} (connection refused)"),
    };
    if status != 202 {
        let hint = if status == 404 || status == 405 {
            ": is it a gateway's admin port? (fanout's and the history sink's have no drain)"
        } else {
            ""
        };
        bail!(
            "gateway at {addr} refused the drain: {status} {}{hint}",
            body.trim()
        );
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("gateway at {addr}: unexpected answer to POST /drain: {body}"))?;
    let ms = |key: &str| v[key].as_u64().map(Duration::from_millis);
    match (v["connections"].as_u64(), ms("window_ms"), ms("grace_ms")) {
        (Some(connections), Some(window), Some(grace)) if v["draining"] == true => {
            Ok(DrainAnswer {
                connections,
                window,
                grace,
            })
        }
        _ => bail!("gateway at {addr}: unexpected answer to POST /drain: {body}"),
    }
}

/// Follows `/readyz` until the port stops answering, printing the connections left.
async fn wait(addr: &str, timeout: Duration, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last: Option<(Readiness, Instant)> = None;
    loop {
        let now = readiness(addr).await?;
        let elapsed = humantime::format_duration(Duration::from_millis(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ));
        match &now {
            Readiness::Gone => {
                writeln!(
                    out,
                    "gateway at {addr} has stopped (its admin port no longer answers) after {elapsed}"
                )?;
                return Ok(());
            }
            Readiness::Other(200, body) => bail!(
                "gateway at {addr} answers ready ({}): not draining; was it restarted?",
                body.trim()
            ),
            Readiness::Other(status, body) => bail!(
                "gateway at {addr}: unexpected answer to GET /readyz: {status} {}",
                body.trim()
            ),
            Readiness::Draining(_) | Readiness::Stopping => {}
        }
        let print = match &last {
            None => true,
            Some((before, at)) => *before != now || at.elapsed() >= PRINT_EVERY,
        };
        if print {
            match now {
                Readiness::Draining(n) => writeln!(out, "{elapsed}: {n} connections left")?,
                _ => writeln!(out, "{elapsed}: no connection left, stopping")?,
            }
            out.flush()?;
            last = Some((now, Instant::now()));
        }
        if Instant::now() >= deadline {
            bail!(
                "gateway at {addr} still running after {} (--timeout): see its /readyz and log",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn readiness(addr: &str) -> anyhow::Result<Readiness> {
    let Some((status, body)) = call(addr, "GET", "/readyz").await? else {
        return Ok(Readiness::Gone);
    };
    let text = body.trim();
    Ok(match status {
        503 if text == "stopping" => Readiness::Stopping,
        503 => match text
            .strip_prefix("draining, ")
            .and_then(|s| s.strip_suffix(" connections"))
            .and_then(|n| n.parse().ok())
        {
            Some(n) => Readiness::Draining(n),
            None => Readiness::Other(status, body),
        },
        // Accepted, then closed without an answer: the server is closing down.
        0 => Readiness::Stopping,
        _ => Readiness::Other(status, body),
    })
}

/// One HTTP/1.1 request on a fresh connection: `None` if the connection is refused, else the
/// status (0 if the connection closed without an answer) and the body.
async fn call(addr: &str, method: &str, path: &str) -> anyhow::Result<Option<(u16, String)>> {
    let mut s = match tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => bail!(
            "gateway admin port at {addr}: no connection within {}",
            humantime::format_duration(CALL_TIMEOUT)
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("connecting to gateway admin port at {addr}"));
        }
        Ok(Ok(s)) => s,
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        s.read_to_end(&mut buf).await
    };
    match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
        Err(_) => bail!(
            "{method} {path} at {addr}: no answer within {}",
            humantime::format_duration(CALL_TIMEOUT)
        ),
        // Reset while the server closes down: no answer, as an empty one.
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            return Ok(Some((0, String::new())));
        }
        Ok(Err(e)) => return Err(e).with_context(|| format!("{method} {path} at {addr}")),
        Ok(Ok(_)) => {}
    }
    Ok(Some(parse_response(&buf)))
}

/// Status and body of a whole HTTP/1.1 response (a chunked body is decoded).
fn parse_response(buf: &[u8]) -> (u16, String) {
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
        assert_eq!(parse_response(b""), (0, String::new()));
    }
}
