//! `nearby-admin drain`: takes a gateway out of service through its admin port (`POST /drain`),
//! prints what the gateway answered, and with `--wait` follows it (`GET /readyz`) until the
//! gateway has stopped: its admin port no longer answers.
//!
//! The gateway's admin port speaks plain HTTP/1.1: the project's minimal client
//! (`nearby_common::http`) is all this needs.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
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

    /// The gateway's admin token (its `NEARBY_ADMIN_TOKEN`): a drain needs it.
    #[arg(long, env = "NEARBY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

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
    let answer = start(addr, args.window, args.admin_token.as_deref()).await?;
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

/// `POST /drain` (with the window, if given, and the admin token) and its answer.
pub async fn start(
    addr: &str,
    window: Option<Duration>,
    token: Option<&str>,
) -> anyhow::Result<DrainAnswer> {
    let path = match window {
        // Milliseconds: exact, and a single token that needs no escaping in a query.
        Some(w) => format!("/drain?window={}ms", w.as_millis()),
        None => "/drain".to_owned(),
    };
    let (status, body) = match call(addr, "POST", &path, token).await? {
        Some(answer) => answer,
        None => bail!("no gateway admin port at {addr} (connection refused)"),
    };
    if status != 202 {
        let hint = match status {
            404 | 405 => {
                ": is it a gateway's admin port? (fanout's and the history sink's have no drain)"
            }
            401 if token.is_none() => {
                ": give the gateway's admin token (--admin-token or NEARBY_ADMIN_TOKEN)"
            }
            _ => "",
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
    let Some((status, body)) = call(addr, "GET", "/readyz", None).await? else {
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
/// status (0 if the connection closed without an answer, or was reset while the server closes
/// down) and the body.
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Option<(u16, String)>> {
    use std::io::ErrorKind;
    match nearby_common::http::request(addr, method, path, token, "", CALL_TIMEOUT).await {
        Ok(answer) => Ok(Some(answer)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(None),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            Ok(Some((0, String::new())))
        }
        Err(e) if e.kind() == ErrorKind::TimedOut => bail!(
            "{method} {path} at gateway admin port {addr}: no answer within {}",
            humantime::format_duration(CALL_TIMEOUT)
        ),
        Err(e) => Err(e).with_context(|| format!("{method} {path} at gateway admin port {addr}")),
    }
}
