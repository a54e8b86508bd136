//! Opens a port and holds it until killed, for the tests that prove a
//! killed switch leaves nothing behind that blocks the next start:
//! `porthold afxdp DEV` or `porthold afpacket DEV`. Prints `READY` once the
//! port is open.

use datapath::port::afpacket::{AfPacketConfig, AfPacketPort};
use datapath::port::afxdp::{AfXdpConfig, AfXdpPort};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(dev)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: porthold afxdp|afpacket DEV");
        return ExitCode::from(2);
    };
    let port: Box<dyn std::any::Any> = match kind.as_str() {
        "afxdp" => match AfXdpPort::open(&AfXdpConfig::new(dev)) {
            Ok(p) => Box::new(p),
            Err(e) => {
                println!("ERROR {e}");
                return ExitCode::FAILURE;
            }
        },
        "afpacket" => match AfPacketPort::open(&AfPacketConfig::new(dev)) {
            Ok(p) => Box::new(p),
            Err(e) => {
                println!("ERROR {e}");
                return ExitCode::FAILURE;
            }
        },
        other => {
            eprintln!("unknown port type {other}");
            return ExitCode::from(2);
        }
    };
    println!("READY");
    std::io::stdout().flush().ok();
    // Bounded: the test kills it long before.
    std::thread::sleep(Duration::from_secs(120));
    drop(port);
    ExitCode::SUCCESS
}
