//! The bpf(2) syscall without libbpf or clang: an XSKMAP, the five-instruction
//! XDP program that redirects every frame to the AF_XDP socket of its rx
//! queue, and a `bpf_link` that attaches it to a netdev.
//!
//! Follows include/uapi/linux/bpf.h (`union bpf_attr`, `struct bpf_insn`,
//! the eBPF instruction set of Documentation/bpf/standardization/
//! instruction-set.rst) and the XDP attach flags of include/uapi/linux/if_link.h.
//!
//! Every object is an [`OwnedFd`]: the map, the program and the link die with
//! the process, so a program attached by a killed switch never blocks the
//! next start (the kernel detaches a link when its last fd closes).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of `BPF_XDP`.
const BPF_XDP: u32 = 37;
/// Program may see multi-buffer (fragmented) frames: needed to attach in
/// native mode to a device whose MTU exceeds one page of XDP buffer.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// `ld_imm64` source register value saying "imm is a map fd".
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Helper id of `bpf_redirect_map` (include/uapi/linux/bpf.h, `___BPF_FUNC_MAPPER`).
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `enum xdp_action` value passed as the redirect "flags": the lower bits
/// are the action returned when the map has no socket at the key.
pub const XDP_PASS: i32 = 2;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Instruction classes, sizes, modes and operations (instruction-set.rst).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// How an XDP program is attached to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic netif_receive_skb path (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Generic => 1 << 1,
            XdpMode::Native => 1 << 2,
        }
    }

    /// Name as in `mode=`.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// Errors of the bpf syscall wrappers.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// Creating the XSKMAP failed.
    #[error("bpf: creating XSKMAP with {entries} entries failed")]
    MapCreate {
        /// Requested entries.
        entries: u32,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// Updating a map entry failed.
    #[error("bpf: setting XSKMAP entry {key} failed")]
    MapUpdate {
        /// Map key (rx queue).
        key: u32,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// The verifier or the kernel refused the program.
    #[error("bpf: loading the XDP redirect program failed; verifier log: {log}")]
    ProgLoad {
        /// Verifier log (empty when the kernel wrote none).
        log: String,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// Attaching the program to the device failed.
    #[error(
        "bpf: attaching XDP program to ifindex {ifindex} in {} mode failed{}",
        mode.name(),
        link_hint(source)
    )]
    LinkCreate {
        /// Device.
        ifindex: u32,
        /// Requested mode.
        mode: XdpMode,
        /// OS error (ERANGE: MTU too large for single-buffer XDP; ENOSPC: peer
        /// has more tx queues than the device has rx queues; EBUSY: another
        /// program is attached).
        #[source]
        source: io::Error,
    },
}

/// What a BPF_LINK_CREATE errno usually means for XDP, for the message.
fn link_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ERANGE) => " (MTU too large for single-buffer XDP)",
        Some(libc::ENOSPC) => " (the veth peer has more tx queues than this device has rx queues)",
        Some(libc::EBUSY) | Some(libc::EEXIST) => " (another XDP program is attached)",
        Some(libc::EOPNOTSUPP) => " (the driver has no native XDP)",
        Some(libc::EPERM) => " (needs CAP_NET_ADMIN and CAP_BPF)",
        _ => "",
    }
}

/// One eBPF instruction, `struct bpf_insn`: opcode, dst/src registers in
/// one byte (dst in the low nibble on little-endian), offset, immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        BpfInsn {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }

    /// The instruction as the kernel reads it (little-endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// The redirect program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index,
/// XDP_PASS)`, i.e. frames of a queue without a socket go to the stack.
pub fn redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (64-bit immediate spread over two slots)
        BpfInsn::new(BPF_LD | BPF_IMM | BPF_DW, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        BpfInsn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        BpfInsn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised repr(C) prefix of
    // `union bpf_attr` for `cmd`, and its exact size is passed; the kernel
    // reads at most that many bytes and zero-extends the rest.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor and nothing else
    // owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let l = b.len().min(15);
    n[..l].copy_from_slice(&b[..l]);
    n
}

/// An XSKMAP: rx queue index → AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    entries: u32,
}

impl XskMap {
    /// Creates a map with one slot per rx queue.
    pub fn new(entries: u32) -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: name16("vsw_xsks"),
            ..Default::default()
        };
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)
            .map_err(|source| BpfError::MapCreate { entries, source })?;
        Ok(XskMap {
            fd: owned(fd),
            entries,
        })
    }

    /// Number of slots.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Puts socket `xsk_fd` at slot `queue`.
    pub fn set(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: 0,
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(|_| ())
            .map_err(|source| BpfError::MapUpdate { key, source })
    }

    /// Empties slot `queue` (frames of that queue then go to the stack).
    pub fn clear(&self, queue: u32) {
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: 0,
            flags: 0,
        };
        // A missing entry (ENOENT) is already the wanted state.
        let _ = sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }
}

