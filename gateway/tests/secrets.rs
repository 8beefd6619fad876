//! A gateway outside development mode refuses to start with the public development secret
//! (what it gets when none is set) or a short one, and says what to set; in development mode
//! (`NEARBY_DEV=1`, as `scripts/run.sh` sets) it takes the development secret. The binary is
//! run with a cleared environment, so the refusal comes before it reaches for the stack.

use std::process::{Command, Output};
use std::time::Duration;

/// Runs the gateway binary with only `env` set and waits (at most 20 s) for it to exit.
fn gateway_with(env: &[(&str, &str)]) -> Option<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nearby-gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Ports 0: nothing of this machine's is taken, should it get that far.
    cmd.env("NEARBY_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("NEARBY_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("NEARBY_STARTUP_TIMEOUT", "2s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the gateway binary");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn without_a_secret_the_gateway_refuses_to_start_and_says_what_to_set() {
    let out = gateway_with(&[]).expect("the gateway exits by itself");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("NEARBY_JWT_SECRET") && said.contains("NEARBY_DEV=1"),
        "{said}"
    );
}

#[test]
fn a_short_secret_is_refused_outside_development_mode() {
    let out = gateway_with(&[("NEARBY_JWT_SECRET", "only-20-bytes-long!!")])
        .expect("the gateway exits by itself");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("NEARBY_JWT_SECRET is 20 bytes"), "{said}");
}

#[test]
fn in_development_mode_the_development_secret_gets_past_the_check() {
    // With no stack to reach (port 1), it gives up later, on the stack, not on the secret.
    let out = gateway_with(&[
        ("NEARBY_DEV", "1"),
        ("NEARBY_KAFKA_BROKERS", "127.0.0.1:1"),
        ("NEARBY_CQL_NODES", "127.0.0.1:1"),
        ("NEARBY_REDIS_URL", "redis://127.0.0.1:1/"),
    ])
    .expect("the gateway gives up on the stack by itself");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(!said.contains("NEARBY_JWT_SECRET is"), "{said}");
    assert!(said.contains("development mode"), "{said}");
}
