//! JSON lines over Unix stream sockets: the transport of [`crate::api`].
//!
//! A connection is: client sends [`Hello`], server answers
//! [`Response`] with [`Reply::Status`]-free [`HelloReply`] (or a
//! [`ErrorKind::Version`] error and closes); then request/response lines
//! alternate. Each line is at most [`MAX_MESSAGE_BYTES`]; a longer one is
//! answered with [`ErrorKind::TooLarge`] and the connection is closed (the
//! rest of the line cannot be trusted to resynchronise on).
//!
//! Authorisation follows `unix(7)` `SO_PEERCRED`: a mutating call from a
//! uid other than 0 is refused with [`ErrorKind::PermissionDenied`]. The
//! socket file is mode 0660, group `vswitch` (created when missing), so
//! that group may connect and read.
//!
//! A reader must not be able to make a daemon buffer or hold much: the
//! hello line is capped at [`MAX_HELLO_BYTES`] and must arrive within
//! [`HELLO_TIMEOUT`]; requests from a uid other than 0 (reads, which are
//! small) are capped at [`MAX_READER_REQUEST_BYTES`] and their idle
//! connections closed after [`READER_IDLE_TIMEOUT`], so the
//! [`MAX_CONNECTIONS`] slots cannot be held by a group member for ever;
//! [`ROOT_RESERVED_CONNECTIONS`] of them are kept for uid 0 anyway.

use crate::api::{
    ApiError, ErrorKind, Hello, HelloReply, Reply, Request, Response, API_VERSION,
    MAX_MESSAGE_BYTES,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest `sun_path` the kernel accepts (108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Connections a server serves at once; more are answered with an error
/// and closed, so a misbehaving client cannot exhaust threads.
pub const MAX_CONNECTIONS: usize = 64;

/// Of [`MAX_CONNECTIONS`], slots only uid 0 may take: readers filling the
/// others cannot lock root (and vswitch-controld) out.
pub const ROOT_RESERVED_CONNECTIONS: usize = 8;

/// Group allowed to read through the sockets.
pub const SOCKET_GROUP: &str = "vswitch";

/// Longest hello line (a version number and a program name).
pub const MAX_HELLO_BYTES: usize = 4096;

/// Longest request line from a uid other than 0: only read calls are
/// allowed to them, and every read request is a few hundred bytes.
pub const MAX_READER_REQUEST_BYTES: usize = 64 << 10;

/// Time a new connection has to say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time after which a connection of a uid other than 0 is closed.
pub const READER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The socket path does not fit `sun_path`.
    #[error("socket path \"{path}\" is {len} bytes, longer than the kernel's limit of {MAX_SOCKET_PATH}")]
    PathTooLong {
        /// Path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The socket file's mode refuses this user (not root, not in the
    /// group [`SOCKET_GROUP`]).
    #[error("permission denied: cannot connect to \"{path}\": the socket is for root and members of group \"{SOCKET_GROUP}\"")]
    Denied {
        /// Path.
        path: PathBuf,
        /// Cause (EACCES).
        #[source]
        source: std::io::Error,
    },
    /// Nothing listens on the socket.
    #[error("cannot connect to \"{path}\"")]
    Connect {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another server already listens on the socket.
    #[error("socket \"{0}\" is already served by a running daemon")]
    InUse(PathBuf),
    /// Creating the listening socket failed.
    #[error("socket \"{path}\": {op} failed")]
    Bind {
        /// Path.
        path: PathBuf,
        /// Step.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("socket \"{path}\": {op} failed")]
    Io {
        /// Path.
        path: PathBuf,
        /// Step.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the connection.
    #[error("socket \"{0}\": connection closed by the daemon")]
    Closed(PathBuf),
    /// The peer's message could not be decoded.
    #[error("socket \"{path}\": malformed message: {reason}")]
    Malformed {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of more than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    /// The daemon answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IpcError {
    /// True when the caller may not do what it asked: the socket refused
    /// it, or the daemon refused a change from a uid other than 0.
    pub fn is_denied(&self) -> bool {
        matches!(self, IpcError::Denied { .. })
            || matches!(self, IpcError::Api(e) if e.kind == ErrorKind::PermissionDenied)
    }

    /// True when the daemon could not be reached at all (CLI exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            IpcError::Connect { .. } | IpcError::Closed(_) | IpcError::PathTooLong { .. }
        ) || matches!(self, IpcError::Io { op, .. } if *op != "write request")
            || matches!(self, IpcError::Api(e) if e.kind == ErrorKind::Unavailable)
    }
}

/// Checks that `path` fits in `sun_path`.
pub fn check_socket_path(path: &Path) -> Result<(), IpcError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(IpcError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    Ok(())
}

/// Reads one `\n`-terminated line of at most `max` bytes (without the
/// newline). `Ok(None)` on a clean end of stream.
pub fn read_line_limited<R: BufRead>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    match read_line_into(reader, &mut line, max) {
        Ok(true) => Ok(Some(line)),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends to `line` until a `\n` (not stored) completes it: `Ok(true)`.
/// `Ok(false)` on a clean end of stream before any byte. An error of the
/// reader (a read timeout included) leaves the bytes read so far in
/// `line`, so a caller that retries after a timeout resumes the same line
/// instead of losing its beginning. More than `max` bytes is
/// [`LineError::TooLarge`], checked before buffering them, so at most
/// `max` bytes are ever held.
pub fn read_line_into<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(LineError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "end of stream inside a message",
                )))
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLarge);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(true);
        }
    }
}

