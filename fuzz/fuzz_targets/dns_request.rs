//! Arbitrary bytes as a DNS query, over UDP and TCP limits, against a small table and before the first snapshot:
//! the request path must answer or drop, never panic, and every answer must parse and echo the query's ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use weft_dns::answer::{Outcome, handle};
use weft_dns::{StaticSource, Table};
use weft_model::Source;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432}]
endpoints: [{addresses: [10.244.1.5], hostname: db-0}, {addresses: [10.244.2.6]}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: example.org}
"#;

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
