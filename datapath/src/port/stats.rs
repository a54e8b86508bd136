//! Port counters: atomics updated once per batch, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received but dropped by the port (ring full, no buffer,
    /// truncated).
    pub rx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets handed to the port but not sent (queue full, link down).
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// Live counters of a port, shared by the PMD threads that use it.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
    rx_errors: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    tx_errors: AtomicU64,
}

impl PortCounters {
    /// Counts a received burst.
    #[inline]
    pub fn rx(&self, packets: u64, bytes: u64) {
        if packets != 0 {
            self.rx_packets.fetch_add(packets, Relaxed);
            self.rx_bytes.fetch_add(bytes, Relaxed);
        }
    }

    /// Counts a sent burst.
    #[inline]
    pub fn tx(&self, packets: u64, bytes: u64) {
        if packets != 0 {
            self.tx_packets.fetch_add(packets, Relaxed);
            self.tx_bytes.fetch_add(bytes, Relaxed);
        }
    }

    /// Counts packets dropped on receive.
    #[inline]
    pub fn rx_dropped(&self, n: u64) {
        self.rx_dropped.fetch_add(n, Relaxed);
    }

    /// Counts receive errors.
    #[inline]
    pub fn rx_error(&self, n: u64) {
        self.rx_errors.fetch_add(n, Relaxed);
    }

    /// Counts packets dropped on transmit.
    #[inline]
    pub fn tx_dropped(&self, n: u64) {
        self.tx_dropped.fetch_add(n, Relaxed);
    }

    /// Counts transmit errors.
    #[inline]
    pub fn tx_error(&self, n: u64) {
        self.tx_errors.fetch_add(n, Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            rx_dropped: self.rx_dropped.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            tx_dropped: self.tx_dropped.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
        }
    }
}
