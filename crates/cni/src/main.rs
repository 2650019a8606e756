//! weft-cni: called by container runtimes as described in the CNI specification.

fn main() {
    std::process::exit(weft_cni::run::main());
}