/// Why [`read_line_limited`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Longer than allowed.
    #[error("line too long")]
    TooLarge,
    /// I/O.
    #[error("read failed")]
    Io(#[source] std::io::Error),
}

fn write_json<W: Write, T: Serialize>(w: &mut W, v: &T) -> std::io::Result<()> {
    let mut buf = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    buf.push(b'\n');
    w.write_all(&buf)?;
    w.flush()
}

/// A connected, greeted client.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    server: HelloReply,
}

impl Client {
    /// Connects to `path`, says hello as `client`, and checks the version.
    /// `timeout` bounds every read and write.
    pub fn connect(path: &Path, client: &str, timeout: Duration) -> Result<Client, IpcError> {
        check_socket_path(path)?;
        let stream = UnixStream::connect(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                IpcError::Denied {
                    path: path.to_owned(),
                    source,
                }
            } else {
                IpcError::Connect {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let io = |op: &'static str| {
            let path = path.to_owned();
            move |source| IpcError::Io { path, op, source }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io("set timeout"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io("set timeout"))?;
        let writer = stream.try_clone().map_err(io("clone"))?;
        let mut c = Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            server: HelloReply {
                api_version: 0,
                server: String::new(),
                pid: 0,
                boot_id: 0,
            },
        };
        write_json(
            &mut c.writer,
            &Hello {
                api_version: API_VERSION,
                client: client.to_owned(),
            },
        )
        .map_err(io("write hello"))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum HelloAnswer {
            Ok(HelloReply),
            Error(ApiError),
        }
        match c.read::<HelloAnswer>()? {
            HelloAnswer::Ok(h) => {
                if h.api_version != API_VERSION {
                    return Err(ApiError::new(
                        ErrorKind::Version,
                        format!(
                            "{} at \"{}\" speaks API version {}, this program {}",
                            h.server,
                            path.display(),
                            h.api_version,
                            API_VERSION
                        ),
                    )
                    .into());
                }
                c.server = h;
                Ok(c)
            }
            HelloAnswer::Error(e) => Err(e.into()),
        }
    }

    /// The server's hello.
    pub fn server(&self) -> &HelloReply {
        &self.server
    }

    fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, IpcError> {
        let line = match read_line_limited(&mut self.reader, MAX_MESSAGE_BYTES) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(IpcError::Closed(self.path.clone())),
            Err(LineError::TooLarge) => return Err(IpcError::TooLarge),
            Err(LineError::Io(source)) => {
                return Err(IpcError::Io {
                    path: self.path.clone(),
                    op: "read answer",
                    source,
                })
            }
        };
        serde_json::from_slice(&line).map_err(|e| IpcError::Malformed {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends one request and waits for its answer.
    pub fn call(&mut self, req: &Request) -> Result<Reply, IpcError> {
        write_json(&mut self.writer, req).map_err(|source| IpcError::Io {
            path: self.path.clone(),
            op: "write request",
            source,
        })?;
        match self.read::<Response>()? {
            Response::Ok(r) => Ok(r),
            Response::Error(e) => Err(e.into()),
        }
    }

    /// Sends raw bytes (tests of malformed input) and reads one answer.
    pub fn call_raw(&mut self, line: &[u8]) -> Result<Response, IpcError> {
        let send = |w: &mut UnixStream| -> std::io::Result<()> {
            w.write_all(line)?;
            w.write_all(b"\n")?;
            w.flush()
        };
        send(&mut self.writer).map_err(|source| IpcError::Io {
            path: self.path.clone(),
            op: "write request",
            source,
        })?;
        self.read::<Response>()
    }
}

/// Who is calling, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
}

/// What a server does with requests.
pub trait Handler: Send + Sync + 'static {
    /// The hello answer (server name, pid, boot id).
    fn hello(&self) -> HelloReply;
    /// Answers one request (authorisation already checked).
    fn handle(&self, req: Request, peer: Peer) -> Result<Reply, ApiError>;
}

/// A listening socket; the file is removed on drop.
#[derive(Debug)]
pub struct ServerSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ServerSocket {
    /// Binds `path` (mode 0660, group [`SOCKET_GROUP`] when it exists or
    /// can be created). A stale socket file nobody listens on is replaced;
    /// a live one is an error.
    pub fn bind(path: &Path) -> Result<ServerSocket, IpcError> {
        check_socket_path(path)?;
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(IpcError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(|source| IpcError::Bind {
                path: path.to_owned(),
                op: "remove stale socket",
                source,
            })?;
        }
        let listener = UnixListener::bind(path).map_err(|source| IpcError::Bind {
            path: path.to_owned(),
            op: "bind",
            source,
        })?;
        let sock = ServerSocket {
            path: path.to_owned(),
            listener,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(
            |source| IpcError::Bind {
                path: path.to_owned(),
                op: "chmod 0660",
                source,
            },
        )?;
        if let Some(gid) = socket_group() {
            if let Err(e) = nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))) {
                tracing::warn!(path = %path.display(), error = %e, "cannot give socket to group {SOCKET_GROUP}");
            }
        }
        Ok(sock)
    }

    /// Path of the socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until `stop` is set (checked every 200 ms), one
    /// thread per connection, at most [`MAX_CONNECTIONS`] at once.
    pub fn serve(&self, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) -> Result<(), IpcError> {
        self.listener
            .set_nonblocking(true)
            .map_err(|source| IpcError::Bind {
                path: self.path.clone(),
                op: "set non-blocking",
                source,
            })?;
        let active = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let uid = peer_of(&stream).map(|p| p.uid);
                    if !admit(active.load(Ordering::Relaxed), uid) {
                        let mut s = stream;
                        let _ = write_json(
                            &mut s,
                            &Response::Error(ApiError::failed(format!(
                                "too many connections (limit {MAX_CONNECTIONS}, {ROOT_RESERVED_CONNECTIONS} of them kept for root)"
                            ))),
                        );
                        continue;
                    }
                    active.fetch_add(1, Ordering::Relaxed);
                    let handler = handler.clone();
                    let active = active.clone();
                    let stop = stop.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("api-conn".into())
                            .spawn(move || {
                                serve_connection(stream, &*handler, &stop);
                                active.fetch_sub(1, Ordering::Relaxed);
                            });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot spawn connection thread");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(())
    }
}

