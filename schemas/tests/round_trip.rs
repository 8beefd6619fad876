//! Every record type and every union variant survives encode then decode, in both framings.

mod common;

use nearby_schemas::{Catalog, Delivery, DeliveryBatch, FriendshipEvent, LocationEvent, Record};

fn round_trip<T: Record + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = nearby_schemas::to_vec(value).unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(nearby_schemas::decode::<T>(&bytes).unwrap(), *value);

    // The same record with schema-registry framing, once its id is registered.
    let mut catalog = Catalog::with_published();
    catalog.register_id(17, published_text::<T>()).unwrap();
    let mut framed = Vec::new();
    catalog.encode_for_registry(value, &mut framed).unwrap();
    assert_eq!(&framed[..5], &[0, 0, 0, 0, 17]);
    assert_eq!(
        &framed[5..],
        &bytes[10..],
        "the datum does not depend on the framing"
    );
    assert_eq!(catalog.decode::<T>(&framed).unwrap(), *value);
}

fn published_text<T: Record>() -> &'static str {
    nearby_schemas::published::FILES
        .iter()
        .find(|f| {
            nearby_schemas::fingerprint::schema_fingerprint(f.avsc).unwrap()
                == T::schema().fingerprint()
        })
        .unwrap()
        .avsc
}

#[test]
fn location_events_round_trip() {
    for event in common::location_events() {
        round_trip::<LocationEvent>(&event);
    }
}

#[test]
fn deliveries_round_trip() {
    for delivery in common::deliveries() {
        round_trip::<Delivery>(&delivery);
    }
}

#[test]
fn delivery_batches_round_trip() {
    let all = common::deliveries();
    for n in [1, 2, all.len()] {
        let batch = DeliveryBatch {
            deliveries: all[..n].to_vec(),
        };
        round_trip::<DeliveryBatch>(&batch);
    }
}

#[test]
fn a_batch_is_not_read_as_a_single_delivery_nor_the_other_way() {
    let one = common::deliveries().remove(0);
    let batch = nearby_schemas::to_vec(&DeliveryBatch {
        deliveries: vec![one],
    })
    .unwrap();
    assert!(nearby_schemas::decode::<Delivery>(&batch).is_err());
    let single = nearby_schemas::to_vec(&one).unwrap();
    assert!(nearby_schemas::decode::<DeliveryBatch>(&single).is_err());
}

#[test]
fn friendship_events_round_trip() {
    for event in common::friendship_events() {
        round_trip::<FriendshipEvent>(&event);
    }
}

#[test]
fn encode_appends_to_a_reused_buffer() {
    let events = common::location_events();
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for event in &events {
        nearby_schemas::encode(event, &mut buf).unwrap();
        ends.push(buf.len());
    }
    let mut start = 0;
    for (event, end) in events.iter().zip(ends) {
        assert_eq!(
            nearby_schemas::decode::<LocationEvent>(&buf[start..end]).unwrap(),
            *event
        );
        start = end;
    }
    // Cleared and reused: the same bytes as a fresh buffer.
    buf.clear();
    nearby_schemas::encode(&events[0], &mut buf).unwrap();
    assert_eq!(buf, nearby_schemas::to_vec(&events[0]).unwrap());
}

#[test]
fn generic_values_decode_for_tools() {
    let bytes = nearby_schemas::to_vec(&common::friendship_events()[0]).unwrap();
    let (writer, value) = Catalog::published().decode_value(&bytes).unwrap();
    assert_eq!(writer.name(), "nearby.v1.FriendshipEvent");
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("not a record: {value:?}");
    };
    assert_eq!(
        fields[0],
        ("user_id".into(), apache_avro::types::Value::Long(1))
    );
}
