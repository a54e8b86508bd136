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

/// Group allowed to read through the sockets.
pub const SOCKET_GROUP: &str = "vswitch";

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
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
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
            return Ok(Some(line));
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
        let stream = UnixStream::connect(path).map_err(|source| IpcError::Connect {
            path: path.to_owned(),
            source,
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
                    if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        let mut s = stream;
                        let _ = write_json(
                            &mut s,
                            &Response::Error(ApiError::failed(format!(
                                "too many connections (limit {MAX_CONNECTIONS})"
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

/// Only uid 0 may make mutating calls; everybody who can open the socket
/// (root and group [`SOCKET_GROUP`]) may read.
pub fn authorize(req: &Request, peer: &Peer) -> Result<(), ApiError> {
    if req.is_mutating() && peer.uid != 0 {
        return Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{}: uid {} may only read; changes need uid 0",
                req.call_name(),
                peer.uid
            ),
        ));
    }
    Ok(())
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
    loop {
        let line = match read_line_limited(&mut reader, MAX_MESSAGE_BYTES) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(LineError::TooLarge) => {
                let _ = write_json(
                    &mut writer,
                    &Response::Error(ApiError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "message longer than {MAX_MESSAGE_BYTES} bytes; closing connection"
                        ),
                    )),
                );
                return;
            }
            Err(LineError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(LineError::Io(_)) => return,
        };
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
        match e {
            IpcError::Api(e) => assert_eq!(e.kind, ErrorKind::Rejected),
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
}