impl Drop for ServerSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Gid of [`SOCKET_GROUP`], creating the group when running as root and it
/// is missing. None when it neither exists nor can be created.
fn socket_group() -> Option<u32> {
    if let Ok(Some(g)) = nix::unistd::Group::from_name(SOCKET_GROUP) {
        return Some(g.gid.as_raw());
    }
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let made = std::process::Command::new("groupadd")
        .args(["--system", SOCKET_GROUP])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        tracing::warn!(
            "group {SOCKET_GROUP} is missing and groupadd failed; sockets stay root-only"
        );
        return None;
    }
    nix::unistd::Group::from_name(SOCKET_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    })
}

/// Whether a new connection of `uid` (None: unknown) may be served while
/// `active` others are.
pub fn admit(active: usize, uid: Option<u32>) -> bool {
    let limit = if uid == Some(0) {
        MAX_CONNECTIONS
    } else {
        MAX_CONNECTIONS - ROOT_RESERVED_CONNECTIONS
    };
    active < limit
}

/// Only uid 0 may make mutating calls; everybody who can open the socket
/// (root and group [`SOCKET_GROUP`]) may read.
pub fn authorize(req: &Request, peer: &Peer) -> Result<(), ApiError> {
    if req.is_mutating() && peer.uid != 0 {
        return Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied: {} needs root (uid 0); uid {} may only read",
                req.call_name(),
                peer.uid
            ),
        ));
    }
    Ok(())
}

