//! Arbitrary bytes as a Kubernetes protobuf request body, alone and inside a valid envelope for a few kinds:
//! weft-apiserver's decoder must answer with JSON or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_apiserver::protobuf::decode;

/// The envelope kubectl writes: `k8s\0` and a runtime.Unknown {typeMeta {apiVersion, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    fn field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2];
        let mut n = payload.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(payload);
        out
    }
    let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
}

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    for (api_version, kind) in [("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Secret"), ("batch/v1", "CronJob")] {
        let _ = decode(&envelope(api_version, kind, data));
    }
});
