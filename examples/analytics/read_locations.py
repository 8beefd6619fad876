#!/usr/bin/env python3
"""Reads records of <prefix>.location-updates and prints each decoded event as a JSON line.

An example for analytics and ML teams reading the location topic from outside the project
(see docs/ANALYTICS.md). It consumes with the group you name (your own, never the project's),
from the beginning of every partition by default, finds each record's writer schema by the
fingerprint in its header among the .avsc files of schemas/avro/, decodes it with fastavro
(resolved to the newest published LocationEvent), and prints one JSON object per record:

    {"partition": 0, "offset": 17, "key": "42", "timestamp_ms": 1764057600040,
     "schema": "location_event.v1.avsc",
     "event": {"user_id": 42, "gateway_id": "gw-1", "ts": 1764057600000,
               "received_at": 1764057600040,
               "body": {"kind": "PositionReport", "lat": 37.77, "lon": -122.42,
                        "accuracy_m": null}}}

Times are Unix epoch milliseconds. Undecodable records are reported on stderr and skipped.

    python3 read_locations.py --group analytics-alice -n 10
    python3 read_locations.py --group analytics-alice --start committed -n 1000
    python3 read_locations.py --group analytics-alice --start 2026-11-25T08:00:00Z -n 100

Needs confluent-kafka and fastavro (pip install -r requirements.txt).
"""

import argparse
import datetime
import glob
import io
import json
import os
import re
import sys
import time

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form

# Avro single-object encoding: C3 01, then the writer schema's CRC-64-AVRO fingerprint
# (8 bytes, little-endian), then the datum.
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_LEN = 10
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMAS = os.path.join(HERE, "..", "..", "schemas", "avro")


class Undecodable(Exception):
    """A record this reader cannot decode (it is reported and skipped)."""


def load_schemas(schema_dir):
    """Every published schema by fingerprint (hex, in wire order), and the newest LocationEvent.

    Returns ({fingerprint: (file name, parsed schema)}, newest LocationEvent parsed schema).
    """
    writers = {}
    newest = (-1, None)
    paths = sorted(glob.glob(os.path.join(schema_dir, "*.avsc")))
    if not paths:
        raise SystemExit(f"no .avsc files in {schema_dir} (pass --schemas)")
    for path in paths:
        with open(path, encoding="utf-8") as f:
            parsed = fastavro.parse_schema(json.load(f))
        name = os.path.basename(path)
        writers[fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")] = (name, parsed)
        version = re.fullmatch(r"location_event\.v(\d+)\.avsc", name)
        if version and int(version.group(1)) > newest[0]:
            newest = (int(version.group(1)), parsed)
    if newest[1] is None:
        raise SystemExit(f"no location_event.v<N>.avsc in {schema_dir}")
    return writers, newest[1]


def decode(value, writers, reader):
    """(writer schema file, decoded record) of one record value."""
    if value is None:
        raise Undecodable("no value")
    if value[:1] == b"\x00":
        raise Undecodable("schema-registry framing (00 + id): look the id up in your registry")
    if value[:2] != SINGLE_OBJECT_MAGIC or len(value) < HEADER_LEN:
        raise Undecodable(f"not Avro single-object encoding (starts {value[:2].hex()})")
    found = writers.get(value[2:HEADER_LEN].hex())
    if found is None:
        raise Undecodable(
            f"unknown writer schema fingerprint {value[2:HEADER_LEN].hex()}: "
            "a newer schema version? update schemas/avro"
        )
    name, writer = found
    try:
        # return_record_name: the union branches Connected and Disconnected have the same
        # shape, only their names tell them apart.
        record = fastavro.schemaless_reader(
            io.BytesIO(value[HEADER_LEN:]),
            writer,
            reader,
            return_record_name=True,
            return_record_name_override=True,
        )
    except Exception as e:  # fastavro raises several types for a bad datum
        raise Undecodable(f"bad datum for {name}: {e}") from e
    return name, record


def plain(value):
    """A decoded value as plain JSON: times as epoch ms, union records as {"kind": ...}."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        kind, fields = value
        return {"kind": kind.rsplit(".", 1)[-1], **plain(fields)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def parse_start(s):
    """'beginning', 'committed', or a time (RFC 3339 or epoch ms) as epoch ms."""
    if s in ("beginning", "committed"):
        return s
    if s.isdigit():
        return int(s)
    try:
        t = datetime.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{s!r}: expected beginning, committed, RFC 3339 or epoch ms"
        ) from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{s!r}: give a time zone (Z or +01:00)")
    return (t - EPOCH) // datetime.timedelta(milliseconds=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default=os.environ.get("NEARBY_KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--prefix", default=os.environ.get("NEARBY_TOPIC_PREFIX", "nearby"),
                    help="topic prefix: reads <prefix>.location-updates")
    ap.add_argument("--group", required=True,
                    help="your own consumer group id (never one of the project's)")
    ap.add_argument("-n", "--count", type=int, default=10, help="events to print")
    ap.add_argument("--start", type=parse_start, default="beginning",
                    help="beginning (default), committed (where --group left off), or a time: "
                         "RFC 3339 or epoch ms (the first record at or after it)")
    ap.add_argument("--schemas", default=DEFAULT_SCHEMAS, help="folder of the .avsc files")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="give up after this many seconds without a record")
    args = ap.parse_args()

    writers, reader = load_schemas(args.schemas)
    topic = f"{args.prefix}.location-updates"
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        # Offsets are committed after the events are printed, at the end.
        "enable.auto.commit": False,
        # Where the group has no committed offset (a new group): the oldest record kept.
        "auto.offset.reset": "earliest",
    })

    def on_assign(c, partitions):
        if args.start == "beginning":
            for p in partitions:
                p.offset = OFFSET_BEGINNING
        elif isinstance(args.start, int):
            wanted = [TopicPartition(p.topic, p.partition, args.start) for p in partitions]
            partitions = c.offsets_for_times(wanted, timeout=30)
        c.assign(partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    printed = skipped = 0
    last_record = time.monotonic()
    try:
        while printed < args.count:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_record > args.timeout:
                    print(f"read_locations: no record for {args.timeout:g}s; printed {printed} "
                          f"of {args.count}", file=sys.stderr)
                    return 2
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            last_record = time.monotonic()
            try:
                schema, record = decode(msg.value(), writers, reader)
            except Undecodable as e:
                skipped += 1
                print(f"read_locations: partition {msg.partition()} offset {msg.offset()}: "
                      f"skipped: {e}", file=sys.stderr)
                continue
            key = msg.key()
            print(json.dumps({
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": key.decode("utf-8", "replace") if key is not None else None,
                "timestamp_ms": msg.timestamp()[1],
                "schema": schema,
                "event": plain(record),
            }), flush=True)
            printed += 1
        # At least once: the group's offsets move only past what was printed.
        if printed or skipped:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    if skipped:
        print(f"read_locations: {skipped} undecodable records skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