/// Longest line accepted from `peer` once greeted: root may send bulk
/// changes, anybody else only reads (see [`MAX_READER_REQUEST_BYTES`]).
pub fn max_request_bytes(peer: &Peer) -> usize {
    if peer.uid == 0 {
        MAX_MESSAGE_BYTES
    } else {
        MAX_READER_REQUEST_BYTES
    }
}

/// Serves one connection to its end. Public so tests can drive a handler
/// over a socket pair.
pub fn serve_connection(stream: UnixStream, handler: &dyn Handler, stop: &AtomicBool) {
    let Some(peer) = peer_of(&stream) else {
        return;
    };
    // A read timeout lets the thread notice `stop` on an idle connection.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut greeted = false;
    let mut last_activity = std::time::Instant::now();
    let mut line = Vec::new();
    loop {
        let max = if greeted {
            max_request_bytes(&peer)
        } else {
            MAX_HELLO_BYTES
        };
        line.clear();
        if line.capacity() > MAX_READER_REQUEST_BYTES {
            // One bulk request must not pin its buffer for the connection's life.
            line = Vec::new();
        }
        // A read timeout (the stop check below) must not drop a partly
        // received line: retry into the same buffer until it is complete.
        let complete = loop {
            match read_line_into(&mut reader, &mut line, max) {
                Err(LineError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let idle = last_activity.elapsed();
                    if !greeted && idle > HELLO_TIMEOUT {
                        let _ = write_json(
                            &mut writer,
                            &Response::Error(ApiError::new(
                                ErrorKind::Malformed,
                                format!("no hello within {HELLO_TIMEOUT:?}; closing connection"),
                            )),
                        );
                        return;
                    }
                    if peer.uid != 0 && idle > READER_IDLE_TIMEOUT {
                        return;
                    }
                }
                other => break other,
            }
        };
        match complete {
            Ok(true) => {}
            Ok(false) => return,
            Err(LineError::TooLarge) => {
                let _ = write_json(
                    &mut writer,
                    &Response::Error(ApiError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "{} longer than {max} bytes (uid {}); closing connection",
                            if greeted { "request" } else { "hello" },
                            peer.uid
                        ),
                    )),
                );
                return;
            }
            Err(LineError::Io(_)) => return,
        }
        last_activity = std::time::Instant::now();
        if !greeted {
            let hello: Hello = match serde_json::from_slice(&line) {
                Ok(h) => h,
                Err(e) => {
                    let _ = write_json(
                        &mut writer,
                        &Response::Error(ApiError::new(
                            ErrorKind::Malformed,
                            format!("expected a hello message first: {e}"),
                        )),
                    );
                    return;
                }
            };
            if hello.api_version != API_VERSION {
                let me = handler.hello();
                let _ = write_json(
                    &mut writer,
                    &Response::Error(ApiError::new(
                        ErrorKind::Version,
                        format!(
                            "{} speaks API version {}, client \"{}\" version {}",
                            me.server, API_VERSION, hello.client, hello.api_version
                        ),
                    )),
                );
                return;
            }
            #[derive(Serialize)]
            #[serde(rename_all = "kebab-case")]
            enum HelloAnswer {
                Ok(HelloReply),
            }
            if write_json(&mut writer, &HelloAnswer::Ok(handler.hello())).is_err() {
                return;
            }
            greeted = true;
            continue;
        }
        let answer: Response = match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::Error(ApiError::new(
                ErrorKind::Malformed,
                format!("malformed request: {e}"),
            )),
            Ok(req) => match authorize(&req, &peer) {
                Ok(()) => handler.handle(req, peer).into(),
                Err(e) => Response::Error(e),
            },
        };
        if write_json(&mut writer, &answer).is_err() {
            return;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{ShowReply, StatusReply};
    use std::io::Cursor;

    struct Echo;
    impl Handler for Echo {
        fn hello(&self) -> HelloReply {
            HelloReply {
                api_version: API_VERSION,
                server: "test".into(),
                pid: 1,
                boot_id: 42,
            }
        }
        fn handle(&self, req: Request, _peer: Peer) -> Result<Reply, ApiError> {
            match req {
                Request::Show => Ok(Reply::Show(ShowReply::default())),
                Request::AddBridge { bridge } if bridge == "bad" => {
                    Err(ApiError::rejected("bridge \"bad\": refused"))
                }
                Request::AddBridge { .. } => Ok(Reply::Done),
                _ => Ok(Reply::Status(StatusReply::default())),
            }
        }
    }

    fn server() -> (
        tempdir::Dir,
        PathBuf,
        Arc<AtomicBool>,
        std::thread::JoinHandle<()>,
    ) {
        let dir = tempdir::Dir::new("ipc");
        let path = dir.path().join("t.sock");
        let sock = ServerSocket::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            sock.serve(Arc::new(Echo), s2).unwrap();
        });
        (dir, path, stop, h)
    }

    /// Minimal temp dir for tests (removed on drop).
    pub(crate) mod tempdir {
        use std::path::{Path, PathBuf};
        pub struct Dir(PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("vsw-{tag}-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn only_root_may_change_anything() {
        let user = Peer {
            uid: 1000,
            gid: 1000,
            pid: 5,
        };
        let root = Peer { uid: 0, ..user };
        let add = Request::AddBridge {
            bridge: "br0".into(),
        };
        let e = authorize(&add, &user).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.contains("add-bridge") && e.message.contains("1000"));
        assert!(
            e.message.starts_with("permission denied: ") && e.message.contains("needs root"),
            "{}",
            e.message
        );
        assert!(authorize(&add, &root).is_ok());
        assert!(authorize(&Request::Show, &user).is_ok());
    }

    #[test]
    fn line_reader_enforces_limit_and_splits_lines() {
        let mut r = Cursor::new(b"abc\ndef\n".to_vec());
        assert_eq!(read_line_limited(&mut r, 3).unwrap().unwrap(), b"abc");
        assert_eq!(read_line_limited(&mut r, 3).unwrap().unwrap(), b"def");
        assert!(read_line_limited(&mut r, 3).unwrap().is_none());
        let mut r = Cursor::new(b"abcd\n".to_vec());
        assert!(matches!(
            read_line_limited(&mut r, 3),
            Err(LineError::TooLarge)
        ));
        let mut r = Cursor::new(b"ab".to_vec());
        assert!(matches!(
            read_line_limited(&mut r, 3),
            Err(LineError::Io(_))
        ));
    }

    #[test]
    fn call_answers_ok_and_typed_error() {
        let (_d, path, stop, h) = server();
        let mut c = Client::connect(&path, "t", Duration::from_secs(5)).unwrap();
        assert_eq!(c.server().boot_id, 42);
        assert_eq!(
            c.call(&Request::Show).unwrap(),
            Reply::Show(ShowReply::default())
        );
        let e = c
            .call(&Request::AddBridge {
                bridge: "bad".into(),
            })
            .unwrap_err();
        // This process is the client: as a uid other than 0 the change is
        // refused before the handler sees it.
        let want = if nix::unistd::geteuid().is_root() {
            ErrorKind::Rejected
        } else {
            ErrorKind::PermissionDenied
        };
        match e {
            IpcError::Api(e) => assert_eq!(e.kind, want),
            other => panic!("unexpected {other}"),
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn malformed_request_is_answered_and_connection_survives() {
        let (_d, path, stop, h) = server();
        let mut c = Client::connect(&path, "t", Duration::from_secs(5)).unwrap();
        for bad in [
            &b"{not json"[..],
            b"{\"call\":\"nope\"}",
            b"[]",
            b"\"show\"",
        ] {
            match c.call_raw(bad).unwrap() {
                Response::Error(e) => assert_eq!(e.kind, ErrorKind::Malformed),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(c.call(&Request::Show).is_ok());
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn oversized_message_is_refused_then_server_still_serves() {
        let (_d, path, stop, h) = server();
        let mut c = Client::connect(&path, "t", Duration::from_secs(10)).unwrap();
        let big = vec![b'x'; MAX_MESSAGE_BYTES + 10];
        // The server may close before reading everything: either the
        // TooLarge answer arrives or the write fails with a broken pipe.
        match c.call_raw(&big) {
            Ok(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::TooLarge),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(IpcError::Io { .. } | IpcError::Closed(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        let mut c2 = Client::connect(&path, "t", Duration::from_secs(5)).unwrap();
        assert!(c2.call(&Request::Show).is_ok());
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn wrong_version_hello_is_refused() {
        let (_d, path, stop, h) = server();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"api_version\":999,\"client\":\"old\"}\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let line = read_line_limited(&mut r, 4096).unwrap().unwrap();
        let resp: Response = serde_json::from_slice(&line).unwrap();
        match resp {
            Response::Error(e) => {
                assert_eq!(e.kind, ErrorKind::Version);
                assert!(e.message.contains("999"), "{}", e.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        // The server closed this connection.
        assert!(read_line_limited(&mut r, 4096).unwrap().is_none());
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn request_before_hello_is_refused() {
        let (_d, path, stop, h) = server();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"call\":\"show\"}\n").unwrap();
        let mut r = BufReader::new(s);
        let line = read_line_limited(&mut r, 4096).unwrap().unwrap();
        let resp: Response = serde_json::from_slice(&line).unwrap();
        assert!(matches!(resp, Response::Error(e) if e.kind == ErrorKind::Malformed));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn too_long_socket_path_is_a_clear_error() {
        let p = PathBuf::from(format!("/tmp/{}/x.sock", "d".repeat(120)));
        let e = Client::connect(&p, "t", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, IpcError::PathTooLong { .. }));
        assert!(e.to_string().contains("107"), "{e}");
        assert!(ServerSocket::bind(&p).is_err());
    }

    #[test]
    fn live_socket_is_not_stolen_and_stale_one_is_replaced() {
        let (_d, path, stop, h) = server();
        assert!(matches!(ServerSocket::bind(&path), Err(IpcError::InUse(_))));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        // The serving ServerSocket was dropped with its thread: file gone.
        assert!(!path.exists());
        // A stale file (no listener) is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = ServerSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(s);
    }

    #[test]
    fn unreachable_daemon_is_classified() {
        let d = tempdir::Dir::new("unreach");
        let e =
            Client::connect(&d.path().join("none.sock"), "t", Duration::from_secs(1)).unwrap_err();
        assert!(e.is_unreachable());
        assert!(!IpcError::Api(ApiError::rejected("x")).is_unreachable());
    }

    /// The read/change split of every call. The match has no wildcard, so
    /// a new call does not compile until someone decides which side it is.
    fn is_read_call(r: &Request) -> bool {
        match r {
            Request::Show
            | Request::DumpFlows { .. }
            | Request::DumpGroups { .. }
            | Request::FdbShow { .. }
            | Request::Stats { .. }
            | Request::DumpCache { .. }
            | Request::Trace { .. }
            | Request::Status
            | Request::DpInventory => true,
            Request::AddBridge { .. }
            | Request::DelBridge { .. }
            | Request::AddPort { .. }
            | Request::DelPort { .. }
            | Request::SetPort { .. }
            | Request::AddFlows { .. }
            | Request::DelFlows { .. }
            | Request::ReplaceFlows { .. }
            | Request::AddGroup { .. }
            | Request::DelGroups { .. }
            | Request::FdbFlush { .. }
            | Request::FdbAdd { .. }
            | Request::FdbDel { .. }
            | Request::PmdRebalance
            | Request::DpAddBridge { .. }
            | Request::DpDelBridge { .. }
            | Request::DpAddPort { .. }
            | Request::DpDelPort { .. }
            | Request::DpSetPortVlan { .. }
            | Request::DpSetPortSecurity { .. }
            | Request::DpAddFlows { .. }
            | Request::DpDelFlows { .. }
            | Request::DpReplaceFlows { .. }
            | Request::DpAddGroup { .. }
            | Request::DpDelGroups { .. }
            | Request::DpFdbFlush { .. }
            | Request::DpFdbAdd { .. }
            | Request::DpFdbDel { .. }
            | Request::DpTakeExpired
            // Capture reveals other containers' traffic: root only.
            | Request::CaptureStart { .. }
            | Request::CaptureRead { .. }
            | Request::CaptureStop { .. } => false,
        }
    }

    /// One request of every call (the count is checked below, and a
    /// missing variant would also be caught by [`is_read_call`]'s review).
    fn every_call() -> Vec<Request> {
        use crate::api::{PortSpec, StaticFdbEntry, StatsKind, WireGroup, WireMatch, WireVlan};
        use datapath::pipeline::Match;
        let b = || "b".to_owned();
        let n = || "p".to_owned();
        let entry = StaticFdbEntry {
            mac: "02:00:00:00:00:01".into(),
            vlan: 0,
            port: n(),
            remote: None,
        };
        let spec = PortSpec {
            name: n(),
            r#type: "tap".into(),
            options: Default::default(),
        };
        let group = WireGroup {
            id: 1,
            r#type: "all".into(),
            buckets: vec![],
        };
        vec![
            Request::Show,
            Request::DumpFlows {
                bridge: b(),
                table: None,
            },
            Request::DumpGroups { bridge: b() },
            Request::FdbShow { bridge: b() },
            Request::Stats {
                kind: StatsKind::Drops,
            },
            Request::DumpCache { bridge: b() },
            Request::Trace {
                bridge: b(),
                flow: "in_port=1".into(),
            },
            Request::Status,
            Request::AddBridge { bridge: b() },
            Request::DelBridge { bridge: b() },
            Request::AddPort {
                bridge: b(),
                name: n(),
                options: Default::default(),
            },
            Request::DelPort {
                bridge: b(),
                name: n(),
            },
            Request::SetPort {
                bridge: b(),
                name: n(),
                options: Default::default(),
            },
            Request::AddFlows {
                bridge: b(),
                rules: vec![],
            },
            Request::DelFlows {
                bridge: b(),
                r#match: None,
                strict: false,
            },
            Request::ReplaceFlows {
                bridge: b(),
                rules: vec![],
            },
            Request::AddGroup {
                bridge: b(),
                group: "group_id=1,type=all".into(),
            },
            Request::DelGroups { bridge: b() },
            Request::FdbFlush { bridge: b() },
            Request::FdbAdd {
                bridge: b(),
                entry: entry.clone(),
            },
            Request::FdbDel {
                bridge: b(),
                mac: entry.mac.clone(),
                vlan: 0,
            },
            Request::PmdRebalance,
            Request::DpInventory,
            Request::DpAddBridge { bridge: b() },
            Request::DpDelBridge { bridge: b() },
            Request::DpAddPort {
                bridge: b(),
                ofport: 1,
                spec,
            },
            Request::DpDelPort {
                bridge: b(),
                name: n(),
            },
            Request::DpSetPortVlan {
                name: n(),
                vlan: WireVlan::Trunk,
            },
            Request::DpAddFlows {
                bridge: b(),
                rules: vec![],
            },
            Request::DpDelFlows {
                bridge: b(),
                table: None,
                r#match: WireMatch::from(&Match::ANY),
                strict_priority: None,
            },
            Request::DpReplaceFlows {
                bridge: b(),
                rules: vec![],
                groups: vec![],
            },
            Request::DpAddGroup { bridge: b(), group },
            Request::DpDelGroups { bridge: b() },
            Request::DpFdbFlush { bridge: b() },
            Request::DpFdbAdd {
                bridge: b(),
                entry: entry.clone(),
            },
            Request::DpFdbDel {
                bridge: b(),
                mac: entry.mac,
                vlan: 0,
            },
            Request::DpTakeExpired,
            Request::CaptureStart {
                port: n(),
                count: 1,
            },
            Request::CaptureRead { id: 1 },
            Request::CaptureStop { id: 1 },
        ]
    }

    #[test]
    fn every_call_is_classified_and_only_reads_pass_for_a_reader() {
        let reader = Peer {
            uid: 1000,
            gid: 994,
            pid: 9,
        };
        let calls = every_call();
        let names: std::collections::BTreeSet<String> =
            calls.iter().map(|r| r.call_name()).collect();
        assert_eq!(names.len(), 40, "one request per call: {names:?}");
        for r in &calls {
            assert_eq!(
                !r.is_mutating(),
                is_read_call(r),
                "{} classified wrongly",
                r.call_name()
            );
            assert_eq!(
                authorize(r, &reader).is_ok(),
                is_read_call(r),
                "{}",
                r.call_name()
            );
            let root = Peer { uid: 0, ..reader };
            assert!(authorize(r, &root).is_ok());
        }
    }

    #[test]
    fn readers_cannot_take_the_slots_kept_for_root() {
        let readers_max = MAX_CONNECTIONS - ROOT_RESERVED_CONNECTIONS;
        assert!(admit(readers_max - 1, Some(1000)));
        assert!(!admit(readers_max, Some(1000)));
        assert!(!admit(readers_max, None));
        assert!(admit(readers_max, Some(0)));
        assert!(admit(MAX_CONNECTIONS - 1, Some(0)));
        assert!(!admit(MAX_CONNECTIONS, Some(0)));
    }

    #[test]
    fn readers_get_a_small_request_cap_root_the_full_one() {
        let reader = Peer {
            uid: 1000,
            gid: 994,
            pid: 9,
        };
        assert_eq!(max_request_bytes(&reader), MAX_READER_REQUEST_BYTES);
        assert_eq!(
            max_request_bytes(&Peer { uid: 0, ..reader }),
            MAX_MESSAGE_BYTES
        );
        // Every read call in its largest realistic form fits the cap.
        let trace = Request::Trace {
            bridge: "b".repeat(15),
            flow: "x".repeat(4096),
        };
        assert!(serde_json::to_vec(&trace).unwrap().len() < MAX_READER_REQUEST_BYTES);
    }

    fn greeted_stream(path: &Path) -> (UnixStream, BufReader<UnixStream>) {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"{\"api_version\":1,\"client\":\"raw\"}\n")
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let hello = read_line_limited(&mut r, 4096).unwrap().unwrap();
        assert!(hello.starts_with(b"{\"ok\""), "{hello:?}");
        (s, r)
    }

    #[test]
    fn a_request_split_across_a_read_timeout_is_not_lost() {
        let (_d, path, stop, h) = server();
        let (mut s, mut r) = greeted_stream(&path);
        // The server polls with a 500 ms read timeout: a pause longer than
        // that in the middle of a line used to drop the first half.
        s.write_all(b"{\"call\":").unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        s.write_all(b"\"show\"}\n").unwrap();
        let line = read_line_limited(&mut r, 1 << 20).unwrap().unwrap();
        let resp: Response = serde_json::from_slice(&line).unwrap();
        assert_eq!(resp, Response::Ok(Reply::Show(ShowReply::default())));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn oversized_hello_is_refused_at_its_own_cap() {
        let (_d, path, stop, h) = server();
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // No newline: the server must stop at MAX_HELLO_BYTES, not wait
        // for 32 MiB.
        let _ = s.write_all(&vec![b' '; MAX_HELLO_BYTES + 1]);
        let mut r = BufReader::new(s);
        let line = read_line_limited(&mut r, 4096).unwrap().unwrap();
        let resp: Response = serde_json::from_slice(&line).unwrap();
        match resp {
            Response::Error(e) => {
                assert_eq!(e.kind, ErrorKind::TooLarge);
                assert!(e.message.contains("hello"), "{}", e.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn silent_connection_is_closed_after_the_hello_timeout() {
        let (_d, path, stop, h) = server();
        let s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(HELLO_TIMEOUT * 3)).unwrap();
        let t0 = std::time::Instant::now();
        let mut r = BufReader::new(s);
        let line = read_line_limited(&mut r, 4096).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&line).contains("no hello"));
        assert!(read_line_limited(&mut r, 4096).unwrap().is_none());
        assert!(t0.elapsed() >= HELLO_TIMEOUT);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
