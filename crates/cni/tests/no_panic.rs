//! Whatever arrives on stdin or in CNI_ARGS, weft-cni answers with a result or the spec's error object and
//! never panics. The netns path does not exist, so no case reaches the kernel (GC is left out: a valid
//! config would collect that network's real state on the test machine). Plausible configs leave out the
//! host-local type for the same reason. Portmap and bandwidth stop at prevResult checks or the kernel
//! refusing an unknown veth; nothing they could reach is outside this test's own names.

use proptest::prelude::*;
use weft_cni::run::run;

fn invoke(command: &str, args: &str, stdin: &[u8]) -> weft_cni::run::Outcome {
    let env = |key: &str| match key {
        "CNI_COMMAND" => Some(command.to_string()),
        "CNI_CONTAINERID" => Some("proptest".to_string()),
        "CNI_NETNS" => Some("/nonexistent/weft-proptest".to_string()),
        "CNI_IFNAME" => Some("eth0".to_string()),
        "CNI_ARGS" => Some(args.to_string()),
        _ => None,
    };
    run("weft-cni", env, &mut &stdin[..])
}

fn assert_answered(out: &weft_cni::run::Outcome) {
    if out.exit_code != 0 {
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("error output is JSON");
        assert!(
            v["code"].as_u64().is_some() && v["msg"].as_str().is_some(),
            "{}",
            out.stdout
        );
    }
}

/// Configs that parse as JSON objects with plausible keys and arbitrary values reach deeper than bytes do.
fn config() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::json!(null)),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24"})),
        Just(serde_json::json!([{"hostPort": 80, "containerPort": 8080}])),
    ];
    let key = prop_oneof![
        Just("cniVersion"),
        Just("name"),
        Just("type"),
        Just("ipam"),
        Just("bridge"),
        Just("mtu"),
        Just("hairpinMode"),
        Just("prevResult"),
        Just("runtimeConfig"),
        Just("ipMasq"),
        Just("nodeConfig"),
        Just("ingressRate"),
        Just("snat"),
        Just("args"),
        Just("dns"),
    ];
    // Not host-local: it needs no netns, so a valid config would allocate in /var/lib/cni on this machine.
    let kind = prop_oneof![
        Just("bridge"),
        Just("loopback"),
        Just("portmap"),
        Just("bandwidth"),
        Just("weft")
    ];
    let version = prop_oneof![Just("0.2.0"), Just("0.4.0"), Just("1.0.0"), Just("1.1.0"), Just("9")];
    (proptest::collection::vec((key, value), 0..8), kind, version).prop_map(|(pairs, kind, version)| {
        let mut obj = serde_json::json!({"cniVersion": version, "name": "proptest", "type": kind});
        for (k, v) in pairs {
            obj[k] = v;
        }
        obj.to_string().into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(stdin in proptest::collection::vec(any::<u8>(), 0..512), args in "[ -~]{0,40}") {
        for command in ["ADD", "CHECK", "STATUS", "VERSION"] {
            assert_answered(&invoke(command, &args, &stdin));
        }
    }

    #[test]
    fn plausible_configs_never_panic(stdin in config()) {
        for command in ["ADD", "CHECK", "STATUS"] {
            assert_answered(&invoke(command, "", &stdin));
        }
    }
}
