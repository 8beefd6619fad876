//! Fanout fails closed: a user it does not hold in its friend graph (dropped from its bounded
//! memory, or a read that failed) is taken for not sharing until read again, so a friend who
//! becomes active meanwhile never gets the position of someone who turned sharing off. With a
//! graph of two entries, the user who stopped sharing is dropped before the friend arrives:
//! taking "unknown" for "sharing", as fanout once did, showed them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nearby_system_tests::{TestFanout, system};
use nearby_testkit::pipeline::*;
use nearby_testkit::{now_ms, user};

/// Reports `at` on `c` and waits (at most 20 s) until fanout has read it.
async fn report_read(c: &mut nearby_testkit::Client, fanout: &TestFanout, at: (f64, f64)) {
    let before = fanout.status.events.load(Ordering::Relaxed);
    report(c, at, now_ms()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fanout.status.events.load(Ordering::Relaxed) <= before {
        assert!(tokio::time::Instant::now() < deadline, "fanout read it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_friend_fanout_no_longer_holds_is_not_shown_if_they_stopped_sharing() {
    let (gw, fanout) = system(&[], &["--friend-cache-capacity=2"]).await;
    let (hidden, _friend, mut ch, mut cf) = connected_friends(&gw, &gw).await;
    let (code, body) = gw
        .call(
            hidden,
            "PUT",
            "/v1/me/sharing",
            Some(r#"{"enabled":false}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // The one who stopped sharing is active, then two strangers push them out of the graph.
    report_read(&mut ch, &fanout, north(300.0)).await;
    for _ in 0..2 {
        let mut stranger = gw.connect(user()).await;
        report_read(&mut stranger, &fanout, north(5_000.0)).await;
    }
    // The friend arrives, and the hidden one keeps moving nearby.
    report_read(&mut cf, &fanout, HOME).await;
    for north_m in [250.0, 200.0] {
        report_read(&mut ch, &fanout, north(north_m)).await;
    }
    let frames = drain(&mut cf, 2).await;
    assert!(
        !frames.iter().any(|f| shows(f, hidden)),
        "the friend was shown someone who does not share: {frames:?}"
    );

    // Sharing again: the friend sees them (read afresh from the store).
    let (code, _) = gw
        .call(hidden, "PUT", "/v1/me/sharing", Some(r#"{"enabled":true}"#))
        .await;
    assert_eq!(code, 200);
    report_read(&mut ch, &fanout, north(150.0)).await;
    let seen = location_of(&mut cf, hidden, 10).await;
    assert!(seen.is_some(), "shown once sharing again");
    drop((ch, cf));
    fanout.stop().await;
    gw.stop().await;
}
