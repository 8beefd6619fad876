//! The user store against the real CQL store: profiles on first sight, the friendship state
//! machine from both sides, races between two people acting at once, and the friend cap.

use futures::StreamExt;
use nearby_common::users::{
    self, FriendState, MAX_FRIENDS, ProfileUpdate, RemoveOutcome, RequestOutcome, UserStore,
};
use nearby_common::{Error, UserId};
use nearby_testkit::{cql_nodes, unique};

async fn store() -> (UserStore, String) {
    let session = nearby_common::cql::connect(&cql_nodes())
        .await
        .expect("cql session");
    let keyspace = unique("test_users_");
    users::create_schema(&session, &keyspace, 1)
        .await
        .expect("schema");
    (
        UserStore::new(session, &keyspace).await.expect("prepare"),
        keyspace,
    )
}

fn ids<const N: usize>() -> [UserId; N] {
    std::array::from_fn(|_| i64::from(rand::random::<u32>()) + 1)
}

async fn states(store: &UserStore, user: UserId) -> Vec<(UserId, FriendState)> {
    store
        .friends(user)
        .await
        .expect("friends")
        .into_iter()
        .map(|e| (e.friend_id, e.state))
        .collect()
}

#[tokio::test]
async fn a_profile_is_created_on_first_sight_and_kept() {
    let (store, _) = store().await;
    let [u] = ids();
    assert!(store.profile(u).await.expect("read").is_none());
    let first = store.ensure_profile(u).await.expect("create");
    assert_eq!(first.name, u.to_string());
    assert!(first.sharing);
    assert_eq!(store.ensure_profile(u).await.expect("again"), first);

    let updated = store
        .update_profile(
            u,
            &ProfileUpdate {
                name: Some("Ana".into()),
                avatar_url: Some(Some("https://example.invalid/a.png".into())),
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.name, "Ana");
    assert_eq!(
        updated.avatar_url.as_deref(),
        Some("https://example.invalid/a.png")
    );
    store.set_sharing(u, false).await.expect("sharing off");
    assert!(
        !store
            .profile(u)
            .await
            .expect("read")
            .expect("exists")
            .sharing
    );
}

#[tokio::test]
async fn ask_then_accept_makes_both_friends() {
    let (store, _) = store().await;
    let [a, b] = ids();
    for u in [a, b] {
        store.ensure_profile(u).await.expect("profile");
    }
    assert_eq!(
        store.request(a, b).await.expect("ask"),
        RequestOutcome::Requested
    );
    assert_eq!(states(&store, a).await, vec![(b, FriendState::Outgoing)]);
    assert_eq!(states(&store, b).await, vec![(a, FriendState::Incoming)]);
    // A request alone makes nobody a friend.
    assert!(store.accepted_friends(a).await.expect("list").is_empty());
    assert!(store.accepted_friends(b).await.expect("list").is_empty());
    assert_eq!(
        store.request(a, b).await.expect("ask again"),
        RequestOutcome::AlreadyRequested
    );

    assert_eq!(
        store.request(b, a).await.expect("accept"),
        RequestOutcome::Accepted
    );
    assert_eq!(store.accepted_friends(a).await.expect("list"), vec![b]);
    assert_eq!(store.accepted_friends(b).await.expect("list"), vec![a]);
    assert_eq!(
        store.request(a, b).await.expect("again"),
        RequestOutcome::AlreadyFriends
    );

    assert_eq!(
        store.remove(b, a).await.expect("unfriend"),
        RemoveOutcome::Unfriended
    );
    assert!(states(&store, a).await.is_empty());
    assert!(states(&store, b).await.is_empty());
    assert_eq!(
        store.remove(a, b).await.expect("nothing"),
        RemoveOutcome::NotFound
    );
}

#[tokio::test]
async fn withdraw_and_decline_leave_nothing_behind() {
    let (store, _) = store().await;
    let [a, b, c] = ids();
    for u in [a, b, c] {
        store.ensure_profile(u).await.expect("profile");
    }
    store.request(a, b).await.expect("ask");
    assert_eq!(
        store.remove(a, b).await.expect("withdraw"),
        RemoveOutcome::Withdrawn
    );
    store.request(c, a).await.expect("ask");
    assert_eq!(
        store.remove(a, c).await.expect("decline"),
        RemoveOutcome::Declined
    );
    for u in [a, b, c] {
        assert!(states(&store, u).await.is_empty(), "{u} still has entries");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let (store, _) = store().await;
    let [a, stranger] = ids();
    store.ensure_profile(a).await.expect("profile");
    assert!(matches!(
        store.request(a, a).await,
        Err(Error::SelfFriendship)
    ));
    assert!(
        matches!(store.request(a, stranger).await, Err(Error::UnknownUser(u)) if u == stranger)
    );
}

#[tokio::test]
async fn two_people_asking_each_other_at_once_end_up_friends() {
    let (store, _) = store().await;
    for _ in 0..5 {
        let [a, b] = ids();
        for u in [a, b] {
            store.ensure_profile(u).await.expect("profile");
        }
        let (x, y) = tokio::join!(store.request(a, b), store.request(b, a));
        let mut outcomes = [x.expect("a asks"), y.expect("b asks")];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            [RequestOutcome::Accepted, RequestOutcome::Requested]
        );
        assert_eq!(states(&store, a).await, vec![(b, FriendState::Accepted)]);
        assert_eq!(states(&store, b).await, vec![(a, FriendState::Accepted)]);
    }
}

#[tokio::test]
async fn a_full_friend_list_refuses_new_requests() {
    let (store, keyspace) = store().await;
    let [full, other] = ids();
    for u in [full, other] {
        store.ensure_profile(u).await.expect("profile");
    }
    // Fill `full`'s list directly: 5,000 accepted entries.
    let session = nearby_common::cql::connect(&cql_nodes())
        .await
        .expect("cql");
    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.friends_by_user (user_id, friend_id, state) VALUES (?, ?, 'accepted')"
        ))
        .await
        .expect("prepare");
    let cap = i64::try_from(MAX_FRIENDS).expect("fits");
    futures::stream::iter(0..cap)
        .map(|i| {
            let (session, insert) = (&session, &insert);
            async move {
                session
                    .execute_unpaged(insert, (full, 10_000_000_000 + i))
                    .await
            }
        })
        .buffer_unordered(64)
        .for_each(|r| async move {
            r.expect("insert");
        })
        .await;
    let err = store.request(other, full).await.expect_err("cap");
    assert!(
        matches!(err, Error::FriendCap { user, cap } if user == full && cap == MAX_FRIENDS),
        "{err}"
    );
    assert!(
        states(&store, other).await.is_empty(),
        "nothing written for a refused request"
    );
}