impl AsRawFd for XskMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
    frags: bool,
}

impl XdpProgram {
    /// Loads the redirect program for `map`; `frags` sets
    /// `BPF_F_XDP_HAS_FRAGS` (multi-buffer frames, MTU above one page).
    /// On failure the verifier log is part of the error.
    pub fn load_redirect(map: &XskMap, frags: bool) -> Result<Self, BpfError> {
        let insns = redirect_program(map.as_raw_fd());
        match Self::load(&insns, frags, None) {
            Ok(fd) => Ok(XdpProgram { fd, frags }),
            Err(first) => {
                // Load again with a log buffer only on failure: the verifier
                // log costs time and memory on every successful load.
                let mut log = vec![0u8; 64 * 1024];
                match Self::load(&insns, frags, Some(&mut log)) {
                    Ok(fd) => Ok(XdpProgram { fd, frags }),
                    Err(source) => {
                        let text = CStr::from_bytes_until_nul(&log)
                            .map(|c| c.to_string_lossy().trim().to_string())
                            .unwrap_or_default();
                        let _ = first;
                        Err(BpfError::ProgLoad { log: text, source })
                    }
                }
            }
        }
    }

    fn load(insns: &[BpfInsn], frags: bool, log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
        static LICENSE: &[u8] = b"GPL\0";
        let (log_level, log_size, log_buf) = match log {
            Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: if frags { BPF_F_XDP_HAS_FRAGS } else { 0 },
            prog_name: name16("vsw_xsk_redir"),
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
        };
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    }

    /// True when loaded with `BPF_F_XDP_HAS_FRAGS`.
    pub fn has_frags(&self) -> bool {
        self.frags
    }
}

impl AsRawFd for XdpProgram {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An XDP program attached to a device through a bpf_link; dropping it
/// (or the process dying) detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex` in `mode`.
    pub fn attach(prog: &XdpProgram, ifindex: u32, mode: XdpMode) -> Result<Self, BpfError> {
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
        };
        let fd = sys_bpf(BPF_LINK_CREATE, &mut attr).map_err(|source| BpfError::LinkCreate {
            ifindex,
            mode,
            source,
        })?;
        Ok(XdpLink {
            fd: owned(fd),
            ifindex,
            mode,
        })
    }

    /// Device the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Attach mode.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

impl AsRawFd for XdpLink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_program_encodes_to_kernel_bytes() {
        let prog = redirect_program(7);
        let bytes: Vec<[u8; 8]> = prog.iter().map(|i| i.to_bytes()).collect();
        // ldxw r2, [r1+16]
        assert_eq!(bytes[0], [0x61, 0x12, 0x10, 0x00, 0, 0, 0, 0]);
        // lddw r1, map_fd 7 (src = BPF_PSEUDO_MAP_FD), then the upper half
        assert_eq!(bytes[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[2], [0; 8]);
        // mov64 r3, XDP_PASS
        assert_eq!(bytes[3], [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        // call bpf_redirect_map (51)
        assert_eq!(bytes[4], [0x85, 0x00, 0, 0, 51, 0, 0, 0]);
        // exit
        assert_eq!(bytes[5], [0x95, 0x00, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn insn_layout_matches_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        let i = BpfInsn::new(0x61, 2, 1, -4, -1);
        // SAFETY: BpfInsn is repr(C), 8 bytes, no padding: viewing it as
        // bytes is how the kernel reads it.
        let raw: [u8; 8] = unsafe { std::mem::transmute(i) };
        assert_eq!(raw, i.to_bytes());
        assert_eq!(raw, [0x61, 0x12, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn attr_structs_have_uapi_sizes() {
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
    }

    #[test]
    fn link_errors_explain_the_usual_causes() {
        let e = BpfError::LinkCreate {
            ifindex: 7,
            mode: XdpMode::Native,
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let msg = e.to_string();
        assert!(msg.contains("ifindex 7") && msg.contains("native") && msg.contains("tx queues"));
    }

    #[test]
    fn long_names_are_truncated_and_nul_terminated() {
        let n = name16("a_name_longer_than_fifteen");
        assert_eq!(n[15], 0);
        assert_eq!(&n[..15], b"a_name_longer_t");
    }
}
