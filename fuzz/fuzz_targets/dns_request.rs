//! Arbitrary bytes as a DNS query, over UDP and TCP limits, against a small table and before the first snapshot:
//! the request path must answer or drop, never panic, and every answer must parse and echo the query's ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use weft_dns::answer::{Outcome, handle};
use weft_dns::{StaticSource, Table};
use weft_model::Source;

/// The cluster the DNS crate's tests answer from.
const OBJECTS: &str = include_str!("../../crates/dns/tests/fixtures/cluster.yaml");

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let objects = weft_model::parse(OBJECTS, "fuzz").expect("fuzz objects parse");
        let snapshot = StaticSource::new(objects).next(0).expect("a snapshot");
        Table::build(&snapshot, "cluster.local", 5)
    })
}

fuzz_target!(|data: &[u8]| {
    for (table, udp) in [(Some(table()), true), (Some(table()), false), (None, true)] {
        let h = handle(table, "cluster.local", data, udp);
        if let Outcome::Reply(bytes) = h.outcome {
            assert!(bytes.len() >= 12);
            assert_eq!(&bytes[..2], &data[..2]);
            assert!(bytes[2] & 0x80 != 0, "a response");
            if udp {
                assert!(bytes.len() <= 65535);
            }
            let _ = hickory_proto::op::Message::from_vec(&bytes).expect("our answers parse");
        }
    }
});
