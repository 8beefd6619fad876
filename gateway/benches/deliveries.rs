//! The gateway's delivery path, per delivery: building a `friend_location` frame, and a whole
//! delivery record (27 deliveries, a default-scenario report's worth) decoded, rendered and
//! written to 27 real loopback sockets, whose other ends a task reads and discards. The socket
//! write is most of it, as for the push baseline's servers: the kernel does both ends' TCP
//! work in the writer's time on loopback.
//!
//! `cargo bench -p nearby-gateway --bench deliveries -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use nearby_common::metrics::Counter;
use nearby_common::users::Profile;
use nearby_gateway::deliveries::{self, Dispatcher, Names};
use nearby_gateway::protocol::DeliveryFrame;
use nearby_gateway::registry::{Connection, Registry};
use nearby_gateway::writer::SocketWriter;
use nearby_gateway::wsframe::FrameBuilder;
use nearby_schemas::{Delivery, DeliveryBatch, DeliveryPayload, FriendLocation};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Recipients of one record: a report's deliveries in the default scenario (27 per report).
const RECIPIENTS: i64 = 27;
const FRIEND: i64 = 9_000_000_001;

fn frame(c: &mut Criterion) {
    let mut builder = FrameBuilder::with_capacity(1 << 16);
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("friend_location", |b| {
        let mut id = itoa::Buffer::new();
        b.iter(|| {
            builder.reserve(256);
            let frame = DeliveryFrame::FriendLocation {
                user_id: id.format(black_box(FRIEND)),
                name: "Ana María",
                lat: 48.856_613,
                lon: 2.352_222,
                distance_m: 1234.57,
                updated_at: 1_764_057_600_000,
            };
            black_box(builder.text(&frame))
        });
    });
    group.finish();
}

/// A registry of `RECIPIENTS` connections over loopback sockets, each drained by a task of
/// `rt` (whose worker also drives the sockets' readiness).
fn registry(rt: &tokio::runtime::Runtime) -> Registry {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let registry = Registry::default();
        for user in 0..RECIPIENTS {
            let phone = TcpStream::connect(addr).await.expect("connects");
            let (server, _) = listener.accept().await.expect("accepts");
            server.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut phone = phone;
                let mut buf = vec![0; 64 << 10];
                while matches!(phone.read(&mut buf).await, Ok(n) if n > 0) {}
            });
            let (_read, write) = server.into_split();
            registry.insert(Arc::new(Connection {
                user,
                session_id: user.to_string(),
                writer: Arc::new(SocketWriter::new(write, 64, Counter::default())),
                told_to_reconnect: tokio::sync::Notify::new(),
                ping_slot: 0,
            }));
        }
        registry
    })
}

fn record(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = registry(&rt);
    let batch = DeliveryBatch {
        deliveries: (0..RECIPIENTS)
            .map(|r| Delivery {
                recipient_id: r,
                payload: DeliveryPayload::FriendLocation(FriendLocation {
                    friend_id: FRIEND,
                    lat: 48.856_613,
                    lon: 2.352_222,
                    distance_m: 1000.0 + r as f64,
                    updated_at: 1_764_057_600_000,
                }),
            })
            .collect(),
    };
    let bytes = nearby_schemas::to_vec(&batch).expect("encodes");
    let mut names = Names::default();
    names.insert(
        FRIEND,
        Some(Arc::new(Profile {
            user_id: FRIEND,
            name: "Ana María".into(),
            avatar_url: None,
            sharing: true,
            created_at: 0,
        })),
    );
    let mut dispatcher = Dispatcher::default();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    group.bench_function("decode_render", |b| {
        b.iter(|| {
            let deliveries = deliveries::decode(black_box(&bytes)).expect("decodes");
            dispatcher.render(&deliveries, &names);
        });
    });
    group.bench_function("decode_render_write_27_sockets", |b| {
        b.iter(|| {
            let deliveries = deliveries::decode(black_box(&bytes)).expect("decodes");
            dispatcher.render(&deliveries, &names);
            black_box(dispatcher.dispatch(&registry))
        });
    });
    group.finish();
    let queued: usize = registry.queued_frames();
    eprintln!("frames left queued (sockets that were full at some point): {queued}");
}

criterion::criterion_group!(benches, frame, record);
criterion::criterion_main!(benches);
