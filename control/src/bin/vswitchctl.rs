//! vswitchctl: the operator's CLI (see `control::cli` for the contract).

fn main() {
    std::process::exit(control::cli::main());
}
