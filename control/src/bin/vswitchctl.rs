//! vswitchctl: the operator's CLI (see `control::cli` for the contract).

fn main() {
    // SAFETY: called first thing, before any other thread exists; restores
    // the default SIGPIPE disposition so `vswitchctl ... | head` ends
    // quietly, as Unix tools do, instead of panicking on a closed stdout.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(control::cli::main());
}
