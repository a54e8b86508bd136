//! Opens the ports of our switch for each topology kind.
//! (Temporary: the TAP and AF_XDP/AF_PACKET backends are not on main yet.)

use super::error::{BenchError, Result};
use super::figure::SwitchKind;
use super::topology::Side;
use datapath::port::Port;
use std::sync::Arc;

/// Ports, interface names inside c1/c2 when they differ, and notes.
pub type Opened = (Vec<Arc<dyn Port>>, Option<[String; 2]>, Vec<String>);

/// Opens the two ports of `kind`.
pub fn open(kind: SwitchKind, hosts: &[String; 2], _sides: &[&Side; 2]) -> Result<Opened> {
    Err(BenchError::Port {
        port: hosts[0].clone(),
        source: format!("{kind}: backend not available in this build").into(),
    })
}
