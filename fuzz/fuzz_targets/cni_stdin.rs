//! Arbitrary bytes as the network configuration: weft-cni must answer with a result or an error object,
//! never panic. The netns path does not exist, so ADD and CHECK stop before the kernel; GC is left out
//! because a valid config would garbage-collect that network's real state on the fuzzing machine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for command in ["ADD", "CHECK", "STATUS", "VERSION"] {
        let env = |key: &str| match key {
            "CNI_COMMAND" => Some(command.to_string()),
            "CNI_CONTAINERID" => Some("fuzz".to_string()),
            "CNI_NETNS" => Some("/nonexistent/fuzz".to_string()),
            "CNI_IFNAME" => Some("eth0".to_string()),
            _ => None,
        };
        let out = weft_cni::run::run("weft-cni", env, &mut &data[..]);
        assert!(out.exit_code == 0 || !out.stdout.is_empty());
    }
});