#[tokio::test]
async fn bulk_setup_writes_profiles_and_accepted_pairs_the_api_reads_back() {
    let (store, _) = store().await;
    let [a, b, c] = ids();
    store
        .bulk_create_profiles(&[a, b, c], 2)
        .await
        .expect("profiles");
    for u in [a, b, c] {
        let p = store.profile(u).await.expect("read").expect("created");
        assert_eq!(p.name, u.to_string());
        assert!(p.sharing);
    }
    store
        .bulk_befriend(&[(a, b), (c, a)], 2)
        .await
        .expect("pairs");
    let mut of_a = store.accepted_friends(a).await.expect("a");
    of_a.sort_unstable();
    let mut want = vec![b, c];
    want.sort_unstable();
    assert_eq!(of_a, want);
    assert_eq!(states(&store, b).await, vec![(a, FriendState::Accepted)]);
    assert_eq!(states(&store, c).await, vec![(a, FriendState::Accepted)]);
    // The pair rows are the truth the state machine reads: asking again says "already friends".
    assert_eq!(
        store.request(b, a).await.expect("request"),
        RequestOutcome::AlreadyFriends
    );
    assert!(matches!(
        store.bulk_befriend(&[(a, a)], 1).await,
        Err(Error::SelfFriendship)
    ));
}
