//! A user with two sockets on one gateway (a phone and a browser) who closes one keeps getting
//! their friends' moves on the other: the gateway records the disconnect only when the user's
//! last socket there ends. Found by the Redis fault test, whose fresh pages open and close
//! extra sockets of a user who keeps one open.

use nearby_system_tests::system;
use nearby_testkit::now_ms;
use nearby_testkit::pipeline::*;

#[tokio::test]
async fn closing_one_of_two_sockets_leaves_the_other_receiving() {
    let (gw, fanout) = system(&[], &[]).await;
    let (a, b, mut ca, mut phone) = connected_friends(&gw, &gw).await;
    at_home(&mut phone).await;
    let mut browser = gw.connect(b).await;
    at_home(&mut browser).await;
    report(&mut ca, north(300.0), now_ms()).await;
    location_of(&mut phone, a, 10)
        .await
        .expect("the phone sees A");
    location_of(&mut browser, a, 10)
        .await
        .expect("the browser sees A");

    drop(browser);
    // Wait until the browser's session has ended on the gateway.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    report(&mut ca, north(250.0), now_ms()).await;
    let seen = location_of(&mut phone, a, 10)
        .await
        .expect("the phone still sees A move");
    assert_distance(&seen, HOME, north(250.0));
    drop((ca, phone));
    fanout.stop().await;
    gw.stop().await;
}
