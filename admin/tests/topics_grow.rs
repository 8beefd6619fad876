//! `nearby-admin topics grow` against the real broker: without `--yes` it prints the plan and
//! changes nothing, with `--yes` the location topic has the asked partitions, and a count that
//! is not more than the current one (or a missing topic) is refused with a clear message.

use nearby_common::kafka;
use nearby_testkit::process::{admin, stdout};
use nearby_testkit::topics::{create_topic, delete_topic};
use nearby_testkit::{brokers, topic_prefix};

/// The partition count the broker reports now, asked independently of the tool.
async fn partitions(topic: &str) -> i32 {
    let client = kafka::admin_client(&brokers()).expect("admin client");
    kafka::describe_topic(&client, topic)
        .await
        .expect("describe")
        .0
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn grow_prints_the_plan_then_adds_partitions_and_refuses_fewer() {
    let prefix = topic_prefix();
    let topic = format!("{prefix}.location-updates");
    create_topic(&topic, 3).await;

    // Without --yes: the plan and its consequences, and nothing changes.
    let plan = stdout(&admin(
        &prefix,
        &["topics", "grow", "--location-partitions", "6"],
    ));
    assert!(
        plan.contains(&format!(
            "plan: {topic}: 3 -> 6 partitions (adds partitions 3..=5)"
        )),
        "{plan}"
    );
    // 3 -> 6 moves exactly the users whose hash mod 6 is 3, 4 or 5: half of them.
    assert!(plan.contains("for about 50% of users"), "{plan}");
    for consequence in [
        "keys move",
        "only by their timestamps",
        "within ~10 s",
        "history sink's group rebalances",
        "cannot be removed",
        "nothing changed: run again with --yes",
    ] {
        assert!(plan.contains(consequence), "no {consequence:?} in:\n{plan}");
    }
    assert_eq!(partitions(&topic).await, 3, "the plan changed the topic");

    // With --yes: the topic has 6 partitions, and the tool says so.
    let done = stdout(&admin(
        &prefix,
        &["topics", "grow", "--location-partitions", "6", "--yes"],
    ));
    assert!(
        done.lines()
            .any(|l| l == format!("grew {topic}: 3 -> 6 partitions")),
        "{done}"
    );
    assert_eq!(partitions(&topic).await, 6);

    // Not more than now: refused, with or without --yes, and the topic is left as it is.
    for asked in ["6", "4"] {
        let out = admin(
            &prefix,
            &["topics", "grow", "--location-partitions", asked, "--yes"],
        );
        assert!(!out.status.success(), "grow to {asked} was not refused");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "refused: {topic} has 6 partitions and --location-partitions {asked} is not more"
            )),
            "{err}"
        );
        assert!(err.contains("can only be added"), "{err}");
    }
    assert_eq!(partitions(&topic).await, 6);

    delete_topic(&topic).await;
}

#[test]
fn a_missing_topic_is_refused() {
    let prefix = topic_prefix();
    let out = admin(
        &prefix,
        &["topics", "grow", "--location-partitions", "6", "--yes"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("topic {prefix}.location-updates does not exist")),
        "{err}"
    );
    assert!(err.contains("nearby-admin topics create"), "{err}");
}
